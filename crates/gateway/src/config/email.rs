//! The `[email]` section of the gateway's configuration: mail over SMTP to approvers who have
//! no device connected, to requesters about the outcome, and a digest (docs/notifications.md).
//! A mail carries a summary and a `countersign://request/<id>` link, never the detail.

use std::path::PathBuf;
use std::time::Duration;

use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use serde::Deserialize;

/// The SMTP client.
pub type Mailer = AsyncSmtpTransport<Tokio1Executor>;

/// How the gateway sends mail.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// The SMTP server: `smtp://host:port` (plain; `?tls=required` for STARTTLS) or
    /// `smtps://host:port` (TLS from the start), with the user name in the URL if the server
    /// asks for one.
    pub smtp_url: url::Url,
    /// A file holding the SMTP password (trailing white space dropped), for the URL's user.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The sender, as `Name <address>` or an address.
    pub from: String,
    /// Mail an approver addressed by a request who has no device connected when
    /// `grace_seconds` have passed and the request still waits for them.
    #[serde(default = "yes")]
    pub approvers: bool,
    /// How long a request waits for an approver's device before they get a mail, in seconds.
    #[serde(default = "default_grace_seconds")]
    pub grace_seconds: u64,
    /// Mail the requester the outcome (decided, expired, withdrawn).
    #[serde(default = "yes")]
    pub requesters: bool,
    /// Where the digest goes (a team's list, an auditor); none: no digest.
    #[serde(default)]
    pub digest_to: Vec<String>,
    /// How often the digest is sent, in seconds: it lists the requests created since the
    /// previous one, with their state, and every request still pending.
    #[serde(default = "default_digest_seconds")]
    pub digest_seconds: u64,
}

impl EmailConfig {
    /// The SMTP client: from the URL, with `password` (read from `password_file`).
    pub fn mailer(&self, password: Option<&str>) -> Result<Mailer, String> {
        let mut builder = Mailer::from_url(self.smtp_url.as_str())
            .map_err(|e| format!("[email] smtp_url {}: {e}", self.smtp_url))?
            .timeout(Some(Duration::from_secs(10)));
        if let Some(password) = password {
            let user = self.smtp_url.username();
            if user.is_empty() {
                return Err(
                    "[email] password_file needs a user name in smtp_url (smtp://user@host:port)."
                        .into(),
                );
            }
            builder = builder.credentials(Credentials::new(user.to_owned(), password.to_owned()));
        }
        Ok(builder.build())
    }
}

fn yes() -> bool {
    true
}

fn default_grace_seconds() -> u64 {
    120
}

fn default_digest_seconds() -> u64 {
    24 * 3600
}

/// Refuses a sender or digest address that is not a mailbox, a URL that is not SMTP, and a
/// digest period of zero.
pub fn check(email: &EmailConfig) -> Result<(), String> {
    if !matches!(email.smtp_url.scheme(), "smtp" | "smtps") {
        return Err(format!(
            "[email] smtp_url must be smtp://host:port or smtps://host:port, not {}.",
            email.smtp_url
        ));
    }
    email
        .from
        .parse::<lettre::message::Mailbox>()
        .map_err(|e| format!("[email] from {:?} is not a mail address: {e}.", email.from))?;
    for to in &email.digest_to {
        to.parse::<lettre::message::Mailbox>()
            .map_err(|e| format!("[email] digest_to {to:?} is not a mail address: {e}."))?;
    }
    if email.digest_seconds == 0 {
        return Err("[email] digest_seconds must be at least 1.".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(from: &str, url: &str) -> EmailConfig {
        EmailConfig {
            smtp_url: url.parse().unwrap(),
            password_file: None,
            from: from.into(),
            approvers: true,
            grace_seconds: 120,
            requesters: true,
            digest_to: vec!["ops@example.com".into()],
            digest_seconds: 3600,
        }
    }

    #[test]
    fn the_sender_the_digest_and_the_url_are_checked() {
        assert!(check(&config(
            "Countersign <cs@example.com>",
            "smtp://127.0.0.1:25"
        ))
        .is_ok());
        assert!(check(&config("not an address", "smtp://127.0.0.1:25"))
            .unwrap_err()
            .contains("from"));
        assert!(check(&config("cs@example.com", "https://mail.example.com"))
            .unwrap_err()
            .contains("smtp_url"));
        let mut c = config("cs@example.com", "smtps://mail.example.com:465");
        c.digest_to = vec!["ops".into()];
        assert!(check(&c).unwrap_err().contains("digest_to"));
        c.digest_to.clear();
        c.digest_seconds = 0;
        assert!(check(&c).unwrap_err().contains("digest_seconds"));
    }
}
