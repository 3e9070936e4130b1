//! Delivery of the manager's e-mails (invitations, reset links) when SMTP is configured.

use crate::AppState;

/// E-mails `body` to `to` when SMTP is configured; whether it was handed to the relay. A
/// failure is logged (without the body, which carries a token) and reported as `false`.
pub async fn send(s: &AppState, to: &str, subject: &str, body: &str) -> bool {
    let Some(mailer) = &s.mailer else {
        return false;
    };
    match mailer.send(to, subject, body.to_owned()).await {
        Ok(()) => {
            tracing::info!(to, subject, "e-mail sent");
            true
        }
        Err(e) => {
            tracing::warn!(to, subject, error = %e, "could not send an e-mail");
            false
        }
    }
}
