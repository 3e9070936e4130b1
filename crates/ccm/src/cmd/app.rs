//! `ccm app`: applications of the selected account.

use std::collections::BTreeMap;

use anyhow::{Context as _, anyhow};
use ccm_api::apps::{
    AdvancedSettings, App, AppRequest, AppUpdateRequest, CertificateConfig, CertificateIssuer,
    KeyType, LabelsUpdate,
};
use ccm_api::certificates::AppWithNodes;
use reqwest::Method;
use uuid::Uuid;

use super::client::{Client, Output, OutputOpts, print_fields, print_json, print_table};

/// Manage applications.
#[derive(Debug, clap::Args)]
pub struct AppArgs {
    #[command(flatten)]
    out: OutputOpts,
    #[command(subcommand)]
    command: AppCommand,
}

/// Certificate key type on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KeyTypeArg {
    /// RSA 2048.
    Rsa2048,
    /// RSA 3072.
    Rsa3072,
    /// ECDSA P-256.
    EcP256,
    /// ECDSA P-384.
    EcP384,
}

impl From<KeyTypeArg> for KeyType {
    fn from(k: KeyTypeArg) -> Self {
        match k {
            KeyTypeArg::Rsa2048 => KeyType::Rsa2048,
            KeyTypeArg::Rsa3072 => KeyType::Rsa3072,
            KeyTypeArg::EcP256 => KeyType::EcP256,
            KeyTypeArg::EcP384 => KeyType::EcP384,
        }
    }
}

/// Settings shared by create and update (all optional on update).
#[derive(Debug, Clone, clap::Args)]
pub struct AppFields {
    /// Description.
    #[arg(long)]
    description: Option<String>,
    /// Input image, e.g. registry.example/python-flask.
    #[arg(long)]
    input_image: Option<String>,
    /// Output image, e.g. registry.example/python-flask-sgx.
    #[arg(long)]
    output_image: Option<String>,
    /// ISV product id.
    #[arg(long)]
    isvprodid: Option<i64>,
    /// ISV security version number.
    #[arg(long)]
    isvsvn: Option<i64>,
    /// Enclave memory size in MB (1 GB = 1024).
    #[arg(long, value_name = "MB")]
    mem_size: Option<i64>,
    /// Enclave threads.
    #[arg(long)]
    threads: Option<i64>,
    /// An allowed domain (repeatable; on update the list replaces the old one).
    #[arg(long = "domain", value_name = "DNS_NAME")]
    domains: Vec<String>,
    /// Certificate subject (a DNS name among the domains); enables the certificate settings.
    #[arg(long, value_name = "DNS_NAME")]
    cert_subject: Option<String>,
    /// Certificate key type.
    #[arg(long, value_enum, default_value = "rsa2048")]
    key_type: KeyTypeArg,
    /// Where the key is written in the application.
    #[arg(long, default_value = "/run/key.pem")]
    key_path: String,
    /// Where the certificate is written in the application.
    #[arg(long, default_value = "/run/cert.pem")]
    cert_path: String,
    /// Where the CA chain is written (optional).
    #[arg(long)]
    chain_path: Option<String>,
    /// Allow debug enclaves to obtain certificates.
    #[arg(long)]
    allow_debug: bool,
    /// Minimum ISVSVN accepted.
    #[arg(long)]
    min_isvsvn: Option<i64>,
    /// Let enclaves on simulated platforms obtain certificates (SIMULATED: development and
    /// tests only; effective only if the account trusts simulated platforms too).
    #[arg(long)]
    allow_simulated: bool,
    /// A label KEY=VALUE (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
}

impl AppFields {
    fn certificate(&self) -> Option<CertificateConfig> {
        self.cert_subject.clone().map(|subject| CertificateConfig {
            issuer: CertificateIssuer::ManagerCa,
            subject,
            key_type: self.key_type.into(),
            key_path: self.key_path.clone(),
            cert_path: self.cert_path.clone(),
            chain_path: self.chain_path.clone(),
        })
    }

    fn advanced(&self) -> Option<AdvancedSettings> {
        (self.allow_debug || self.min_isvsvn.is_some() || self.allow_simulated).then(|| {
            AdvancedSettings {
                allow_debug: self.allow_debug,
                min_isvsvn: self.min_isvsvn,
                allow_simulated: self.allow_simulated,
                ..AdvancedSettings::default()
            }
        })
    }

    fn labels(&self) -> anyhow::Result<BTreeMap<String, String>> {
        self.labels
            .iter()
            .map(|l| {
                l.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .ok_or_else(|| anyhow!("--label {l:?} is not KEY=VALUE"))
            })
            .collect()
    }
}

#[derive(Debug, clap::Subcommand)]
enum AppCommand {
    /// Add an application.
    Create {
        /// App name.
        name: String,
        #[command(flatten)]
        fields: Box<AppFields>,
    },
    /// List applications.
    List,
    /// Show an application with the nodes it runs on.
    Show {
        /// App name or id.
        app: String,
    },
    /// Change an application (only the given settings).
    Update {
        /// App name or id.
        app: String,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        fields: Box<AppFields>,
    },
    /// Delete an application with its images.
    Delete {
        /// App name or id.
        app: String,
    },
}

/// Resolves an app name or id in the selected account.
pub fn resolve(c: &Client, app: &str) -> anyhow::Result<App> {
    if let Ok(id) = Uuid::try_parse(app) {
        return c.get(&format!("/v1/apps/{id}"));
    }
    let all: Vec<App> = c.get_all("/v1/apps")?;
    all.into_iter()
        .find(|a| a.name == app)
        .ok_or_else(|| anyhow!("no app named {app:?} in the selected account"))
}

/// Shows an app with the nodes it runs on (`GET /v1/apps/{id}`).
fn show_with_nodes(a: &AppWithNodes, out: Output) -> anyhow::Result<()> {
    match out {
        Output::Json => print_json(a),
        Output::Text => {
            let mut fields = fields(&a.app);
            for n in &a.nodes {
                fields.push((
                    "node",
                    format!(
                        "{} ({}) {} MRENCLAVE {} certificate {}",
                        n.node_name,
                        n.node_id,
                        n.status.status.as_str(),
                        n.mrenclave,
                        n.certificate.certificate_id
                    ),
                ));
            }
            if a.nodes.is_empty() {
                fields.push(("nodes", "none (not running anywhere)".to_string()));
            }
            print_fields(&fields);
            Ok(())
        }
    }
}

fn fields(a: &App) -> Vec<(&'static str, String)> {
    vec![
        ("app_id", a.app_id.to_string()),
        ("name", a.name.clone()),
        ("input_image_name", a.input_image_name.clone()),
        ("output_image_name", a.output_image_name.clone()),
        ("isvprodid", a.isvprodid.to_string()),
        ("isvsvn", a.isvsvn.to_string()),
        ("mem_size", format!("{} MB", a.mem_size)),
        ("threads", a.threads.to_string()),
        ("allowed_domains", a.allowed_domains.join(",")),
        ("whitelisted_domains", a.whitelisted_domains.join(",")),
        (
            "pending_task_id",
            a.pending_task_id.map(|t| t.to_string()).unwrap_or_default(),
        ),
        (
            "certificate",
            a.certificate
                .as_ref()
                .map(|c| format!("{} -> {}", c.subject, c.cert_path))
                .unwrap_or_default(),
        ),
    ]
}

fn show(a: &App, out: Output) -> anyhow::Result<()> {
    match out {
        Output::Json => print_json(a),
        Output::Text => {
            print_fields(&fields(a));
            Ok(())
        }
    }
}

/// Runs `ccm app`.
pub fn run(args: AppArgs) -> anyhow::Result<()> {
    let c = Client::connect()?;
    let out = args.out.output;
    match args.command {
        AppCommand::Create { name, fields } => {
            let need = |v: Option<i64>, f: &str| v.ok_or_else(|| anyhow!("--{f} is required"));
            let req = AppRequest {
                name,
                description: fields.description.clone(),
                input_image_name: fields
                    .input_image
                    .clone()
                    .context("--input-image is required")?,
                output_image_name: fields
                    .output_image
                    .clone()
                    .context("--output-image is required")?,
                isvprodid: need(fields.isvprodid, "isvprodid")?,
                isvsvn: need(fields.isvsvn, "isvsvn")?,
                mem_size: need(fields.mem_size, "mem-size")?,
                threads: need(fields.threads, "threads")?,
                allowed_domains: fields.domains.clone(),
                certificate: fields.certificate(),
                advanced_settings: fields.advanced(),
                labels: fields.labels()?,
            };
            let a: App = c.call(Method::POST, "/v1/apps", Some(&req))?;
            show(&a, out)
        }
        AppCommand::List => {
            let all: Vec<App> = c.get_all("/v1/apps")?;
            match out {
                Output::Json => print_json(&all),
                Output::Text => {
                    let rows: Vec<Vec<String>> = all
                        .iter()
                        .map(|a| {
                            vec![
                                a.app_id.to_string(),
                                a.name.clone(),
                                a.output_image_name.clone(),
                                a.whitelisted_domains.join(","),
                            ]
                        })
                        .collect();
                    print_table(&["APP_ID", "NAME", "OUTPUT_IMAGE", "DOMAINS"], &rows);
                    Ok(())
                }
            }
        }
        AppCommand::Show { app } => {
            let id = resolve(&c, &app)?.app_id;
            show_with_nodes(&c.get(&format!("/v1/apps/{id}"))?, out)
        }
        AppCommand::Update { app, name, fields } => {
            let a = resolve(&c, &app)?;
            let labels = fields.labels()?;
            let req = AppUpdateRequest {
                name,
                description: fields.description.clone(),
                input_image_name: fields.input_image.clone(),
                output_image_name: fields.output_image.clone(),
                isvprodid: fields.isvprodid,
                isvsvn: fields.isvsvn,
                mem_size: fields.mem_size,
                threads: fields.threads,
                allowed_domains: (!fields.domains.is_empty()).then(|| fields.domains.clone()),
                certificate: fields.certificate(),
                advanced_settings: fields.advanced(),
                labels: (!labels.is_empty()).then_some(LabelsUpdate::Replace(labels)),
            };
            let a: App = c.call(Method::PATCH, &format!("/v1/apps/{}", a.app_id), Some(&req))?;
            show(&a, out)
        }
        AppCommand::Delete { app } => {
            let a = resolve(&c, &app)?;
            c.call::<serde_json::Value>(
                Method::DELETE,
                &format!("/v1/apps/{}", a.app_id),
                None::<&()>,
            )?;
            match out {
                Output::Json => print_json(&serde_json::json!({"deleted": a.app_id})),
                Output::Text => {
                    println!("Deleted app {} ({})", a.name, a.app_id);
                    Ok(())
                }
            }
        }
    }
}
