//! `ccm image`: images (builds) of the selected account.

use ccm_api::builds::{Build, CreateBuildRequest, DockerInfo};
use reqwest::Method;
use uuid::Uuid;

use super::client::{Client, Output, OutputOpts, print_fields, print_json, print_table};

/// Manage images (builds).
#[derive(Debug, clap::Args)]
pub struct ImageArgs {
    #[command(flatten)]
    out: OutputOpts,
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ImageCommand {
    /// Record an image from known values (raises a BUILD_WHITELIST task).
    Create {
        /// The app (name or id).
        #[arg(long)]
        app: String,
        /// Image repository, e.g. registry.example/python-flask-sgx.
        #[arg(long)]
        image_name: String,
        /// Image tag.
        #[arg(long)]
        tag: String,
        /// Manifest digest, sha256:<hex>.
        #[arg(long)]
        digest: Option<String>,
        /// MRENCLAVE (64 hex digits).
        #[arg(long)]
        mrenclave: String,
        /// MRSIGNER (64 hex digits).
        #[arg(long)]
        mrsigner: String,
        /// ISV product id (default: the app's).
        #[arg(long)]
        isvprodid: Option<i64>,
        /// ISV security version number (default: the app's).
        #[arg(long)]
        isvsvn: Option<i64>,
    },
    /// List images.
    List {
        /// Only images of this app (name or id).
        #[arg(long)]
        app: Option<String>,
    },
    /// Show an image.
    Show {
        /// Build id.
        build_id: Uuid,
    },
    /// Delete an image.
    Delete {
        /// Build id.
        build_id: Uuid,
    },
}

fn show(b: &Build, out: Output) -> anyhow::Result<()> {
    match out {
        Output::Json => print_json(b),
        Output::Text => {
            print_fields(&[
                ("build_id", b.build_id.to_string()),
                ("app", format!("{} ({})", b.app_name, b.app_id)),
                (
                    "image",
                    format!(
                        "{}:{}",
                        b.docker_info.docker_image_name, b.docker_info.docker_version
                    ),
                ),
                ("mrenclave", b.enclave_info.mrenclave.clone()),
                ("mrsigner", b.enclave_info.mrsigner.clone()),
                ("isvprodid", b.enclave_info.isvprodid.to_string()),
                ("isvsvn", b.enclave_info.isvsvn.to_string()),
                ("status", b.status.status.as_str().into()),
                (
                    "pending_task_id",
                    b.pending_task_id.map(|t| t.to_string()).unwrap_or_default(),
                ),
            ]);
            Ok(())
        }
    }
}

/// Runs `ccm image`.
pub fn run(args: ImageArgs) -> anyhow::Result<()> {
    let c = Client::connect()?;
    let out = args.out.output;
    match args.command {
        ImageCommand::Create {
            app,
            image_name,
            tag,
            digest,
            mrenclave,
            mrsigner,
            isvprodid,
            isvsvn,
        } => {
            let app = super::app::resolve(&c, &app)?;
            let req = CreateBuildRequest {
                app_id: app.app_id,
                docker_info: DockerInfo {
                    docker_image_name: image_name,
                    docker_version: tag,
                    docker_image_sha: digest,
                    docker_image_size: None,
                },
                mrenclave,
                mrsigner,
                isvprodid,
                isvsvn,
                mem_size: None,
                threads: None,
            };
            let b: Build = c.call(Method::POST, "/v1/builds", Some(&req))?;
            show(&b, out)
        }
        ImageCommand::List { app } => {
            let path = match app {
                Some(a) => format!("/v1/builds?app_id={}", super::app::resolve(&c, &a)?.app_id),
                None => "/v1/builds".to_string(),
            };
            let all: Vec<Build> = c.get(&path)?;
            match out {
                Output::Json => print_json(&all),
                Output::Text => {
                    let rows: Vec<Vec<String>> = all
                        .iter()
                        .map(|b| {
                            vec![
                                b.build_id.to_string(),
                                b.app_name.clone(),
                                format!(
                                    "{}:{}",
                                    b.docker_info.docker_image_name, b.docker_info.docker_version
                                ),
                                b.enclave_info.mrenclave.chars().take(16).collect(),
                                b.status.status.as_str().into(),
                            ]
                        })
                        .collect();
                    print_table(&["BUILD_ID", "APP", "IMAGE", "MRENCLAVE", "STATUS"], &rows);
                    Ok(())
                }
            }
        }
        ImageCommand::Show { build_id } => show(&c.get(&format!("/v1/builds/{build_id}"))?, out),
        ImageCommand::Delete { build_id } => {
            c.call::<serde_json::Value>(
                Method::DELETE,
                &format!("/v1/builds/{build_id}"),
                None::<&()>,
            )?;
            match out {
                Output::Json => print_json(&serde_json::json!({"deleted": build_id})),
                Output::Text => {
                    println!("Deleted image {build_id}");
                    Ok(())
                }
            }
        }
    }
}
