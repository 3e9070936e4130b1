//! The launcher's own settings: `--ccm-*` options and `CCM_LAUNCH_*` variables.
//!
//! Everything after the launcher on the command line belongs to the application (that is where
//! `docker run IMAGE ARGS...` puts the runtime arguments), so the launcher only takes options
//! spelled `--ccm-NAME[=VALUE]` that come *first*; the first argument that is not one, or `--`,
//! ends them. Each option has an environment twin (`--ccm-cert-timeout` ↔
//! `CCM_LAUNCH_CERT_TIMEOUT`); the option wins. None of them changes what is verified or what
//! the quote says: they move files for tests, tune timeouts, or (clearly named) select the
//! in-process simulated quoting enclave.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::LaunchError;

/// Default certificate wait (`--ccm-cert-timeout`): one hour, enough for an operator to approve
/// a pending image or domain.
pub const DEFAULT_CERT_TIMEOUT: Duration = Duration::from_secs(3600);

/// Where the quote comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QuoteVia {
    /// The AESM socket (`SGX_AESM_ADDR` set).
    Aesm(PathBuf),
    /// A simulated quoting enclave loaded into the launcher from a `ccm sim init` platform
    /// directory. Tests and demos only.
    DangerousInProcessSim(PathBuf),
    /// Neither is configured.
    None,
}

/// What the launcher was asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Verify, attest, obtain certificates, start the renewer, exec the application.
    Launch,
    /// Verify the manifest, SIGSTRUCT and trusted files, print a summary, exit 0.
    VerifyOnly,
    /// The renewal process for the application with this pid (started by the launcher itself).
    Renewer(u32),
    /// Print the usage and exit codes.
    Help,
    /// Print the version.
    Version,
}

/// The launcher's settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// What to do.
    pub mode: Mode,
    /// The manifest (`/opt/ccm/enclave.json`).
    pub manifest: PathBuf,
    /// The SIGSTRUCT (`/opt/ccm/enclave.sig`).
    pub sigstruct: PathBuf,
    /// The image root the manifest's absolute paths are resolved under (`/`).
    pub root: PathBuf,
    /// The quote source.
    pub quote_via: QuoteVia,
    /// The node agent base URL (`NODE_AGENT_BASE_URL`), unparsed.
    pub agent_url: Option<String>,
    /// How long to wait for each certificate (`None`: for ever).
    pub cert_timeout: Option<Duration>,
    /// Worker threads for file verification (0: automatic).
    pub verify_threads: usize,
    /// The zone CA certificate(s) (PEM file) issued certificates must chain to.
    pub zone_ca: Option<PathBuf>,
    /// Whether to start the renewal process.
    pub renew: bool,
    /// Arguments for the application.
    pub runtime_args: Vec<OsString>,
}

/// One launcher option.
struct Opt {
    name: &'static str,
    env: &'static str,
    takes_value: bool,
    help: &'static str,
}

const OPTS: &[Opt] = &[
    Opt {
        name: "manifest",
        env: "CCM_LAUNCH_MANIFEST",
        takes_value: true,
        help: "the enclave manifest (default /opt/ccm/enclave.json under the root)",
    },
    Opt {
        name: "sigstruct",
        env: "CCM_LAUNCH_SIGSTRUCT",
        takes_value: true,
        help: "the SIGSTRUCT (default /opt/ccm/enclave.sig under the root)",
    },
    Opt {
        name: "root",
        env: "CCM_LAUNCH_ROOT",
        takes_value: true,
        help: "resolve the manifest's paths (files, program, key and certificate paths) under this directory instead of / (tests, offline checks)",
    },
    Opt {
        name: "aesm-socket",
        env: "CCM_LAUNCH_AESM_SOCKET",
        takes_value: true,
        help: "the AESM socket used when SGX_AESM_ADDR is set (default /var/run/aesmd/aesm.socket)",
    },
    Opt {
        name: "cert-timeout",
        env: "CCM_LAUNCH_CERT_TIMEOUT",
        takes_value: true,
        help: "seconds to wait for each certificate, 0 = no limit (default 3600)",
    },
    Opt {
        name: "zone-ca",
        env: "CCM_LAUNCH_ZONE_CA",
        takes_value: true,
        help: "PEM file with the zone CA certificate: an issued certificate must chain to it, else the launcher stops (exit 35)",
    },
    Opt {
        name: "verify-threads",
        env: "CCM_LAUNCH_VERIFY_THREADS",
        takes_value: true,
        help: "threads hashing trusted files (default: one per CPU, at most 8)",
    },
    Opt {
        name: "no-renew",
        env: "CCM_LAUNCH_NO_RENEW",
        takes_value: false,
        help: "do not start the certificate renewal process",
    },
    Opt {
        name: "verify-only",
        env: "CCM_LAUNCH_VERIFY_ONLY",
        takes_value: false,
        help: "verify manifest, SIGSTRUCT and trusted files, print a summary and exit",
    },
    Opt {
        name: "dangerous-inprocess-sim",
        env: "CCM_LAUNCH_DANGEROUS_INPROCESS_SIM",
        takes_value: true,
        help: "SIMULATION ONLY: quote in-process with the simulated platform in this directory (ccm sim init) instead of the AESM socket",
    },
    Opt {
        name: "renewer",
        env: "",
        takes_value: true,
        help: "(internal) run as the renewal process of the application with this pid",
    },
    Opt {
        name: "help",
        env: "",
        takes_value: false,
        help: "print this help",
    },
    Opt {
        name: "version",
        env: "",
        takes_value: false,
        help: "print the version",
    },
];

/// The usage text.
pub fn usage() -> String {
    let mut s = String::from(
        "ccm-launch: the ccm in-image launcher (ENTRYPOINT of converted images)\n\n\
         usage: ccm-launch [--ccm-OPTION[=VALUE]]... [--] [APPLICATION ARGS]...\n\n\
         options (each also read from its CCM_LAUNCH_* variable; the option wins):\n",
    );
    for o in OPTS {
        let flag = if o.takes_value {
            format!("--ccm-{} VALUE", o.name)
        } else {
            format!("--ccm-{}", o.name)
        };
        let env = if o.env.is_empty() {
            String::new()
        } else {
            format!(" [{}]", o.env)
        };
        s.push_str(&format!("  {flag}{env}\n      {}\n", o.help));
    }
    s.push_str(
        "\nenvironment: SGX_AESM_ADDR (set: quote through the AESM socket), NODE_AGENT_BASE_URL \
         (http://HOST:PORT[/v1/], the node agent)\n\nexit codes:\n",
    );
    for (code, what) in crate::error::EXIT_CODES {
        s.push_str(&format!("  {code:>3}  {what}\n"));
    }
    s
}

fn usage_err(msg: impl Into<String>) -> LaunchError {
    LaunchError::Usage(msg.into())
}

impl Config {
    /// Parses the arguments after the program name, with `env` giving environment values.
    pub fn parse(
        args: impl IntoIterator<Item = OsString>,
        env: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Config, LaunchError> {
        let mut args = args.into_iter().peekable();
        let mut given: std::collections::BTreeMap<&'static str, Option<OsString>> =
            Default::default();
        while let Some(arg) = args.peek() {
            let Some(text) = arg.to_str() else { break };
            if text == "--" {
                args.next();
                break;
            }
            let Some(rest) = text.strip_prefix("--ccm-") else {
                break;
            };
            let (name, inline) = match rest.split_once('=') {
                Some((n, v)) => (n.to_owned(), Some(OsString::from(v))),
                None => (rest.to_owned(), None),
            };
            args.next();
            let opt = OPTS.iter().find(|o| o.name == name).ok_or_else(|| {
                usage_err(format!(
                    "unknown launcher option --ccm-{name} (see --ccm-help)"
                ))
            })?;
            let value = if opt.takes_value {
                match inline {
                    Some(v) => Some(v),
                    None => Some(
                        args.next()
                            .ok_or_else(|| usage_err(format!("--ccm-{name} needs a value")))?,
                    ),
                }
            } else {
                if inline.is_some() {
                    return Err(usage_err(format!("--ccm-{name} takes no value")));
                }
                None
            };
            given.insert(opt.name, value);
        }
        let runtime_args: Vec<OsString> = args.collect();

        // The option, else its environment twin.
        let value = |name: &'static str| -> Option<OsString> {
            if let Some(v) = given.get(name) {
                return v.clone();
            }
            let opt = OPTS.iter().find(|o| o.name == name)?;
            if opt.env.is_empty() {
                return None;
            }
            env(opt.env).filter(|v| !v.is_empty())
        };
        let flag = |name: &'static str| -> Result<bool, LaunchError> {
            if given.contains_key(name) {
                return Ok(true);
            }
            let Some(opt) = OPTS.iter().find(|o| o.name == name) else {
                return Ok(false);
            };
            match env(opt.env).as_ref().and_then(|v| v.to_str()) {
                None | Some("" | "0" | "false" | "no") => Ok(false),
                Some("1" | "true" | "yes") => Ok(true),
                Some(other) => Err(usage_err(format!("{}={other:?}: expected 1 or 0", opt.env))),
            }
        };
        let number = |name: &'static str| -> Result<Option<u64>, LaunchError> {
            value(name)
                .map(|v| {
                    v.to_str()
                        .and_then(|s| s.trim().parse::<u64>().ok())
                        .ok_or_else(|| {
                            usage_err(format!(
                                "--ccm-{name}: {v:?} is not a non-negative whole number"
                            ))
                        })
                })
                .transpose()
        };

        let mode = if given.contains_key("help") {
            Mode::Help
        } else if given.contains_key("version") {
            Mode::Version
        } else if let Some(pid) = number("renewer")? {
            let pid = u32::try_from(pid)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| usage_err(format!("--ccm-renewer: {pid} is not a pid")))?;
            Mode::Renewer(pid)
        } else if flag("verify-only")? {
            Mode::VerifyOnly
        } else {
            Mode::Launch
        };

        let sim = value("dangerous-inprocess-sim").map(PathBuf::from);
        let aesm_addr = env("SGX_AESM_ADDR").filter(|v| !v.is_empty());
        let socket = value("aesm-socket")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(ccm_aesm::DEFAULT_SOCKET));
        let quote_via = match (sim, aesm_addr) {
            (Some(_), Some(_)) => {
                return Err(usage_err(
                    "SGX_AESM_ADDR is set and --ccm-dangerous-inprocess-sim is given: choose one quote source",
                ));
            }
            (Some(dir), None) => QuoteVia::DangerousInProcessSim(dir),
            (None, Some(_)) => QuoteVia::Aesm(socket),
            (None, None) => QuoteVia::None,
        };

        let cert_timeout = match number("cert-timeout")? {
            None => Some(DEFAULT_CERT_TIMEOUT),
            Some(0) => None,
            Some(s) => Some(Duration::from_secs(s)),
        };
        let verify_threads = number("verify-threads")?.unwrap_or(0);
        let verify_threads = usize::try_from(verify_threads)
            .ok()
            .filter(|n| *n <= 256)
            .ok_or_else(|| usage_err("--ccm-verify-threads: at most 256"))?;

        let root = value("root")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/"));
        let under_root = |p: &str| root.join(p.trim_start_matches('/'));
        Ok(Config {
            mode,
            manifest: value("manifest")
                .map(PathBuf::from)
                .unwrap_or_else(|| under_root(ccm_enclave::MANIFEST_PATH)),
            sigstruct: value("sigstruct")
                .map(PathBuf::from)
                .unwrap_or_else(|| under_root(ccm_enclave::SIGSTRUCT_PATH)),
            root,
            quote_via,
            agent_url: env("NODE_AGENT_BASE_URL")
                .and_then(|v| v.into_string().ok())
                .filter(|v| !v.trim().is_empty()),
            cert_timeout,
            verify_threads,
            zone_ca: value("zone-ca").map(PathBuf::from),
            renew: !flag("no-renew")?,
            runtime_args,
        })
    }

    /// The options to hand to the renewal process so it finds the same files and services.
    pub fn renewer_args(&self, app_pid: u32) -> Vec<OsString> {
        let mut out: Vec<OsString> = vec![
            format!("--ccm-renewer={app_pid}").into(),
            "--ccm-manifest".into(),
            self.manifest.clone().into(),
            "--ccm-sigstruct".into(),
            self.sigstruct.clone().into(),
            "--ccm-root".into(),
            self.root.clone().into(),
            "--ccm-verify-threads".into(),
            self.verify_threads.to_string().into(),
            "--ccm-cert-timeout".into(),
            self.cert_timeout
                .map_or(0, |d| d.as_secs())
                .to_string()
                .into(),
        ];
        if let Some(ca) = &self.zone_ca {
            out.push("--ccm-zone-ca".into());
            out.push(ca.clone().into());
        }
        match &self.quote_via {
            QuoteVia::Aesm(socket) => {
                out.push("--ccm-aesm-socket".into());
                out.push(socket.clone().into());
            }
            QuoteVia::DangerousInProcessSim(dir) => {
                out.push("--ccm-dangerous-inprocess-sim".into());
                out.push(dir.clone().into());
            }
            QuoteVia::None => {}
        }
        out
    }

    /// `path` (absolute, from the manifest) under [`Config::root`].
    pub fn in_root(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Config, LaunchError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::parse(args.iter().map(OsString::from), move |k| {
            env.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| OsString::from(v))
        })
    }

    #[test]
    fn defaults() {
        let c = parse(&[], &[]).unwrap();
        assert_eq!(c.mode, Mode::Launch);
        assert_eq!(c.manifest, PathBuf::from("/opt/ccm/enclave.json"));
        assert_eq!(c.sigstruct, PathBuf::from("/opt/ccm/enclave.sig"));
        assert_eq!(c.quote_via, QuoteVia::None);
        assert_eq!(c.cert_timeout, Some(DEFAULT_CERT_TIMEOUT));
        assert!(c.renew && c.runtime_args.is_empty());
    }

    #[test]
    fn launcher_options_come_first_and_the_rest_is_the_apps() {
        let c = parse(
            &[
                "--ccm-manifest=/m.json",
                "--ccm-cert-timeout",
                "5",
                "--ccm-no-renew",
                "serve",
                "--ccm-root",
                "/x",
            ],
            &[("SGX_AESM_ADDR", "1"), ("CCM_LAUNCH_MANIFEST", "/env.json")],
        )
        .unwrap();
        assert_eq!(c.manifest, PathBuf::from("/m.json"), "the option wins");
        assert_eq!(c.cert_timeout, Some(Duration::from_secs(5)));
        assert!(!c.renew);
        assert_eq!(c.root, PathBuf::from("/"));
        assert_eq!(c.runtime_args, ["serve", "--ccm-root", "/x"]);
        assert_eq!(
            c.quote_via,
            QuoteVia::Aesm(PathBuf::from("/var/run/aesmd/aesm.socket"))
        );
        let c = parse(&["--", "--ccm-root"], &[]).unwrap();
        assert_eq!(c.runtime_args, ["--ccm-root"]);
    }

    #[test]
    fn environment_twins() {
        let c = parse(
            &[],
            &[
                ("CCM_LAUNCH_ROOT", "/r"),
                ("CCM_LAUNCH_CERT_TIMEOUT", "0"),
                ("CCM_LAUNCH_NO_RENEW", "1"),
                ("CCM_LAUNCH_DANGEROUS_INPROCESS_SIM", "/plat"),
            ],
        )
        .unwrap();
        assert_eq!(c.root, PathBuf::from("/r"));
        assert_eq!(c.manifest, PathBuf::from("/r/opt/ccm/enclave.json"));
        assert_eq!(c.sigstruct, PathBuf::from("/r/opt/ccm/enclave.sig"));
        assert_eq!(c.cert_timeout, None);
        assert!(!c.renew);
        assert_eq!(
            c.quote_via,
            QuoteVia::DangerousInProcessSim(PathBuf::from("/plat"))
        );
    }

    #[test]
    fn bad_options_are_usage_errors() {
        for (args, env, needle) in [
            (
                &["--ccm-nope"][..],
                &[][..],
                "unknown launcher option --ccm-nope",
            ),
            (&["--ccm-manifest"], &[], "needs a value"),
            (&["--ccm-no-renew=1"], &[], "takes no value"),
            (&["--ccm-cert-timeout=soon"], &[], "not a non-negative"),
            (&["--ccm-renewer=0"], &[], "not a pid"),
            (&[], &[("CCM_LAUNCH_NO_RENEW", "maybe")], "expected 1 or 0"),
            (
                &["--ccm-dangerous-inprocess-sim=/p"],
                &[("SGX_AESM_ADDR", "1")],
                "choose one quote source",
            ),
        ] {
            let err = parse(args, env).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().contains(needle), "{err}");
        }
    }

    #[test]
    fn renewer_args_round_trip() {
        let c = parse(
            &["--ccm-root=/r", "--ccm-aesm-socket=/s"],
            &[
                ("SGX_AESM_ADDR", "1"),
                ("CCM_LAUNCH_ZONE_CA", "/etc/ccm/ca.pem"),
            ],
        )
        .unwrap();
        assert_eq!(c.zone_ca, Some(PathBuf::from("/etc/ccm/ca.pem")));
        let again = parse(
            &c.renewer_args(42)
                .iter()
                .map(|s| s.to_str().unwrap())
                .collect::<Vec<_>>(),
            &[("SGX_AESM_ADDR", "1")],
        )
        .unwrap();
        assert_eq!(again.mode, Mode::Renewer(42));
        assert_eq!(
            (
                again.root,
                again.quote_via,
                again.cert_timeout,
                again.zone_ca
            ),
            (c.root, c.quote_via, c.cert_timeout, c.zone_ca)
        );
    }

    #[test]
    fn usage_lists_options_and_codes() {
        let u = usage();
        assert!(u.contains("--ccm-dangerous-inprocess-sim VALUE"));
        assert!(u.contains(" 12  a trusted file"));
    }
}
