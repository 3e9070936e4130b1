//! `ccm audit`: read and verify the hash-chained audit log.

use ccm_api::audit::{AuditEntry, AuditPage, GENESIS_HASH, verify_chain};

use super::Failure;
use super::client::{Client, Output, OutputOpts, print_json, print_table};

/// The audit log.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    #[command(flatten)]
    out: OutputOpts,
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, clap::Subcommand)]
enum AuditCommand {
    /// List entries.
    List {
        /// Entries after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Fetch the whole log and check every hash and link (exit 1 if it does not verify).
    Verify,
}

fn fetch_all(c: &Client) -> anyhow::Result<(Vec<AuditEntry>, bool)> {
    let mut entries = Vec::new();
    let mut after = 0;
    loop {
        let page: AuditPage = c.get(&format!("/v1/audit?after={after}&limit=1000"))?;
        let complete = page.complete_chain;
        entries.extend(page.entries);
        match page.next_after {
            Some(n) => after = n,
            None => return Ok((entries, complete)),
        }
    }
}

/// Runs `ccm audit`.
pub fn run(args: AuditArgs) -> anyhow::Result<()> {
    let c = Client::connect()?;
    let out = args.out.output;
    match args.command {
        AuditCommand::List { after, limit } => {
            let page: AuditPage = c.get(&format!("/v1/audit?after={after}&limit={limit}"))?;
            match out {
                Output::Json => print_json(&page),
                Output::Text => {
                    let rows: Vec<Vec<String>> = page
                        .entries
                        .iter()
                        .map(|e| {
                            vec![
                                e.seq.to_string(),
                                e.at.to_string(),
                                e.actor.clone(),
                                e.action.clone(),
                                e.object_id.map(|o| o.to_string()).unwrap_or_default(),
                            ]
                        })
                        .collect();
                    print_table(&["SEQ", "AT", "ACTOR", "ACTION", "OBJECT"], &rows);
                    Ok(())
                }
            }
        }
        AuditCommand::Verify => {
            let (entries, complete) = fetch_all(&c)?;
            let result = if complete {
                verify_chain(&entries, GENESIS_HASH.to_string(), 1).map(|_| ())
            } else {
                entries
                    .iter()
                    .find(|e| e.computed_hash() != e.hash)
                    .map_or(Ok(()), |e| {
                        Err(ccm_api::audit::ChainFault::HashMismatch { seq: e.seq })
                    })
            };
            let report = serde_json::json!({
                "verified": result.is_ok(),
                "entries": entries.len(),
                "complete_chain": complete,
                "head": entries.last().map(|e| e.hash.clone()),
                "fault": result.as_ref().err().map(|f| f.to_string()),
            });
            match out {
                Output::Json => print_json(&report)?,
                Output::Text => match &result {
                    Ok(()) if complete => println!(
                        "audit log verified: {} entries chained from genesis, head {}",
                        entries.len(),
                        entries.last().map_or(GENESIS_HASH, |e| e.hash.as_str())
                    ),
                    Ok(()) => println!(
                        "{} entries of this account verified individually (links between them need the whole \
                         chain: ask a system administrator to run `ccm audit verify`)",
                        entries.len()
                    ),
                    Err(_) => {}
                },
            }
            result.map_err(|f| {
                anyhow::Error::new(Failure {
                    code: 1,
                    message: format!("audit log does not verify: {f}"),
                })
            })
        }
    }
}
