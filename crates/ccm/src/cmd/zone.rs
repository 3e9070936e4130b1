//! `ccm zone`: the selected account's zone, its node settings, CA certificate and join tokens.

use std::path::PathBuf;

use anyhow::{Context as _, anyhow};
use ccm_api::zones::{
    JoinTokenInfo, JoinTokenRequest, NodePolicy, Zone, ZoneJoinToken, ZoneUpdateRequest,
};
use reqwest::Method;
use uuid::Uuid;

use super::client::{Client, Output, OutputOpts, print_fields, print_json, print_table};

/// Zones and join tokens.
#[derive(Debug, clap::Args)]
pub struct ZoneArgs {
    #[command(flatten)]
    out: OutputOpts,
    #[command(subcommand)]
    command: ZoneCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ZoneCommand {
    /// List zones.
    List,
    /// Show a zone with its node settings.
    Show {
        /// Zone id (default: the account's zone).
        #[arg(long)]
        zone: Option<Uuid>,
    },
    /// Change the zone's node settings (MANAGER); absent options stay as they are.
    Update {
        /// Zone id (default: the account's zone).
        #[arg(long)]
        zone: Option<Uuid>,
        /// Seconds between the node agents' check-ins.
        #[arg(long, value_name = "SECS")]
        refresh_interval: Option<i64>,
        /// Node agents renew their certificate when less than this percentage of its validity
        /// is left (5-90).
        #[arg(long, value_name = "PERCENT")]
        renewal_threshold: Option<i64>,
        /// Whether each node enrollment needs a MANAGER's approval (keeps the accepted TCB
        /// statuses).
        #[arg(long, value_name = "BOOL")]
        require_approval: Option<bool>,
        /// A description (empty: none).
        #[arg(long)]
        description: Option<String>,
    },
    /// Print (or save) the zone CA certificate (PEM).
    Certificate {
        /// Zone id (default: the account's zone).
        #[arg(long)]
        zone: Option<Uuid>,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out_file: Option<PathBuf>,
    },
    /// Join tokens for enrolling nodes.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, clap::Subcommand)]
enum TokenCommand {
    /// Create a join token (shown once).
    Create {
        /// Zone id (default: the account's zone).
        #[arg(long)]
        zone: Option<Uuid>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 86_400)]
        expires_in: i64,
        /// The token admits one node only.
        #[arg(long)]
        single_use: bool,
        /// A note.
        #[arg(long)]
        description: Option<String>,
    },
    /// List join tokens (without secrets).
    List {
        /// Zone id (default: the account's zone).
        #[arg(long)]
        zone: Option<Uuid>,
    },
    /// Revoke a join token at once.
    Revoke {
        /// Token id.
        token_id: Uuid,
        /// Zone id (default: the account's zone).
        #[arg(long)]
        zone: Option<Uuid>,
    },
}

fn show(z: &Zone, out: Output) -> anyhow::Result<()> {
    match out {
        Output::Json => print_json(z),
        Output::Text => {
            print_fields(&[
                ("zone_id", z.zone_id.to_string()),
                ("name", z.name.clone()),
                ("description", z.description.clone().unwrap_or_default()),
                (
                    "node_refresh_interval",
                    format!("{} s", z.node_refresh_interval),
                ),
                (
                    "node_renewal_threshold",
                    format!("{} %", z.node_renewal_threshold),
                ),
                (
                    "require_approval",
                    z.node_enrollment.require_approval.to_string(),
                ),
                (
                    "accepted_tcb_statuses",
                    z.node_enrollment
                        .accepted_tcb_statuses
                        .iter()
                        .map(|s| format!("{s:?}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
            ]);
            Ok(())
        }
    }
}

fn zone_id(c: &Client, zone: Option<Uuid>) -> anyhow::Result<Uuid> {
    if let Some(z) = zone {
        return Ok(z);
    }
    let zones: Vec<Zone> = c.get("/v1/zones")?;
    zones
        .first()
        .map(|z| z.zone_id)
        .ok_or_else(|| anyhow!("the selected account has no zone"))
}

/// Runs `ccm zone`.
pub fn run(args: ZoneArgs) -> anyhow::Result<()> {
    let c = Client::connect()?;
    let out = args.out.output;
    match args.command {
        ZoneCommand::List => {
            let zones: Vec<Zone> = c.get("/v1/zones")?;
            match out {
                Output::Json => print_json(&zones),
                Output::Text => {
                    let rows: Vec<Vec<String>> = zones
                        .iter()
                        .map(|z| {
                            vec![
                                z.zone_id.to_string(),
                                z.name.clone(),
                                format!("{:?}", z.ca_key_type),
                            ]
                        })
                        .collect();
                    print_table(&["ZONE_ID", "NAME", "CA_KEY"], &rows);
                    Ok(())
                }
            }
        }
        ZoneCommand::Show { zone } => {
            let z = zone_id(&c, zone)?;
            let zone: Zone = c.get(&format!("/v1/zones/{z}"))?;
            show(&zone, out)
        }
        ZoneCommand::Update {
            zone,
            refresh_interval,
            renewal_threshold,
            require_approval,
            description,
        } => {
            let z = zone_id(&c, zone)?;
            let node_enrollment = match require_approval {
                Some(require_approval) => {
                    let current: Zone = c.get(&format!("/v1/zones/{z}"))?;
                    Some(NodePolicy {
                        require_approval,
                        ..current.node_enrollment
                    })
                }
                None => None,
            };
            let req = ZoneUpdateRequest {
                description,
                node_refresh_interval: refresh_interval,
                node_renewal_threshold: renewal_threshold,
                node_enrollment,
            };
            let zone: Zone = c.call(Method::PATCH, &format!("/v1/zones/{z}"), Some(&req))?;
            show(&zone, out)
        }
        ZoneCommand::Certificate { zone, out_file } => {
            let z = zone_id(&c, zone)?;
            let pem = c.call_text(
                Method::GET,
                &format!("/v1/zones/{z}/certificate"),
                None::<&()>,
            )?;
            match out_file {
                Some(p) => {
                    std::fs::write(&p, pem).with_context(|| format!("writing {}", p.display()))
                }
                None => {
                    print!("{pem}");
                    Ok(())
                }
            }
        }
        ZoneCommand::Token(TokenCommand::Create {
            zone,
            expires_in,
            single_use,
            description,
        }) => {
            let z = zone_id(&c, zone)?;
            let req = JoinTokenRequest {
                expires_in: Some(expires_in),
                single_use,
                description,
            };
            let t: ZoneJoinToken =
                c.call(Method::POST, &format!("/v1/zones/{z}/token"), Some(&req))?;
            match out {
                Output::Json => print_json(&t),
                Output::Text => {
                    println!("{}", t.token);
                    eprintln!(
                        "Join token {} expires at {} (Unix time){}. It is shown only now.",
                        t.info.token_id,
                        t.info.expires_at,
                        if t.info.single_use {
                            ", single use"
                        } else {
                            ""
                        }
                    );
                    Ok(())
                }
            }
        }
        ZoneCommand::Token(TokenCommand::List { zone }) => {
            let z = zone_id(&c, zone)?;
            let all: Vec<JoinTokenInfo> = c.get(&format!("/v1/zones/{z}/tokens"))?;
            match out {
                Output::Json => print_json(&all),
                Output::Text => {
                    let rows: Vec<Vec<String>> = all
                        .iter()
                        .map(|t| {
                            let state = if t.revoked_at.is_some() {
                                "revoked"
                            } else {
                                "active"
                            };
                            vec![
                                t.token_id.to_string(),
                                t.expires_at.to_string(),
                                t.single_use.to_string(),
                                t.use_count.to_string(),
                                state.into(),
                            ]
                        })
                        .collect();
                    print_table(
                        &["TOKEN_ID", "EXPIRES_AT", "SINGLE_USE", "USES", "STATE"],
                        &rows,
                    );
                    Ok(())
                }
            }
        }
        ZoneCommand::Token(TokenCommand::Revoke { token_id, zone }) => {
            let z = zone_id(&c, zone)?;
            let t: JoinTokenInfo = c.call(
                Method::DELETE,
                &format!("/v1/zones/{z}/token/{token_id}"),
                None::<&()>,
            )?;
            match out {
                Output::Json => print_json(&t),
                Output::Text => {
                    println!("Revoked join token {token_id}");
                    Ok(())
                }
            }
        }
    }
}
