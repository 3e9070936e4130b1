//! `ccm image`: images (builds) of the selected account.

use std::io::IsTerminal as _;
use std::time::Duration;

use anyhow::{Context as _, bail};
use ccm_api::builds::{
    AuthConfig, Build, ConversionProgress, ConversionStatus, ConvertAppBuildRequest,
    CreateBuildRequest, DockerInfo,
};
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

// Parsed once per run: the size of the `create` variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, clap::Subcommand)]
enum ImageCommand {
    /// Create an image of an app: the manager converts the app's input image into an enclave
    /// image in the background, pushes it to the app's output image and records it (the
    /// BUILD_WHITELIST task opens when it succeeds). With --mrenclave, records an image from
    /// known values instead.
    ///
    /// Registry credentials are best given in CCM_OUTPUT_CREDS / CCM_INPUT_CREDS /
    /// CCM_REGISTRY_CREDS rather than on the command line, where other users can see them.
    #[command(verbatim_doc_comment)]
    Create {
        /// The app (name or id).
        #[arg(long)]
        app: String,
        /// Image tag (conversion: for input and output, unless --input-tag/--output-tag).
        #[arg(long)]
        tag: Option<String>,
        /// Conversion: tag of the input image (default: the app's, else --tag, else latest).
        #[arg(long, conflicts_with = "mrenclave")]
        input_tag: Option<String>,
        /// Conversion: tag of the output image (default: --tag).
        #[arg(long, conflicts_with = "mrenclave")]
        output_tag: Option<String>,
        /// Conversion: credentials for pushing the output image.
        #[arg(
            long,
            value_name = "USER:PASSWORD",
            env = "CCM_OUTPUT_CREDS",
            hide_env_values = true
        )]
        output_creds: Option<String>,
        /// Conversion: credentials for pulling the input image (default: --creds, else the
        /// output credentials when both images are on the same registry).
        #[arg(
            long,
            value_name = "USER:PASSWORD",
            env = "CCM_INPUT_CREDS",
            hide_env_values = true
        )]
        input_creds: Option<String>,
        /// Conversion: credentials for both registries.
        #[arg(
            long,
            value_name = "USER:PASSWORD",
            env = "CCM_REGISTRY_CREDS",
            hide_env_values = true
        )]
        creds: Option<String>,
        /// Conversion: use this stored registry's credentials (`ccm registry list`) for the
        /// images on its host. Without it, images with no credentials given use the account's
        /// stored registry for their host, if any; credentials given here win.
        #[arg(long, value_name = "REGISTRY_ID", conflicts_with = "mrenclave")]
        registry: Option<Uuid>,
        /// Conversion: build a debug enclave (the app must allow it).
        #[arg(long, conflicts_with = "mrenclave")]
        debug: bool,
        /// Memory size in MB (default: the app's).
        #[arg(long, value_name = "MB")]
        mem_size: Option<i64>,
        /// Threads (default: the app's).
        #[arg(long)]
        threads: Option<i64>,
        /// Conversion: wait for the conversion to end, showing its progress; exit 1 if it fails.
        #[arg(long, conflicts_with = "mrenclave")]
        wait: bool,
        /// Known values: image repository, e.g. registry.example/python-flask-sgx (with --tag;
        /// without both, the image is known by its MRENCLAVE alone).
        #[arg(long, requires_all = ["mrenclave", "tag"])]
        image_name: Option<String>,
        /// Known values: manifest digest, sha256:<hex>.
        #[arg(long, requires_all = ["mrenclave", "image_name"])]
        digest: Option<String>,
        /// Known values: MRENCLAVE (64 hex digits).
        #[arg(long, requires = "mrsigner")]
        mrenclave: Option<String>,
        /// Known values: MRSIGNER (64 hex digits).
        #[arg(long, requires = "mrenclave")]
        mrsigner: Option<String>,
        /// Known values: ISV product id (default: the app's).
        #[arg(long, requires = "mrenclave")]
        isvprodid: Option<i64>,
        /// Known values: ISV security version number (default: the app's).
        #[arg(long, requires = "mrenclave")]
        isvsvn: Option<i64>,
    },
    /// Show the conversion of an image: status, progress and log.
    Progress {
        /// Build id.
        build_id: Uuid,
        /// Wait for the conversion to end, showing its progress; exit 1 if it fails.
        #[arg(long)]
        wait: bool,
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
                ("image", b.image_label()),
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
            if let Some(c) = &b.conversion {
                let mut fields = vec![
                    ("conversion", c.status.as_str().to_owned()),
                    ("progress", format!("{}% ({})", c.progress, c.phase)),
                    ("input", c.input_image.clone()),
                    ("output", c.output_image.clone()),
                ];
                if let Some(d) = b.image_digest() {
                    fields.push(("digest", d.to_owned()));
                }
                if let Some(e) = &c.error {
                    fields.push(("error", e.clone()));
                }
                print_fields(&fields);
            }
            Ok(())
        }
    }
}

fn auth(flag: &str, s: Option<String>) -> anyhow::Result<Option<AuthConfig>> {
    s.map(|s| {
        let (username, password) = s
            .split_once(':')
            .filter(|(u, _)| !u.is_empty())
            .with_context(|| format!("{flag}: expected USER:PASSWORD"))?;
        Ok(AuthConfig {
            username: username.to_owned(),
            password: password.to_owned(),
        })
    })
    .transpose()
}

/// Follows a conversion until it ends: a progress bar on a terminal, else one line per new log
/// entry on standard error. Returns the image; a FAILED conversion is an error (exit 1).
fn follow(c: &Client, build_id: Uuid, quiet: bool) -> anyhow::Result<Build> {
    let bar = if quiet || !std::io::stderr().is_terminal() {
        None
    } else {
        let bar = indicatif::ProgressBar::new(100);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {pos:>3}% {msg}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        Some(bar)
    };
    let mut last_seen: Option<(i64, String)> = None;
    loop {
        let p: ConversionProgress = c.get(&format!("/v1/builds/{build_id}/progress"))?;
        let conv = &p.conversion;
        match &bar {
            Some(bar) => {
                bar.set_position(u64::try_from(conv.progress).unwrap_or(0));
                bar.set_message(format!("{} {}", conv.status.as_str(), conv.phase));
            }
            None if !quiet => {
                // The log keeps the most recent lines: print what follows the last one seen.
                let start = last_seen.as_ref().map_or(0, |(at, msg)| {
                    p.log
                        .iter()
                        .rposition(|l| l.at == *at && &l.message == msg)
                        .map_or(0, |i| i + 1)
                });
                for l in p.log.iter().skip(start) {
                    eprintln!("{}", l.message);
                }
                last_seen = p.log.last().map(|l| (l.at, l.message.clone()));
            }
            None => {}
        }
        if conv.status.is_final() {
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            let b: Build = c.get(&format!("/v1/builds/{build_id}"))?;
            if conv.status == ConversionStatus::Failed {
                return Err(anyhow::Error::new(super::Failure {
                    code: 1,
                    message: format!(
                        "the conversion of image {build_id} failed: {}",
                        conv.error.as_deref().unwrap_or("no reason recorded")
                    ),
                }));
            }
            return Ok(b);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Runs `ccm image`.
pub fn run(args: ImageArgs) -> anyhow::Result<()> {
    let c = Client::connect()?;
    let out = args.out.output;
    match args.command {
        ImageCommand::Create {
            app,
            tag,
            input_tag,
            output_tag,
            output_creds,
            input_creds,
            creds,
            registry,
            debug,
            mem_size,
            threads,
            wait,
            image_name,
            digest,
            mrenclave,
            mrsigner,
            isvprodid,
            isvsvn,
        } => {
            let app = super::app::resolve(&c, &app)?;
            if let Some(mrenclave) = mrenclave {
                let Some(mrsigner) = mrsigner else {
                    bail!("--mrenclave needs --mrsigner");
                };
                let docker_info = match (image_name, tag) {
                    (Some(image_name), Some(tag)) => Some(DockerInfo {
                        docker_image_name: image_name,
                        docker_version: tag,
                        docker_image_sha: digest,
                        docker_image_size: None,
                    }),
                    (None, None) if digest.is_none() => None,
                    _ => bail!("--image-name and --tag go together (and --digest needs them)"),
                };
                let req = CreateBuildRequest {
                    app_id: Some(app.app_id),
                    app_name: None,
                    docker_info,
                    mrenclave,
                    mrsigner,
                    isvprodid,
                    isvsvn,
                    mem_size,
                    threads,
                };
                let b: Build = c.call(Method::POST, "/v1/builds", Some(&req))?;
                return show(&b, out);
            }
            if tag.is_none() && output_tag.is_none() {
                bail!("give the output image's tag with --tag (or --output-tag)");
            }
            let req = ConvertAppBuildRequest {
                app_id: app.app_id,
                docker_version: tag,
                input_docker_version: input_tag,
                output_docker_version: output_tag,
                input_auth_config: auth("--input-creds", input_creds)?,
                output_auth_config: auth("--output-creds", output_creds)?,
                auth_config: auth("--creds", creds)?,
                debug,
                mem_size,
                threads,
                registry_id: registry,
            };
            let b: Build = c.call(Method::POST, "/v1/builds", Some(&req))?;
            if !wait {
                return show(&b, out);
            }
            let done = follow(&c, b.build_id, out == Output::Json)?;
            show(&done, out)
        }
        ImageCommand::Progress { build_id, wait } => {
            if wait {
                let done = follow(&c, build_id, out == Output::Json)?;
                return show(&done, out);
            }
            let p: ConversionProgress = c.get(&format!("/v1/builds/{build_id}/progress"))?;
            match out {
                Output::Json => print_json(&p),
                Output::Text => {
                    let conv = &p.conversion;
                    print_fields(&[
                        ("build_id", build_id.to_string()),
                        ("conversion", conv.status.as_str().to_owned()),
                        ("progress", format!("{}% ({})", conv.progress, conv.phase)),
                        ("attempts", conv.attempts.to_string()),
                        ("error", conv.error.clone().unwrap_or_default()),
                    ]);
                    for l in &p.log {
                        println!("{}  {}", l.at, l.message);
                    }
                    Ok(())
                }
            }
        }
        ImageCommand::List { app } => {
            let path = match app {
                Some(a) => format!("/v1/builds?app_id={}", super::app::resolve(&c, &a)?.app_id),
                None => "/v1/builds".to_string(),
            };
            let all: Vec<Build> = c.get_all(&path)?;
            match out {
                Output::Json => print_json(&all),
                Output::Text => {
                    let rows: Vec<Vec<String>> = all
                        .iter()
                        .map(|b| {
                            vec![
                                b.build_id.to_string(),
                                b.app_name.clone(),
                                b.image_label(),
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
