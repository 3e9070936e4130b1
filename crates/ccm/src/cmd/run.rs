//! `ccm run`: pull an image, unpack it into an OCI runtime bundle, run it with runc.

use std::path::PathBuf;

use anyhow::Context;
use ccm_image::run::{DeviceMapping, PortMapping, RunOptions, Volume};
use ccm_image::{Location, NoProgress, Source};

use super::convert::{RegistryArgs, parse_creds, parse_platform, parse_words};

/// Arguments of `ccm run`.
#[derive(Debug, clap::Args)]
#[command(trailing_var_arg = true)]
pub struct RunArgs {
    /// The image: REF, oci:DIR[:NAME] or docker-archive:FILE[:NAME].
    pub image: String,
    /// Arguments replacing the image's CMD.
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// Host device to expose (HOST[:CONTAINER]), e.g. /dev/sgx_enclave; repeatable.
    #[arg(long = "device", value_name = "HOST[:CTR]")]
    pub devices: Vec<String>,
    /// Bind mount /HOST:/CONTAINER[:ro]; repeatable.
    #[arg(short = 'v', long = "volume", value_name = "HOST:CTR")]
    pub volumes: Vec<String>,
    /// Environment variable K=V (or K to copy it from here); repeatable.
    #[arg(short = 'e', long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Publish a port: [IP:]HOST:CONTAINER. The container shares the host network, so a
    /// container port is already a host port; a different HOST port is forwarded by ccm.
    #[arg(short = 'p', long = "publish", value_name = "[IP:]HOST:CTR")]
    pub ports: Vec<String>,
    /// Program to run instead of the image's ENTRYPOINT (JSON array or words).
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// User (name or uid[:gid]) instead of the image's USER.
    #[arg(long, short)]
    pub user: Option<String>,
    /// Registry credentials.
    #[arg(
        long,
        value_name = "USER:PASSWORD",
        env = "CCM_CREDS",
        hide_env_values = true
    )]
    pub creds: Option<String>,
    /// Directory for the bundle (default: a fresh directory under the system temp dir).
    #[arg(long, value_name = "DIR")]
    pub bundle_dir: Option<PathBuf>,
    /// Keep the bundle after the container exits.
    #[arg(long)]
    pub keep: bool,
    /// The runc binary.
    #[arg(long, default_value = "runc")]
    pub runc: PathBuf,
    /// Platform to pick from a multi-platform image.
    #[arg(long, default_value = "linux/amd64")]
    pub platform: String,
    /// Registry access.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Runs `ccm run`; exits with the container's exit code.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let location: Location = args.image.parse().context("image")?;
    let creds = parse_creds("--creds", args.creds.as_deref())?;
    let opts = RunOptions {
        devices: args
            .devices
            .iter()
            .map(|d| d.parse::<DeviceMapping>())
            .collect::<Result<_, _>>()?,
        volumes: args
            .volumes
            .iter()
            .map(|v| v.parse::<Volume>())
            .collect::<Result<_, _>>()?,
        env: args.env.clone(),
        entrypoint: args.entrypoint.as_deref().map(parse_words).transpose()?,
        args: (!args.args.is_empty()).then(|| args.args.clone()),
        user: args.user.clone(),
    };
    let ports: Vec<PortMapping> = args
        .ports
        .iter()
        .map(|p| p.parse())
        .collect::<Result<_, _>>()?;
    let platform = parse_platform(&args.platform)?;
    let registries = args.registry.registries()?;
    let (bundle, guard) = match &args.bundle_dir {
        Some(d) => (d.clone(), None),
        None => {
            let t = tempfile::Builder::new()
                .prefix("ccm-run-")
                .tempdir()
                .context("creating the bundle directory")?;
            (t.path().to_owned(), Some(t))
        }
    };
    let id = format!(
        "ccm-{}-{}",
        std::process::id(),
        bundle.file_name().and_then(|n| n.to_str()).unwrap_or("run")
    );
    let id: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let runc = if args.runc.components().count() == 1 {
        which(&args.runc).with_context(|| {
            format!(
                "{} not found (install the runc package)",
                args.runc.display()
            )
        })?
    } else {
        args.runc.clone()
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let code = rt.block_on(async {
        let src = Source::open(&location, &registries, creds).await?;
        let rootfs = bundle.join("rootfs");
        let image = ccm_image::unpack(&src, &platform, &rootfs, &NoProgress).await?;
        let spec = ccm_image::run::runtime_spec(&image.config, &rootfs, &opts)?;
        ccm_image::run::write_bundle(&bundle, &spec)?;
        let mut forwarders = Vec::new();
        for p in ports.iter().filter(|p| p.host != p.container) {
            forwarders.push(ccm_image::run::forward_port(*p).await?);
        }
        let state = bundle.join("runc-state");
        let code = ccm_image::run::run_bundle(&runc, &state, &bundle, &id).await;
        for f in forwarders {
            f.abort();
        }
        anyhow::Ok(code?)
    });
    let code = code?;
    if !args.keep {
        if let Some(g) = guard {
            let _ = g.close();
        } else {
            let _ = std::fs::remove_dir_all(&bundle);
        }
    } else {
        eprintln!("bundle kept in {}", bundle.display());
        if let Some(g) = guard {
            let _ = g.keep();
        }
    }
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

fn which(name: &std::path::Path) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
