//! Why a quota could not be checked or kept.

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a quota could not be checked or kept. In a hook it fires `on_error`: a `before_message`
/// check that fails lets the message through, a usage update that fails leaves the usage
/// short of (or over) what is stored by that message's size.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The quota tables could not be read or written.
    #[error("the quota store is unavailable: {0}")]
    Store(#[from] xcore_db::Error),
    /// The engine could not read the message an edit replaces.
    #[error("the edited message could not be read: {0}")]
    Messaging(#[from] xcore_messaging::Error),
}

impl From<diesel::result::Error> for Error {
    fn from(error: diesel::result::Error) -> Self {
        Self::Store(error.into())
    }
}
