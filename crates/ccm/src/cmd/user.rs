//! `ccm user`: invitations, password changes and administrator-issued password resets.

use anyhow::{Context as _, anyhow};
use ccm_api::accounts::AccessRole;
use ccm_api::users::{
    Invitation, InviteUserRequest, InvitedUser, PasswordChangeRequest, PasswordResetRequest,
    ProcessInviteRequest, ResetTokenResponse,
};
use reqwest::Method;
use uuid::Uuid;

use super::client::{Client, Output, OutputOpts, print_json, print_table};

/// Users: invitations and passwords.
#[derive(Debug, clap::Args)]
pub struct UserArgs {
    #[command(flatten)]
    out: OutputOpts,
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(Debug, clap::Subcommand)]
enum UserCommand {
    /// Invite an e-mail address (signed up or not) to the selected account (MANAGER). Prints
    /// the single-use invitation token and sign-up link to pass on.
    Invite {
        /// The address.
        email: String,
        /// The role granted on acceptance.
        #[arg(long, value_parser = parse_role, default_value = "READER")]
        role: AccessRole,
    },
    /// List the invitations to your own address.
    Invitations,
    /// Accept the invitation of an account (by account id).
    Accept {
        /// The inviting account.
        acct_id: Uuid,
    },
    /// Change your password (CCM_CURRENT_PASSWORD and CCM_NEW_PASSWORD).
    ChangePassword {
        /// The current password.
        #[arg(long, env = "CCM_CURRENT_PASSWORD", hide_env_values = true)]
        current: String,
        /// The new password.
        #[arg(long, env = "CCM_NEW_PASSWORD", hide_env_values = true)]
        new: String,
    },
    /// Issue a single-use password reset token for a user (system administrators). Prints the
    /// token and the console link to pass on; e-mails the link when the manager has SMTP.
    ResetToken {
        /// The user (id or e-mail).
        user: String,
    },
    /// Set a new password with a reset token (no login needed).
    ResetPassword {
        /// The user's id.
        #[arg(long)]
        user_id: Uuid,
        /// The reset token.
        #[arg(long, env = "CCM_RESET_TOKEN", hide_env_values = true)]
        token: String,
        /// The new password.
        #[arg(long, env = "CCM_NEW_PASSWORD", hide_env_values = true)]
        new: String,
    },
}

fn parse_role(s: &str) -> Result<AccessRole, String> {
    AccessRole::parse(&s.to_ascii_uppercase())
        .ok_or_else(|| format!("{s:?} is not READER, WRITER or MANAGER"))
}

/// The id of a user named by id or e-mail (e-mails are looked up in `GET /v1/users`).
fn resolve(c: &Client, user: &str) -> anyhow::Result<Uuid> {
    if let Ok(id) = Uuid::try_parse(user) {
        return Ok(id);
    }
    let items: Vec<serde_json::Value> = c.get_all("/v1/users")?;
    items
        .iter()
        .find(|u| {
            u.get("user_email")
                .and_then(|e| e.as_str())
                .is_some_and(|e| e.eq_ignore_ascii_case(user))
        })
        .and_then(|u| u.get("user_id")?.as_str().map(String::from))
        .map(|id| Uuid::try_parse(&id).context("a user id from the manager"))
        .transpose()?
        .ok_or_else(|| anyhow!("no user {user:?}"))
}

/// Runs `ccm user`.
pub fn run(args: UserArgs) -> anyhow::Result<()> {
    let c = Client::connect()?;
    let out = args.out.output;
    match args.command {
        UserCommand::Invite { email, role } => {
            let req = InviteUserRequest {
                user_email: email,
                roles: vec![role],
                role: None,
                first_name: None,
                last_name: None,
            };
            let inv: InvitedUser = c.call(Method::POST, "/v1/users/invite", Some(&req))?;
            match out {
                Output::Json => print_json(&inv),
                Output::Text => {
                    println!(
                        "invited {} as {} (expires at {})",
                        inv.user_email,
                        role.as_str(),
                        inv.invitation.expires_at
                    );
                    println!("invitation token: {}", inv.invitation_token);
                    println!("sign-up link:     {}", inv.signup_url);
                    Ok(())
                }
            }
        }
        UserCommand::Invitations => {
            let list: Vec<Invitation> = c.get("/v1/user/invitations")?;
            match out {
                Output::Json => print_json(&list),
                Output::Text => {
                    let rows: Vec<Vec<String>> = list
                        .iter()
                        .map(|i| {
                            vec![
                                i.acct_id.to_string(),
                                i.account_name.clone(),
                                i.role.as_str().into(),
                                i.invited_by.clone(),
                            ]
                        })
                        .collect();
                    print_table(&["ACCOUNT", "NAME", "ROLE", "INVITED BY"], &rows);
                    Ok(())
                }
            }
        }
        UserCommand::Accept { acct_id } => {
            let req = ProcessInviteRequest {
                accepts: Some(vec![acct_id]),
                rejects: None,
            };
            c.call::<()>(Method::POST, "/v1/users/process_invite", Some(&req))?;
            println!("joined account {acct_id}");
            Ok(())
        }
        UserCommand::ChangePassword { current, new } => {
            let req = PasswordChangeRequest {
                current_password: current,
                new_password: new,
            };
            c.call::<()>(Method::POST, "/v1/users/change_password", Some(&req))?;
            println!("password changed; your other sessions ended");
            Ok(())
        }
        UserCommand::ResetToken { user } => {
            let id = resolve(&c, &user)?;
            let r: ResetTokenResponse = c.call(
                Method::POST,
                &format!("/v1/users/{id}/reset_token"),
                None::<&()>,
            )?;
            match out {
                Output::Json => print_json(&r),
                Output::Text => {
                    println!(
                        "reset token for {} (single use, expires at {}{})",
                        r.user_email,
                        r.expires_at,
                        if r.emailed { "; e-mailed" } else { "" }
                    );
                    println!("token: {}", r.reset_token);
                    println!("link:  {}", r.reset_url);
                    Ok(())
                }
            }
        }
        UserCommand::ResetPassword {
            user_id,
            token,
            new,
        } => {
            let req = PasswordResetRequest {
                reset_token: token,
                new_password: new,
            };
            c.call::<()>(
                Method::POST,
                &format!("/v1/users/{user_id}/reset_password"),
                Some(&req),
            )?;
            println!("password set; log in with the new one");
            Ok(())
        }
    }
}
