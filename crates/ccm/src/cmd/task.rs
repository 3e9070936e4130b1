//! `ccm task`: approval tasks of the selected account.

use ccm_api::tasks::{ApprovalStatus, Task, TaskUpdateRequest};
use reqwest::Method;
use uuid::Uuid;

use super::client::{Client, Output, OutputOpts, print_fields, print_json, print_table};

/// Review, approve and deny tasks.
#[derive(Debug, clap::Args)]
pub struct TaskArgs {
    #[command(flatten)]
    out: OutputOpts,
    #[command(subcommand)]
    command: TaskCommand,
}

#[derive(Debug, clap::Subcommand)]
enum TaskCommand {
    /// List tasks, newest first.
    List {
        /// Only tasks in this status (INPROGRESS, SUCCESS, DENIED, FAILED).
        #[arg(long)]
        status: Option<String>,
        /// Only tasks of this type (DOMAIN_WHITELIST, BUILD_WHITELIST, ...).
        #[arg(long = "type")]
        task_type: Option<String>,
    },
    /// Show a task.
    Show {
        /// Task id.
        task_id: Uuid,
    },
    /// Approve a task (MANAGER).
    Approve {
        /// Task id.
        task_id: Uuid,
    },
    /// Deny a task (MANAGER).
    Deny {
        /// Task id.
        task_id: Uuid,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
}

fn show(t: &Task, out: Output) -> anyhow::Result<()> {
    match out {
        Output::Json => print_json(t),
        Output::Text => {
            print_fields(&[
                ("task_id", t.task_id.to_string()),
                ("type", t.task_type.as_str().into()),
                ("status", t.status.status.as_str().into()),
                ("entity_id", t.entity_id.to_string()),
                ("requester", t.requester_info.requester_name.clone()),
                ("description", t.description.clone()),
                (
                    "decisions",
                    t.approvals
                        .iter()
                        .map(|a| {
                            format!(
                                "{} by {}{}",
                                a.status.as_str(),
                                a.user_name,
                                a.denial_reason
                                    .as_ref()
                                    .map(|r| format!(": {r}"))
                                    .unwrap_or_default()
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
            ]);
            Ok(())
        }
    }
}

/// Runs `ccm task`.
pub fn run(args: TaskArgs) -> anyhow::Result<()> {
    let c = Client::connect()?;
    let out = args.out.output;
    match args.command {
        TaskCommand::List { status, task_type } => {
            let mut query = Vec::new();
            if let Some(s) = status {
                query.push(format!("status={}", s.to_ascii_uppercase()));
            }
            if let Some(t) = task_type {
                query.push(format!("task_type={}", t.to_ascii_uppercase()));
            }
            let path = if query.is_empty() {
                "/v1/tasks".to_string()
            } else {
                format!("/v1/tasks?{}", query.join("&"))
            };
            let all: Vec<Task> = c.get_all(&path)?;
            match out {
                Output::Json => print_json(&all),
                Output::Text => {
                    let rows: Vec<Vec<String>> = all
                        .iter()
                        .map(|t| {
                            vec![
                                t.task_id.to_string(),
                                t.task_type.as_str().into(),
                                t.status.status.as_str().into(),
                                t.description.clone(),
                            ]
                        })
                        .collect();
                    print_table(&["TASK_ID", "TYPE", "STATUS", "DESCRIPTION"], &rows);
                    Ok(())
                }
            }
        }
        TaskCommand::Show { task_id } => show(&c.get(&format!("/v1/tasks/{task_id}"))?, out),
        TaskCommand::Approve { task_id } => {
            let req = TaskUpdateRequest {
                status: ApprovalStatus::Approved,
                denial_reason: None,
            };
            show(
                &c.call(Method::PATCH, &format!("/v1/tasks/{task_id}"), Some(&req))?,
                out,
            )
        }
        TaskCommand::Deny { task_id, reason } => {
            let req = TaskUpdateRequest {
                status: ApprovalStatus::Denied,
                denial_reason: reason,
            };
            show(
                &c.call(Method::PATCH, &format!("/v1/tasks/{task_id}"), Some(&req))?,
                out,
            )
        }
    }
}
