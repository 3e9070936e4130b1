//! `ccm account`: create, list, show, select, update, delete accounts.

use anyhow::{anyhow, bail};
use ccm_api::accounts::{
    Account, AccountRequest, AccountUpdateRequest, ApprovalPolicy, ZoneCaKeyType,
};
use ccm_api::auth::SessionInfo;
use reqwest::Method;
use uuid::Uuid;

use super::client::{Client, Output, OutputOpts, print_fields, print_json, print_table};

/// Manage accounts.
#[derive(Debug, clap::Args)]
pub struct AccountArgs {
    #[command(flatten)]
    out: OutputOpts,
    #[command(subcommand)]
    command: AccountCommand,
}

/// Approval policy on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PolicyArg {
    /// A MANAGER approves each task.
    Manual,
    /// Tasks are approved as they are created.
    AutoApprove,
}

impl From<PolicyArg> for ApprovalPolicy {
    fn from(p: PolicyArg) -> Self {
        match p {
            PolicyArg::Manual => ApprovalPolicy::Manual,
            PolicyArg::AutoApprove => ApprovalPolicy::AutoApprove,
        }
    }
}

/// Zone CA key type on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum CaKeyArg {
    /// ECDSA P-256.
    P256,
    /// ECDSA P-384.
    P384,
}

#[derive(Debug, clap::Subcommand)]
enum AccountCommand {
    /// Create an account (you become its MANAGER).
    Create {
        /// Account name.
        name: String,
        /// Task approval policy.
        #[arg(long, value_enum, default_value = "manual")]
        approval_policy: PolicyArg,
        /// Zone CA key type.
        #[arg(long, value_enum, default_value = "p256")]
        ca_key_type: CaKeyArg,
        /// Select the new account.
        #[arg(long)]
        select: bool,
        /// Trust nodes and application quotes resting on a simulated SGX platform (SIMULATED:
        /// development and tests only).
        #[arg(long)]
        allow_simulated: bool,
    },
    /// List your accounts.
    List,
    /// Show an account (default: the selected one).
    Show {
        /// Account name or id.
        account: Option<String>,
    },
    /// Select the account later commands work in.
    Select {
        /// Account name or id.
        account: String,
    },
    /// Rename an account, change its approval policy or its trust in simulated platforms.
    Update {
        /// Account name or id.
        account: String,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        /// New approval policy.
        #[arg(long, value_enum)]
        approval_policy: Option<PolicyArg>,
        /// Trust (true) or refuse (false) nodes and application quotes resting on a simulated
        /// SGX platform (SIMULATED: development and tests only; off by default).
        #[arg(long)]
        allow_simulated: Option<bool>,
    },
    /// Delete an account and everything it owns.
    Delete {
        /// Account name or id.
        account: String,
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
    },
}

/// Resolves an account name or id among the caller's accounts.
pub fn resolve(c: &Client, account: &str) -> anyhow::Result<Account> {
    let all: Vec<Account> = c.get_all("/v1/accounts")?;
    let id = Uuid::try_parse(account).ok();
    all.into_iter()
        .find(|a| Some(a.acct_id) == id || a.name == account)
        .ok_or_else(|| anyhow!("no account {account:?} among yours (see `ccm account list`)"))
}

fn show(a: &Account, out: Output) -> anyhow::Result<()> {
    match out {
        Output::Json => print_json(a),
        Output::Text => {
            print_fields(&[
                ("acct_id", a.acct_id.to_string()),
                ("name", a.name.clone()),
                (
                    "roles",
                    a.roles
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                ("approval_policy", a.approval_policy.as_str().into()),
                ("allow_simulated", a.allow_simulated.to_string()),
                ("zone_id", a.zone_id.to_string()),
                ("apps", a.totals.apps.to_string()),
                ("images", a.totals.builds.to_string()),
                ("pending_tasks", a.totals.pending_tasks.to_string()),
                ("users", a.totals.users.to_string()),
            ]);
            Ok(())
        }
    }
}

fn select(c: &mut Client, a: &Account) -> anyhow::Result<()> {
    let _: SessionInfo = c.call(
        Method::POST,
        &format!("/v1/sys/session/select_account/{}", a.acct_id),
        None::<&()>,
    )?;
    c.creds.selected_account = Some(a.acct_id);
    c.creds.save()
}

/// Runs `ccm account`.
pub fn run(args: AccountArgs) -> anyhow::Result<()> {
    let mut c = Client::connect()?;
    let out = args.out.output;
    match args.command {
        AccountCommand::Create {
            name,
            approval_policy,
            ca_key_type,
            select: sel,
            allow_simulated,
        } => {
            let req = AccountRequest {
                name,
                approval_policy: Some(approval_policy.into()),
                zone_ca_key_type: Some(match ca_key_type {
                    CaKeyArg::P256 => ZoneCaKeyType::EcP256,
                    CaKeyArg::P384 => ZoneCaKeyType::EcP384,
                }),
                allow_simulated: Some(allow_simulated),
            };
            let a: Account = c.call(Method::POST, "/v1/accounts", Some(&req))?;
            if sel {
                select(&mut c, &a)?;
            }
            show(&a, out)
        }
        AccountCommand::List => {
            let all: Vec<Account> = c.get_all("/v1/accounts")?;
            match out {
                Output::Json => print_json(&all),
                Output::Text => {
                    let rows: Vec<Vec<String>> = all
                        .iter()
                        .map(|a| {
                            let mark = if Some(a.acct_id) == c.creds.selected_account {
                                "*"
                            } else {
                                ""
                            };
                            vec![
                                mark.into(),
                                a.acct_id.to_string(),
                                a.name.clone(),
                                a.roles
                                    .iter()
                                    .map(|r| r.as_str())
                                    .collect::<Vec<_>>()
                                    .join(","),
                                a.approval_policy.as_str().into(),
                            ]
                        })
                        .collect();
                    print_table(&["", "ACCT_ID", "NAME", "ROLE", "APPROVAL"], &rows);
                    Ok(())
                }
            }
        }
        AccountCommand::Show { account } => {
            let a = match account {
                Some(a) => resolve(&c, &a)?,
                None => {
                    let id = c.creds.selected_account.ok_or_else(|| {
                        anyhow!("no account selected: run `ccm account select NAME`")
                    })?;
                    c.get(&format!("/v1/accounts/{id}"))?
                }
            };
            show(&a, out)
        }
        AccountCommand::Select { account } => {
            let a = resolve(&c, &account)?;
            select(&mut c, &a)?;
            match out {
                Output::Json => print_json(&a),
                Output::Text => {
                    println!("Selected account {} ({})", a.name, a.acct_id);
                    Ok(())
                }
            }
        }
        AccountCommand::Update {
            account,
            name,
            approval_policy,
            allow_simulated,
        } => {
            let a = resolve(&c, &account)?;
            let req = AccountUpdateRequest {
                name,
                approval_policy: approval_policy.map(Into::into),
                allow_simulated,
            };
            let a: Account = c.call(
                Method::PATCH,
                &format!("/v1/accounts/{}", a.acct_id),
                Some(&req),
            )?;
            show(&a, out)
        }
        AccountCommand::Delete { account, yes } => {
            let a = resolve(&c, &account)?;
            if !yes {
                bail!(
                    "deleting account {} removes all its apps, images, tasks and zone; pass --yes to confirm",
                    a.name
                );
            }
            c.call::<serde_json::Value>(
                Method::DELETE,
                &format!("/v1/accounts/{}", a.acct_id),
                None::<&()>,
            )?;
            if c.creds.selected_account == Some(a.acct_id) {
                c.creds.selected_account = None;
                c.creds.save()?;
            }
            match out {
                Output::Json => print_json(&serde_json::json!({"deleted": a.acct_id})),
                Output::Text => {
                    println!("Deleted account {} ({})", a.name, a.acct_id);
                    Ok(())
                }
            }
        }
    }
}
