//! Why a moderation operation failed.

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a moderation operation failed. Nothing is changed when one is returned, except
/// where [`Error::Unrecorded`] says otherwise.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value the operation cannot take (a mute too long to represent, …).
    #[error("`{field}` {reason}")]
    Invalid { field: &'static str, reason: String },
    /// The messaging engine refused or failed (an unknown conversation or message, …).
    #[error(transparent)]
    Messaging(#[from] xcore_messaging::Error),
    /// The moderation tables could not be read or written.
    #[error("the moderation store is unavailable: {0}")]
    Store(#[from] xcore_db::Error),
    /// The message was deleted, but the record of the deletion could not be written.
    #[error("the message was deleted but the action could not be recorded: {0}")]
    Unrecorded(xcore_db::Error),
}

impl Error {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid { field, reason: reason.into() }
    }
}

impl From<diesel::result::Error> for Error {
    fn from(error: diesel::result::Error) -> Self {
        Self::Store(error.into())
    }
}
