//! `ccm-launch`: the ENTRYPOINT of converted images. See the library docs and docs/launcher.md.

use std::ffi::OsString;
use std::process::ExitCode;

use ccm_launch::{Config, LaunchError, Mode, log};

fn fail(e: &LaunchError) -> ExitCode {
    // One line, whatever a peer put into the message.
    let line: String = e
        .to_string()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    log(&format!("error: {line}"));
    ExitCode::from(e.exit_code())
}

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    let argv0: Option<OsString> = args.next();
    let cfg = match Config::parse(args, |k| std::env::var_os(k)) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    match cfg.mode {
        Mode::Help => {
            print!("{}", ccm_launch::config::usage());
            ExitCode::SUCCESS
        }
        Mode::Version => {
            println!("ccm-launch {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Mode::VerifyOnly => match ccm_launch::verify_only(&cfg) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        },
        Mode::Renewer(parent) => match ccm_launch::renew::run(&cfg, parent) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        },
        Mode::Launch => fail(&ccm_launch::launch(&cfg, argv0.as_ref())),
    }
}
