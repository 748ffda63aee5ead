//! Outgoing mail: verification and password-reset messages.
//!
//! [`SmtpMailer`] sends through an SMTP relay (lettre); [`LogMailer`] writes
//! the mail to the log instead, for development, so links can be clicked
//! from the console.
//!
//! `SMTP_URL` forms (lettre's connection URLs):
//! - `smtp://host:port`: plain SMTP, for a relay on loopback or in development;
//! - `smtp://user:pass@host:587?tls=required`: STARTTLS, refusing to go on without it;
//! - `smtps://user:pass@host:465`: implicit TLS.
//!
//! The URL's password is never logged: both mailers' `Debug` leave it out.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::{header::ContentType, Mailbox};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::error::{Error, ErrorKind, Result};

/// A plain-text mail.
#[derive(Clone, PartialEq, Eq)]
pub struct Mail {
    /// The recipient's address.
    pub to: String,
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
}

impl fmt::Debug for Mail {
    /// The body is left out: it carries single-use tokens.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mail")
            .field("to", &self.to)
            .field("subject", &self.subject)
            .field("text", &format_args!("[{} bytes]", self.text.len()))
            .finish()
    }
}

/// Sends mail.
#[async_trait]
pub trait Mailer: fmt::Debug + Send + Sync + 'static {
    /// Sends `mail`. A relay that cannot be reached or refuses the mail is
    /// [`ErrorKind::Unavailable`].
    async fn send(&self, mail: &Mail) -> Result<()>;

    /// How many mails failed to send since start (for `/metrics`).
    fn failures(&self) -> u64 {
        0
    }
}

/// Sends mail through an SMTP relay.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// `scheme://host:port`, without credentials: for logs and `Debug`.
    endpoint: String,
    timeout: Duration,
    failures: AtomicU64,
}

impl fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("endpoint", &self.endpoint)
            .field("from", &self.from.to_string())
            .field("timeout", &self.timeout)
            .field("failures", &self.failures())
            .finish_non_exhaustive()
    }
}

fn config(message: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::msg(ErrorKind::Config, message)
}

impl SmtpMailer {
    /// A mailer for `smtp_url` (see the module docs), sending as `from`
    /// (`Name <address>` or a bare address). `timeout` bounds each network
    /// step and the whole delivery of one mail.
    ///
    /// Must be called inside a Tokio runtime (the connection pool runs a
    /// background task). [`ErrorKind::Config`] for a bad URL or sender.
    pub fn new(smtp_url: &str, from: &str, timeout: Duration) -> Result<Self> {
        let url = url::Url::parse(smtp_url).map_err(|_| config("SMTP_URL is not a valid URL"))?;
        let scheme = url.scheme();
        if scheme != "smtp" && scheme != "smtps" {
            return Err(config("SMTP_URL must start with smtp:// or smtps://"));
        }
        let host = url
            .host_str()
            .ok_or_else(|| config("SMTP_URL has no host"))?;
        let tls = url
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.into_owned());
        let endpoint = match (url.port(), &tls) {
            (Some(port), Some(tls)) => format!("{scheme}://{host}:{port}?tls={tls}"),
            (Some(port), None) => format!("{scheme}://{host}:{port}"),
            (None, Some(tls)) => format!("{scheme}://{host}?tls={tls}"),
            (None, None) => format!("{scheme}://{host}"),
        };
        let plain = scheme == "smtp" && tls.is_none();
        let loopback = host == "localhost"
            || host
                .trim_matches(|c| c == '[' || c == ']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if plain && !loopback {
            tracing::warn!(
                endpoint = %endpoint,
                "SMTP_URL uses plain SMTP to a non-loopback host: mails (and any password) travel \
                 unencrypted; use smtps:// or ?tls=required"
            );
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(config(
                "SmtpMailer::new must be called inside a Tokio runtime",
            ));
        }
        let from: Mailbox = from
            .parse()
            .map_err(|_| config("MAIL_FROM is not a valid mailbox"))?;
        // The error of lettre's parser never contains the URL.
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
            .map_err(|e| config(format!("SMTP_URL: {e}")))?
            .timeout(Some(timeout))
            .build();
        Ok(Self {
            transport,
            from,
            endpoint,
            timeout,
            failures: AtomicU64::new(0),
        })
    }

    /// How many mails failed to send since start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    async fn deliver(&self, mail: &Mail) -> Result<()> {
        let to: Mailbox = mail.to.parse().map_err(|_| {
            Error::new(ErrorKind::Validation)
                .with_details(serde_json::json!({ "email": "Not a valid email address." }))
        })?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.as_str())
            .header(ContentType::TEXT_PLAIN)
            .body(mail.text.clone())
            .map_err(|e| Error::internal(format!("cannot build the mail: {e}")))?;
        match tokio::time::timeout(self.timeout, self.transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Error::msg(ErrorKind::Unavailable, "The mail relay failed.")
                .with_source(format!("smtp {}: {e}", self.endpoint))),
            Err(_) => Err(
                Error::msg(ErrorKind::Unavailable, "The mail relay timed out.").with_source(
                    format!(
                        "smtp {}: no answer within {:?}",
                        self.endpoint, self.timeout
                    ),
                ),
            ),
        }
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: &Mail) -> Result<()> {
        let result = self.deliver(mail).await;
        if result.is_err() {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn failures(&self) -> u64 {
        SmtpMailer::failures(self)
    }
}

/// Writes mails to the log (`tracing`, level info) instead of sending them:
/// for development. The body, links included, is logged in full.
#[derive(Debug, Default)]
pub struct LogMailer {
    failures: AtomicU64,
}

impl LogMailer {
    /// A new log mailer.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many mails failed to send (always 0: logging cannot fail).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl Mailer for LogMailer {
    async fn send(&self, mail: &Mail) -> Result<()> {
        tracing::info!(
            to = %mail.to,
            subject = %mail.subject,
            body = %mail.text,
            "mail (LogMailer: not sent, development only)"
        );
        Ok(())
    }
}
