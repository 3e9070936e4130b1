//! E-mail of invitation and password reset links through an SMTP relay (`smtp_*` settings).
//!
//! Without `smtp_host` nothing is e-mailed and the links are only returned to the
//! administrator who made them. The connection uses rustls: STARTTLS (required, the default),
//! implicit TLS, or none for a relay on the same host. A failed delivery is logged and reported
//! to the caller as `emailed: false`; the token stays valid, so the link can be passed on by
//! hand.

use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::Error;
use crate::config::{Config, SmtpSecurity};

/// Sends the manager's e-mails.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

fn config_error(field: &str, message: impl Into<String>) -> Error {
    Error::Config {
        field: field.into(),
        message: message.into(),
    }
}

impl Mailer {
    /// The mailer of the configuration, or `None` without `smtp_host`.
    pub fn from_config(c: &Config) -> Result<Option<Self>, Error> {
        let Some(host) = &c.smtp_host else {
            return Ok(None);
        };
        let builder = match c.smtp_security {
            SmtpSecurity::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host),
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host),
            SmtpSecurity::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
                host,
            )),
        }
        .map_err(|e| config_error("smtp_host", e.to_string()))?;
        let mut builder = builder.port(c.smtp_port);
        if let (Some(user), Some(file)) = (&c.smtp_username, &c.smtp_password_file) {
            let password = std::fs::read_to_string(file).map_err(|e| Error::Io {
                path: file.clone(),
                source: e,
            })?;
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.trim_end().to_string(),
            ));
        }
        let from = c
            .smtp_from
            .clone()
            .unwrap_or_else(|| format!("ccm@{host}"))
            .parse::<Mailbox>()
            .map_err(|e| config_error("smtp_from", format!("not an e-mail address: {e}")))?;
        Ok(Some(Self {
            transport: builder.build(),
            from,
        }))
    }

    /// Sends a plain-text e-mail. The error text names the failure, never the body.
    pub async fn send(&self, to: &str, subject: &str, body: String) -> Result<(), String> {
        let to = to
            .parse::<Mailbox>()
            .map_err(|e| format!("recipient: {e}"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| e.to_string())?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
