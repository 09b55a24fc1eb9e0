//! Delivering messages to account holders (password-reset codes): the [`Notifier`] trait,
//! [`LogNotifier`] (the default, for development) and the SMTP notifier.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Tokio1Executor};
use serde::{Deserialize, Serialize};
use xcore_core::config::{Problems, Section};

/// A message for one account holder.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    pub to: String,
    pub subject: String,
    pub body: String,
}

impl std::fmt::Debug for Message {
    // The body carries codes: it stays out of debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message").field("to", &self.to).field("subject", &self.subject).finish()
    }
}

/// What delivering can fail with.
#[derive(Debug, thiserror::Error)]
#[error("cannot deliver the message: {0}")]
pub struct NotifyError(pub String);

/// The future a [`Notifier`] returns.
pub type NotifyFuture<'a> = Pin<Box<dyn Future<Output = Result<(), NotifyError>> + Send + 'a>>;

/// Delivers messages to account holders.
pub trait Notifier: Send + Sync + 'static {
    fn send(&self, message: Message) -> NotifyFuture<'_>;
}

/// Writes messages to the log (target `xcore::notify`, level warn), codes included: for
/// development, where no mail server is at hand. Production sets `auth.notifier`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogNotifier;

impl Notifier for LogNotifier {
    fn send(&self, message: Message) -> NotifyFuture<'_> {
        tracing::warn!(
            target: "xcore::notify",
            to = %message.to,
            subject = %message.subject,
            body = %message.body,
            "message for an account holder (the log notifier is for development)"
        );
        Box::pin(std::future::ready(Ok(())))
    }
}

/// The `[auth.notifier]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifierConfig {
    /// `log` (the default) or `smtp`.
    pub kind: NotifierKind,
    /// The mail server, for `kind = "smtp"`.
    pub smtp: SmtpConfig,
}

/// Which notifier delivers messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifierKind {
    #[default]
    Log,
    Smtp,
}

/// The `[auth.notifier.smtp]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    pub host: String,
    /// The port; by default 587 with STARTTLS, 465 with TLS, 25 without.
    pub port: Option<u16>,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The sender, such as `xcore <no-reply@example.com>`.
    pub from: String,
    /// Longest a delivery may take.
    pub timeout_secs: u64,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: String::new(),
            port: None,
            security: SmtpSecurity::StartTls,
            username: None,
            password: None,
            from: String::new(),
            timeout_secs: 10,
        }
    }
}

/// How the connection to the mail server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS, which is required.
    StartTls,
    /// TLS from the first byte (SMTPS).
    Tls,
    /// No encryption: only for a relay on the same machine or in tests.
    None,
}

impl NotifierConfig {
    /// The notifier these settings describe.
    ///
    /// # Errors
    ///
    /// [`NotifyError`] for SMTP settings that cannot be used (validate the section
    /// first).
    pub fn notifier(&self) -> Result<Arc<dyn Notifier>, NotifyError> {
        match self.kind {
            NotifierKind::Log => Ok(Arc::new(LogNotifier)),
            NotifierKind::Smtp => Ok(Arc::new(SmtpNotifier::new(&self.smtp)?)),
        }
    }
}

/// Sends messages by SMTP, through a pool of connections (lettre).
#[derive(Clone)]
pub struct SmtpNotifier {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: lettre::message::Mailbox,
}

impl std::fmt::Debug for SmtpNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpNotifier").field("from", &self.from).finish_non_exhaustive()
    }
}

impl SmtpNotifier {
    /// A notifier for the mail server `config` names. Nothing is connected yet.
    ///
    /// # Errors
    ///
    /// [`NotifyError`] for an unusable host or sender.
    pub fn new(config: &SmtpConfig) -> Result<Self, NotifyError> {
        let failed = |error: lettre::transport::smtp::Error| NotifyError(error.to_string());
        let (builder, port) = match config.security {
            SmtpSecurity::StartTls => (
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&config.host)
                    .map_err(failed)?,
                587,
            ),
            SmtpSecurity::Tls => {
                (AsyncSmtpTransport::<Tokio1Executor>::relay(&config.host).map_err(failed)?, 465)
            }
            SmtpSecurity::None => {
                (AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host), 25)
            }
        };
        let mut builder = builder
            .port(config.port.unwrap_or(port))
            .timeout(Some(std::time::Duration::from_secs(config.timeout_secs)));
        if let (Some(username), Some(password)) = (&config.username, &config.password) {
            builder = builder.credentials(Credentials::new(username.clone(), password.clone()));
        }
        let from = config
            .from
            .parse()
            .map_err(|error| NotifyError(format!("sender `{}`: {error}", config.from)))?;
        Ok(Self { transport: builder.build(), from })
    }
}

impl Notifier for SmtpNotifier {
    fn send(&self, message: Message) -> NotifyFuture<'_> {
        Box::pin(async move {
            let to = message
                .to
                .parse()
                .map_err(|error| NotifyError(format!("recipient `{}`: {error}", message.to)))?;
            let email = lettre::Message::builder()
                .from(self.from.clone())
                .to(to)
                .subject(message.subject)
                .header(lettre::message::header::ContentType::TEXT_PLAIN)
                .body(message.body)
                .map_err(|error| NotifyError(error.to_string()))?;
            self.transport.send(email).await.map_err(|error| NotifyError(error.to_string()))?;
            Ok(())
        })
    }
}

impl Section for NotifierConfig {
    fn validate(&self, problems: &mut Problems) {
        if self.kind != NotifierKind::Smtp {
            return;
        }
        let smtp = &self.smtp;
        problems.check(!smtp.host.trim().is_empty(), "smtp.host", "the SMTP notifier needs a host");
        if smtp.from.parse::<lettre::message::Mailbox>().is_err() {
            problems.add(
                "smtp.from",
                format!("`{}` is not a sender such as `xcore <no-reply@example.com>`", smtp.from),
            );
        }
        problems.check(
            smtp.username.is_some() == smtp.password.is_some(),
            "smtp.username",
            "`username` and `password` go together",
        );
        problems.check(smtp.timeout_secs > 0, "smtp.timeout_secs", "must be at least 1");
    }
}
