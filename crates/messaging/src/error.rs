//! What the engine's operations can refuse, and why.

use std::time::Duration;

use crate::model::{ConversationId, UserId};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an operation was refused or failed. Nothing is changed when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no user `{0}`")]
    UnknownUser(UserId),
    #[error("a user with id `{0}` already exists")]
    UserExists(UserId),
    /// `send_message` (the lobby call of the original engine) needs a connected user.
    #[error("user `{0}` is not connected")]
    Offline(UserId),
    /// The conversation does not exist, or the caller is not a member: the two are not
    /// told apart.
    #[error("no conversation {0}")]
    UnknownConversation(ConversationId),
    #[error("user `{user}` is not a member of conversation {conversation}")]
    NotMember { conversation: ConversationId, user: UserId },
    #[error("no message {seq} in conversation {conversation}")]
    UnknownMessage { conversation: ConversationId, seq: i64 },
    /// A member lacks the right (the reason says which).
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("`{field}` {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{0}")]
    Conflict(&'static str),
    /// A `before_message` hook refused the message.
    #[error("{}", .0.message)]
    Refused(Refusal),
    /// The database failed or cannot be reached; nothing was written.
    #[error("the message store is unavailable: {0}")]
    Store(String),
    /// The engine is shutting down.
    #[error("the messaging engine is stopping")]
    Stopped,
}

impl Error {
    /// The snake_case code clients receive: the refusal's own for [`Error::Refused`].
    pub fn code(&self) -> &str {
        match self {
            Self::UnknownUser(_) => "user_not_found",
            Self::UserExists(_) => "user_exists",
            Self::Offline(_) => "user_offline",
            Self::UnknownConversation(_) => "conversation_not_found",
            Self::NotMember { .. } => "member_not_found",
            Self::UnknownMessage { .. } => "message_not_found",
            Self::Forbidden(_) => "forbidden",
            Self::Invalid { .. } => "invalid_input",
            Self::Conflict(_) => "conflict",
            Self::Refused(refusal) => &refusal.code,
            Self::Store(_) | Self::Stopped => "service_unavailable",
        }
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid { field, reason: reason.into() }
    }
}

impl From<xcore_db::Error> for Error {
    fn from(error: xcore_db::Error) -> Self {
        Self::Store(error.to_string())
    }
}

impl From<diesel::result::Error> for Error {
    fn from(error: diesel::result::Error) -> Self {
        Self::Store(error.to_string())
    }
}

/// Why a `before_message` hook refused a message: what the sender receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// A snake_case code (`rate_limited`, `muted`, `quota_exceeded`, …).
    pub code: String,
    /// A sentence for the sender.
    pub message: String,
    /// When sending again can succeed, for limits that pass with time.
    pub retry_after: Option<Duration>,
}

impl Refusal {
    /// A refusal that waiting does not lift.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code: code.into(), message: message.into(), retry_after: None }
    }

    /// A refusal lifted after `retry_after`.
    pub fn retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }
}
