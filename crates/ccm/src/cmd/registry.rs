//! `ccm registry`: container registry credentials stored in the selected account, used by
//! image creation for images on the registry's host.

use ccm_api::registries::{
    PatchDocument, PatchOperation, Registry, RegistryAuth, RegistryCredential, RegistryRequest,
};
use reqwest::Method;
use uuid::Uuid;

use super::client::{Client, Output, OutputOpts, print_json, print_table};

/// Stored registry credentials.
#[derive(Debug, clap::Args)]
pub struct RegistryArgs {
    #[command(flatten)]
    out: OutputOpts,
    #[command(subcommand)]
    command: RegistryCommand,
}

#[derive(Debug, clap::Subcommand)]
enum RegistryCommand {
    /// List the account's registries (without passwords).
    List,
    /// Show a registry.
    Show {
        /// Registry id.
        registry_id: Uuid,
    },
    /// Store a registry's credentials (MANAGER). The password is read from
    /// CCM_REGISTRY_PASSWORD (or --password, visible to other users).
    Create {
        /// The registry host (`host[:port]`, optionally with https://).
        #[arg(long)]
        url: String,
        /// User name.
        #[arg(long)]
        username: String,
        /// Password or token.
        #[arg(long, env = "CCM_REGISTRY_PASSWORD", hide_env_values = true)]
        password: String,
        /// A description.
        #[arg(long)]
        description: Option<String>,
    },
    /// Change a registry (MANAGER): URL, description, or credentials (both user name and
    /// password).
    Update {
        /// Registry id.
        registry_id: Uuid,
        /// New URL.
        #[arg(long)]
        url: Option<String>,
        /// New description.
        #[arg(long)]
        description: Option<String>,
        /// New user name (with --password).
        #[arg(long, requires = "password")]
        username: Option<String>,
        /// New password (CCM_REGISTRY_PASSWORD).
        #[arg(
            long,
            env = "CCM_REGISTRY_PASSWORD",
            hide_env_values = true,
            requires = "username"
        )]
        password: Option<String>,
    },
    /// Delete a registry (MANAGER).
    Delete {
        /// Registry id.
        registry_id: Uuid,
    },
}

fn show(r: &Registry, out: Output) -> anyhow::Result<()> {
    match out {
        Output::Json => print_json(r),
        Output::Text => {
            print_table(&["ID", "HOST", "USERNAME", "DESCRIPTION"], &[row(r)]);
            Ok(())
        }
    }
}

fn row(r: &Registry) -> Vec<String> {
    vec![
        r.registry_id.to_string(),
        r.host.clone(),
        r.username.clone().unwrap_or_default(),
        r.description.clone().unwrap_or_default(),
    ]
}

fn replace(path: &str, value: serde_json::Value) -> PatchDocument {
    PatchDocument {
        op: PatchOperation::Replace,
        path: path.into(),
        value: Some(value),
    }
}

/// Runs `ccm registry`.
pub fn run(args: RegistryArgs) -> anyhow::Result<()> {
    let c = Client::connect()?;
    let out = args.out.output;
    match args.command {
        RegistryCommand::List => {
            let list: Vec<Registry> = c.get("/v1/registry")?;
            match out {
                Output::Json => print_json(&list),
                Output::Text => {
                    let rows: Vec<Vec<String>> = list.iter().map(row).collect();
                    print_table(&["ID", "HOST", "USERNAME", "DESCRIPTION"], &rows);
                    Ok(())
                }
            }
        }
        RegistryCommand::Show { registry_id } => {
            show(&c.get(&format!("/v1/registry/{registry_id}"))?, out)
        }
        RegistryCommand::Create {
            url,
            username,
            password,
            description,
        } => {
            let req = RegistryRequest {
                url,
                credential: RegistryCredential {
                    default: Some(RegistryAuth {
                        username: Some(username),
                        password: Some(password),
                    }),
                },
                description,
            };
            show(&c.call(Method::POST, "/v1/registry", Some(&req))?, out)
        }
        RegistryCommand::Update {
            registry_id,
            url,
            description,
            username,
            password,
        } => {
            let mut patch = Vec::new();
            if let Some(u) = url {
                patch.push(replace("/url", u.into()));
            }
            if let Some(d) = description {
                patch.push(replace("/description", d.into()));
            }
            if let (Some(u), Some(p)) = (username, password) {
                patch.push(replace(
                    "/credential/default",
                    serde_json::json!({"username": u, "password": p}),
                ));
            }
            if patch.is_empty() {
                anyhow::bail!("give --url, --description or --username with --password");
            }
            show(
                &c.call(
                    Method::PATCH,
                    &format!("/v1/registry/{registry_id}"),
                    Some(&patch),
                )?,
                out,
            )
        }
        RegistryCommand::Delete { registry_id } => {
            c.call::<()>(
                Method::DELETE,
                &format!("/v1/registry/{registry_id}"),
                None::<&()>,
            )?;
            println!("deleted registry {registry_id}");
            Ok(())
        }
    }
}
