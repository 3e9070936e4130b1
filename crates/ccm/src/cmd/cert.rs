//! `ccm cert`: application certificates of the selected account.

use ccm_api::certificates::{Certificate, RevokeRequest};
use reqwest::Method;
use uuid::Uuid;

use super::client::{Client, Output, OutputOpts, print_fields, print_json, print_table};

/// Application certificates.
#[derive(Debug, clap::Args)]
pub struct CertArgs {
    #[command(flatten)]
    out: OutputOpts,
    #[command(subcommand)]
    command: CertCommand,
}

#[derive(Debug, clap::Subcommand)]
enum CertCommand {
    /// List certificates and certificate requests, newest first.
    List {
        /// Only those of this app.
        #[arg(long)]
        app: Option<Uuid>,
        /// Only those requested through this node.
        #[arg(long)]
        node: Option<Uuid>,
    },
    /// Show a certificate (`--pem` prints the PEM chain only).
    Show {
        /// Certificate id.
        certificate_id: Uuid,
        /// Print the PEM chain.
        #[arg(long)]
        pem: bool,
    },
    /// Revoke an issued certificate (it appears on the zone CRL).
    Revoke {
        /// Certificate id.
        certificate_id: Uuid,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
}

fn show(c: &Certificate) {
    let mut fields = vec![
        ("certificate_id", c.certificate_id.to_string()),
        ("status", c.status.as_str().to_string()),
        ("domains", c.domains.join(", ")),
        ("node_id", c.node_id.to_string()),
        (
            "app_id",
            c.app_id.map(|a| a.to_string()).unwrap_or_default(),
        ),
        (
            "build_id",
            c.build_id.map(|a| a.to_string()).unwrap_or_default(),
        ),
        ("task_id", c.task_id.to_string()),
        ("serial", c.serial.clone().unwrap_or_default()),
        (
            "valid_until",
            c.valid_until.map(|t| t.to_string()).unwrap_or_default(),
        ),
        (
            "simulated",
            if c.simulated {
                "SIMULATED".into()
            } else {
                "no".into()
            },
        ),
        ("message", c.message.clone().unwrap_or_default()),
    ];
    if let Some(e) = &c.enclave_info {
        fields.push(("mrenclave", e.mrenclave.clone()));
        fields.push(("mrsigner", e.mrsigner.clone()));
    }
    print_fields(&fields);
}

/// Runs `ccm cert`.
pub fn run(args: CertArgs) -> anyhow::Result<()> {
    let c = Client::connect()?;
    let out = args.out.output;
    match args.command {
        CertCommand::List { app, node } => {
            let mut q = Vec::new();
            if let Some(a) = app {
                q.push(format!("app_id={a}"));
            }
            if let Some(n) = node {
                q.push(format!("node_id={n}"));
            }
            let path = if q.is_empty() {
                "/v1/certificates".to_string()
            } else {
                format!("/v1/certificates?{}", q.join("&"))
            };
            let certs: Vec<Certificate> = c.get_all(&path)?;
            match out {
                Output::Json => print_json(&certs),
                Output::Text => {
                    let rows: Vec<Vec<String>> = certs
                        .iter()
                        .map(|c| {
                            vec![
                                c.certificate_id.to_string(),
                                c.status.as_str().to_string(),
                                c.domains.join(","),
                                c.node_id.to_string(),
                                if c.simulated {
                                    "SIMULATED".into()
                                } else {
                                    String::new()
                                },
                                c.message.clone().unwrap_or_default(),
                            ]
                        })
                        .collect();
                    print_table(
                        &[
                            "CERTIFICATE_ID",
                            "STATUS",
                            "DOMAINS",
                            "NODE",
                            "PLATFORM",
                            "MESSAGE",
                        ],
                        &rows,
                    );
                    Ok(())
                }
            }
        }
        CertCommand::Show {
            certificate_id,
            pem,
        } => {
            let cert: Certificate = c.get(&format!("/v1/certificates/{certificate_id}"))?;
            if pem {
                print!("{}", cert.certificate.unwrap_or_default());
                return Ok(());
            }
            match out {
                Output::Json => print_json(&cert),
                Output::Text => {
                    show(&cert);
                    Ok(())
                }
            }
        }
        CertCommand::Revoke {
            certificate_id,
            reason,
        } => {
            let cert: Certificate = c.call(
                Method::POST,
                &format!("/v1/certificates/{certificate_id}/revoke"),
                Some(&RevokeRequest { reason }),
            )?;
            match out {
                Output::Json => print_json(&cert),
                Output::Text => {
                    println!(
                        "certificate {} is {}",
                        cert.certificate_id,
                        cert.status.as_str()
                    );
                    Ok(())
                }
            }
        }
    }
}
