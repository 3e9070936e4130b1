//! `ccm node`: compute nodes of the selected account.

use ccm_api::nodes::Node;
use reqwest::Method;
use uuid::Uuid;

use super::client::{Client, Output, OutputOpts, print_fields, print_json, print_table};

/// Compute nodes.
#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    #[command(flatten)]
    out: OutputOpts,
    #[command(subcommand)]
    command: NodeCommand,
}

#[derive(Debug, clap::Subcommand)]
enum NodeCommand {
    /// List nodes.
    List,
    /// Show a node with its platform and the apps running on it.
    Show {
        /// Node id.
        node_id: Uuid,
    },
    /// Deactivate a node: its certificate stops working at once.
    Deactivate {
        /// Node id.
        node_id: Uuid,
    },
}

fn show(n: &Node) {
    let mut fields = vec![
        ("node_id", n.node_id.to_string()),
        ("name", n.name.clone()),
        ("status", n.status.status.as_str().to_string()),
        ("platform", n.platform.clone()),
        ("fmspc", n.sgx_info.fmspc.clone()),
        ("tcb_status", format!("{:?}", n.sgx_info.tcb_status)),
        ("advisories", n.sgx_info.advisory_ids.join(", ")),
        ("ppid_hash", n.sgx_info.ppid_hash.clone()),
        ("attested_at", n.attested_at.to_string()),
        (
            "last_seen_at",
            n.status
                .last_seen_at
                .map(|t| t.to_string())
                .unwrap_or_default(),
        ),
    ];
    for a in &n.apps {
        fields.push((
            "app",
            format!(
                "{} ({}) MRENCLAVE {} {}",
                a.app_name,
                a.app_id,
                a.mrenclave,
                a.status.status.as_str()
            ),
        ));
    }
    print_fields(&fields);
}

/// Runs `ccm node`.
pub fn run(args: NodeArgs) -> anyhow::Result<()> {
    let c = Client::connect()?;
    let out = args.out.output;
    match args.command {
        NodeCommand::List => {
            let nodes: Vec<Node> = c.get_all("/v1/nodes")?;
            match out {
                Output::Json => print_json(&nodes),
                Output::Text => {
                    let rows: Vec<Vec<String>> = nodes
                        .iter()
                        .map(|n| {
                            vec![
                                n.node_id.to_string(),
                                n.name.clone(),
                                n.status.status.as_str().to_string(),
                                n.platform.clone(),
                                format!("{:?}", n.sgx_info.tcb_status),
                                n.apps.len().to_string(),
                            ]
                        })
                        .collect();
                    print_table(
                        &["NODE_ID", "NAME", "STATUS", "PLATFORM", "TCB", "APPS"],
                        &rows,
                    );
                    Ok(())
                }
            }
        }
        NodeCommand::Show { node_id } => {
            let n: Node = c.get(&format!("/v1/nodes/{node_id}"))?;
            match out {
                Output::Json => print_json(&n),
                Output::Text => {
                    show(&n);
                    Ok(())
                }
            }
        }
        NodeCommand::Deactivate { node_id } => {
            let () = c.call(
                Method::POST,
                &format!("/v1/nodes/{node_id}/deactivate"),
                None::<&()>,
            )?;
            let n: Node = c.get(&format!("/v1/nodes/{node_id}"))?;
            match out {
                Output::Json => print_json(&n),
                Output::Text => {
                    println!(
                        "node {} ({}) is {}",
                        n.name,
                        n.node_id,
                        n.status.status.as_str()
                    );
                    Ok(())
                }
            }
        }
    }
}
