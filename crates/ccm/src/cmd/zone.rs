//! `ccm zone`: the selected account's zone, its CA certificate and join tokens.

use std::path::PathBuf;

use anyhow::{Context as _, anyhow};
use ccm_api::zones::{JoinTokenInfo, JoinTokenRequest, Zone, ZoneJoinToken};
use reqwest::Method;
use uuid::Uuid;

use super::client::{Client, Output, OutputOpts, print_json, print_table};

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
            let all: Vec<JoinTokenInfo> = c.get(&format!("/v1/zones/{z}/token"))?;
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
