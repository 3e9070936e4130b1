//! `ccm convert`: turn a container image into an enclave image.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use ccm_enclave::{CertificateRequest, EnclaveParams, Issuer, KeyType, SigningKey};
use ccm_image::oci::Platform;
use ccm_image::{
    ConvertSettings, Credentials, Destination, Location, Progress, ProgressEvent, Registries,
    Source,
};

/// Registry access flags shared by `ccm convert` and `ccm run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// Speak plain HTTP to this registry (HOST:PORT); repeatable. Never the default.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registry: Vec<String>,
    /// Extra CA certificates (PEM) trusted for registry TLS, besides the system's.
    #[arg(long = "ca-cert", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
}

impl RegistryArgs {
    /// The shared registry client.
    pub fn registries(&self) -> anyhow::Result<Registries> {
        Ok(Registries::new(&ccm_image::RegistryOptions {
            insecure: self.insecure_registry.clone(),
            extra_ca_file: self.ca_cert.clone(),
            only_extra_ca: false,
        })?)
    }
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object.
    Json,
}

/// Arguments of `ccm convert`.
#[derive(Debug, clap::Args)]
pub struct ConvertArgs {
    /// Input image: REF, docker://REF, oci:DIR[:NAME] or docker-archive:FILE[:NAME].
    #[arg(long, value_name = "IMAGE")]
    pub from: String,
    /// Output image: REF (pushed to its registry) or oci:DIR[:NAME].
    #[arg(long, value_name = "IMAGE")]
    pub to: String,
    /// Credentials for the input registry.
    #[arg(
        long,
        value_name = "USER:PASSWORD",
        env = "CCM_FROM_CREDS",
        hide_env_values = true
    )]
    pub from_creds: Option<String>,
    /// Credentials for the output registry.
    #[arg(
        long,
        value_name = "USER:PASSWORD",
        env = "CCM_TO_CREDS",
        hide_env_values = true
    )]
    pub to_creds: Option<String>,
    /// ISVPRODID of the enclave.
    #[arg(long, default_value_t = 0)]
    pub isvprodid: u16,
    /// ISVSVN of the enclave.
    #[arg(long, default_value_t = 0)]
    pub isvsvn: u16,
    /// Enclave memory size (bytes, or with a K/M/G suffix).
    #[arg(long, default_value = "1G", value_parser = parse_size)]
    pub mem_size: u64,
    /// Enclave threads.
    #[arg(long, default_value_t = 128)]
    pub threads: u32,
    /// Build a debug enclave.
    #[arg(long)]
    pub debug: bool,
    /// Domain of the certificate the launcher obtains (omit for no certificate).
    #[arg(long)]
    pub domain: Option<String>,
    /// Where the launcher writes the private key.
    #[arg(long, default_value = "/run/key.pem")]
    pub key_path: String,
    /// Where the launcher writes the certificate.
    #[arg(long, default_value = "/run/cert.pem")]
    pub cert_path: String,
    /// Where the launcher writes the CA chain (optional).
    #[arg(long)]
    pub chain_path: Option<String>,
    /// Key type: rsa:2048, rsa:3072, ec:p256, ec:p384.
    #[arg(long, default_value = "rsa:2048")]
    pub key_type: String,
    /// Certificate issuer: manager-ca (after attestation) or self-signed.
    #[arg(long, default_value = "manager-ca")]
    pub issuer: String,
    /// Program and arguments to run instead of the image's ENTRYPOINT (JSON array or words).
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Arguments instead of the image's CMD (JSON array or words).
    #[arg(long)]
    pub cmd: Option<String>,
    /// Let arguments given at run time replace the measured ones.
    #[arg(long)]
    pub allow_runtime_args: bool,
    /// Fixed environment variable K=V (measured); repeatable.
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Extra variable passed through from the container's environment; repeatable.
    #[arg(long = "passthrough-env", value_name = "NAME")]
    pub passthrough_env: Vec<String>,
    /// Extra absolute path left unmeasured; repeatable.
    #[arg(long = "exclude", value_name = "PATH")]
    pub exclude: Vec<String>,
    /// Enclave signing key: RSA-3072 with e = 3, PEM (`openssl genrsa -3 -out key.pem 3072`).
    #[arg(long, value_name = "FILE")]
    pub signing_key: PathBuf,
    /// The launcher binary to embed (default: ccm-launch next to this program).
    #[arg(long, value_name = "FILE")]
    pub launcher: Option<PathBuf>,
    /// Version string recorded for the launcher.
    #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
    pub launcher_version: String,
    /// Platform to pick from a multi-platform input.
    #[arg(long, default_value = "linux/amd64")]
    pub platform: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    /// Registry access.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Parses `1G`, `512M`, `4096K`, `1048576` (binary units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_uppercase() {
                'K' => 1u64 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(format!("{s:?}: unknown size suffix (use K, M, G or T)")),
            };
            (t.get(..i).unwrap_or(""), m)
        }
        _ => (t, 1),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 1G, 512M)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// A JSON array of strings, or whitespace-separated words.
pub fn parse_words(s: &str) -> anyhow::Result<Vec<String>> {
    if s.trim_start().starts_with('[') {
        return serde_json::from_str(s)
            .with_context(|| format!("{s:?} is not a JSON array of strings"));
    }
    Ok(s.split_whitespace().map(str::to_owned).collect())
}

/// Parses `os/arch[/variant]`.
pub fn parse_platform(s: &str) -> anyhow::Result<Platform> {
    let mut it = s.split('/');
    match (it.next(), it.next(), it.next(), it.next()) {
        (Some(os), Some(arch), variant, None) if !os.is_empty() && !arch.is_empty() => {
            Ok(Platform {
                os: os.into(),
                architecture: arch.into(),
                variant: variant.map(str::to_owned),
                extra: Default::default(),
            })
        }
        _ => bail!("--platform {s:?}: expected os/arch[/variant]"),
    }
}

/// Parses `user:password`.
pub fn parse_creds(flag: &str, s: Option<&str>) -> anyhow::Result<Option<Credentials>> {
    s.map(|s| Credentials::parse(s).with_context(|| format!("{flag}: expected USER:PASSWORD")))
        .transpose()
}

/// A terminal progress bar fed by conversion events.
struct Bar {
    bar: indicatif::ProgressBar,
    total: Mutex<u64>,
}

impl Bar {
    fn new(hidden: bool) -> Self {
        let bar = if hidden {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::new(0)
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} {msg:28} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        Bar {
            bar,
            total: Mutex::new(0),
        }
    }
}

impl Progress for Bar {
    fn event(&self, event: ProgressEvent) {
        match event {
            ProgressEvent::Resolved {
                layers,
                total_bytes,
            } => {
                if let Ok(mut t) = self.total.lock() {
                    *t = total_bytes;
                }
                self.bar.set_length(total_bytes);
                self.bar.set_message(format!("{layers} layers"));
            }
            ProgressEvent::LayerBytes { bytes, .. } => self.bar.inc(bytes),
            ProgressEvent::LayerDone {
                index,
                already_present,
            } => {
                self.bar.set_message(format!(
                    "layer {index} {}",
                    if already_present { "(present)" } else { "done" }
                ));
            }
            ProgressEvent::Step(step) => self.bar.set_message(step.to_owned()),
            _ => {}
        }
    }
}

fn default_launcher() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the ccm binary")?;
    let path = exe.with_file_name("ccm-launch");
    if !path.is_file() {
        bail!(
            "no launcher at {} (build ccm-launch, or pass --launcher FILE)",
            path.display()
        );
    }
    Ok(path)
}

/// Builds the conversion settings from the flags.
fn settings(args: &ConvertArgs) -> anyhow::Result<ConvertSettings> {
    let pem = std::fs::read_to_string(&args.signing_key)
        .with_context(|| format!("reading signing key {}", args.signing_key.display()))?;
    let key = SigningKey::from_pem(&pem)
        .with_context(|| format!("signing key {}", args.signing_key.display()))?;
    let launcher_path = match &args.launcher {
        Some(p) => p.clone(),
        None => default_launcher()?,
    };
    let launcher = std::fs::read(&launcher_path)
        .with_context(|| format!("reading launcher {}", launcher_path.display()))?;
    let mut env = Vec::new();
    for kv in &args.env {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--env {kv:?}: expected K=V"))?;
        env.push((k.to_owned(), v.to_owned()));
    }
    let certificates = match &args.domain {
        None => Vec::new(),
        Some(domain) => vec![CertificateRequest {
            domain: domain.clone(),
            key_type: args.key_type.parse::<KeyType>()?,
            key_path: args.key_path.clone(),
            cert_path: args.cert_path.clone(),
            chain_path: args.chain_path.clone(),
            issuer: match args.issuer.as_str() {
                "manager-ca" | "MANAGER_CA" => Issuer::ManagerCa,
                "self-signed" | "SELF_SIGNED" => Issuer::SelfSigned,
                other => bail!("--issuer {other:?}: expected manager-ca or self-signed"),
            },
        }],
    };
    Ok(ConvertSettings {
        enclave: EnclaveParams::new(args.mem_size, args.threads, args.debug)?,
        isv_prod_id: args.isvprodid,
        isv_svn: args.isvsvn,
        entrypoint: args.entrypoint.as_deref().map(parse_words).transpose()?,
        args: args.cmd.as_deref().map(parse_words).transpose()?,
        allow_runtime_args: args.allow_runtime_args,
        env,
        passthrough_env: args.passthrough_env.clone(),
        certificates,
        excluded_paths: args.exclude.clone(),
        launcher: launcher.into(),
        launcher_version: args.launcher_version.clone(),
        signing_key: Arc::new(key),
        platform: parse_platform(&args.platform)?,
    })
}

/// Runs `ccm convert`.
pub fn run(args: ConvertArgs) -> anyhow::Result<()> {
    let from: Location = args.from.parse().context("--from")?;
    let to: Location = args.to.parse().context("--to")?;
    let from_creds = parse_creds("--from-creds", args.from_creds.as_deref())?;
    let to_creds = parse_creds("--to-creds", args.to_creds.as_deref())?;
    let settings = settings(&args)?;
    let registries = args.registry.registries()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let outcome = rt.block_on(async {
        let src = Source::open(&from, &registries, from_creds).await?;
        let dst = Destination::open(&to, &registries, to_creds).await?;
        let bar = Bar::new(args.quiet);
        let r = ccm_image::convert(&src, &dst, &settings, &bar).await;
        bar.bar.finish_and_clear();
        r
    })?;
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&outcome)?),
        OutputFormat::Text => {
            println!("image:      {}", outcome.reference);
            println!("digest:     {}", outcome.digest);
            println!("mrenclave:  {}", outcome.mrenclave);
            println!("mrsigner:   {}", outcome.mrsigner);
            println!("isvprodid:  {}", outcome.isvprodid);
            println!("isvsvn:     {}", outcome.isvsvn);
            println!(
                "files:      {} ({} bytes measured)",
                outcome.trusted_files, outcome.trusted_bytes
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_words_platforms() {
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("512m").unwrap(), 512 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(
            parse_size("1X").is_err()
                && parse_size("G").is_err()
                && parse_size("99999999999T").is_err()
        );
        assert_eq!(
            parse_words(r#"["/bin/sh", "-c", "echo a b"]"#).unwrap(),
            ["/bin/sh", "-c", "echo a b"]
        );
        assert_eq!(
            parse_words("/app/server --port 1").unwrap(),
            ["/app/server", "--port", "1"]
        );
        assert_eq!(
            parse_platform("linux/arm64/v8").unwrap().variant.as_deref(),
            Some("v8")
        );
        assert!(parse_platform("linux").is_err());
    }
}
