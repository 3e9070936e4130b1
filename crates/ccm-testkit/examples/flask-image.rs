//! Builds (or reuses from the cache) the seed journey's python-flask image and optionally pushes
//! it to a registry. The command-line face of `ccm_testkit::flask`, run by
//! `scripts/build-flask-image`.
//!
//! ```text
//! flask-image [--cache-dir DIR] [--push HOST[:PORT]/REPO:TAG [--credentials USER:PASSWORD]
//!             [--insecure-registry HOST[:PORT]]...] [--location-only]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use ccm_testkit::flask;

const USAGE: &str = "usage: flask-image [--cache-dir DIR] [--push HOST[:PORT]/REPO:TAG \
[--credentials USER:PASSWORD] [--insecure-registry HOST[:PORT]]...] [--location-only]";

#[derive(Default)]
struct Args {
    cache_dir: Option<PathBuf>,
    push: Option<String>,
    credentials: Option<String>,
    insecure: Vec<String>,
    location_only: bool,
}

fn parse() -> Result<Args, String> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--cache-dir" => args.cache_dir = Some(value("--cache-dir")?.into()),
            "--push" => args.push = Some(value("--push")?),
            "--credentials" => args.credentials = Some(value("--credentials")?),
            "--insecure-registry" => args.insecure.push(value("--insecure-registry")?),
            "--location-only" => args.location_only = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if args.push.is_none() && (args.credentials.is_some() || !args.insecure.is_empty()) {
        return Err(format!(
            "--credentials and --insecure-registry need --push\n{USAGE}"
        ));
    }
    Ok(args)
}

async fn run(args: Args) -> Result<(), ccm_testkit::Error> {
    let cache = args.cache_dir.unwrap_or_else(flask::cache_root);
    let image = tokio::task::spawn_blocking(move || {
        flask::build_or_reuse(&flask::Recipe::default(), &cache)
    })
    .await
    .map_err(|e| flask::FlaskError::Task(e.to_string()))??;
    if args.location_only {
        println!("{}", image.location());
    } else {
        let s = &image.stats;
        println!("location:        {}", image.location());
        println!("manifest digest: {}", image.manifest_digest);
        println!(
            "layer digest:    {} (diff id {})",
            image.layer_digest, image.diff_id
        );
        println!(
            "{:<17}{:.3}s",
            if image.cached {
                "found in cache:"
            } else {
                "built in:"
            },
            image.elapsed.as_secs_f64()
        );
        println!(
            "cold build:      {:.1}s (debootstrap {:.1}s)",
            s.build_seconds, s.debootstrap_seconds
        );
        println!(
            "files:           {} regular ({:.1} MiB), {} directories, {} symlinks, {} hard links",
            s.regular_files,
            s.file_bytes as f64 / 1048576.0,
            s.directories,
            s.symlinks,
            s.hard_links
        );
        println!(
            "trimmed:         {} entries ({:.1} MiB); {} .pyc recompiled (unchecked-hash)",
            s.trimmed_files,
            s.trimmed_bytes as f64 / 1048576.0,
            s.recompiled_pyc
        );
        println!(
            "layer:           {:.1} MiB tar, {:.1} MiB gzip",
            s.layer_tar_bytes as f64 / 1048576.0,
            s.layer_gzip_bytes as f64 / 1048576.0
        );
    }
    if let Some(reference) = args.push {
        let pushed = flask::push_image(
            &image,
            &reference,
            args.credentials.as_deref(),
            &args.insecure,
        )
        .await?;
        if args.location_only {
            eprintln!("pushed {} ({})", pushed.reference, pushed.digest);
        } else {
            println!("pushed:          {} ({})", pushed.reference, pushed.digest);
        }
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flask-image: error: {e}");
            ExitCode::FAILURE
        }
    }
}
