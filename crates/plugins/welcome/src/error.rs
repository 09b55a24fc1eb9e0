//! Why a greeting was not sent.

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a greeting was not sent; the hook reports it through `on_error`, and the user is
/// greeted the next time they come online.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The engine refused or failed an operation: registering the sender, opening the
    /// direct conversation, or sending (a `before_message` hook may have refused it).
    #[error("the greeting was not sent: {0}")]
    Messaging(#[from] xcore_messaging::Error),
    /// The record of who has been greeted could not be read or written.
    #[error("the greeting record is unavailable: {0}")]
    Store(#[from] xcore_db::Error),
}

impl From<diesel::result::Error> for Error {
    fn from(error: diesel::result::Error) -> Self {
        Self::Store(error.into())
    }
}
