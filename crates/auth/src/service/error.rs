//! [`AuthError`], what an account flow can fail with, and how the stores' errors become
//! it.
//!
//! Each variant is one answer the `/auth` API gives a client, so the stores' errors are
//! mapped here once: the ones a client can act on keep their meaning, the rest become
//! [`AuthError::Internal`], whose detail is only for the log.

use crate::accounts::AccountError;
use crate::codes::CodeError;
use crate::otp_key::OtpKeyError;
use crate::password::{PasswordError, PolicyError};
use crate::sessions::SessionError;
use crate::token::TokenError;

/// What an account flow can fail with; each variant is one answer to the client.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("wrong email or password")]
    InvalidCredentials,
    #[error("this account has two-factor authentication: send the `otp` code too")]
    OtpRequired,
    #[error("the two-factor code is wrong or was already used")]
    InvalidOtp,
    #[error("too many failed attempts: try again in {retry_after_secs} s")]
    Locked { retry_after_secs: u64 },
    #[error("this account is disabled")]
    Disabled,
    #[error("an account with this email exists")]
    EmailTaken,
    #[error("`{0}` is not an email address")]
    InvalidEmail(String),
    #[error("{0}")]
    Policy(#[from] PolicyError),
    #[error("{0}")]
    Invalid(&'static str),
    #[error("the refresh token is not valid")]
    InvalidRefresh,
    #[error("the code is wrong, expired or already used")]
    InvalidCode,
    #[error("two-factor authentication is already on")]
    OtpAlreadyEnabled,
    #[error("two-factor authentication is not set up: call /auth/otp/setup first")]
    OtpNotSetUp,
    #[error("two-factor authentication is off")]
    OtpNotEnabled,
    #[error("no such session")]
    NoSuchSession,
    #[error("the account no longer exists")]
    NoAccount,
    /// The database cannot be reached; the detail is for the log.
    #[error("the service is unavailable: {0}")]
    Unavailable(String),
    /// Anything the client cannot act on; the detail is for the log.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<AccountError> for AuthError {
    fn from(error: AccountError) -> Self {
        match error {
            AccountError::EmailTaken => Self::EmailTaken,
            AccountError::InvalidEmail(email) => Self::InvalidEmail(email),
            AccountError::Database(error) => error.into(),
        }
    }
}

impl From<SessionError> for AuthError {
    fn from(error: SessionError) -> Self {
        match error {
            SessionError::Invalid | SessionError::Reused { .. } => Self::InvalidRefresh,
            SessionError::Database(error) => error.into(),
            other => Self::Internal(other.to_string()),
        }
    }
}

macro_rules! internal_from {
    ($($error:ty),*) => {$(
        impl From<$error> for AuthError {
            fn from(error: $error) -> Self {
                Self::Internal(error.to_string())
            }
        }
    )*};
}
internal_from!(PasswordError, TokenError, xcore_otp::Error, OtpKeyError);

impl From<xcore_db::Error> for AuthError {
    /// A database that cannot be reached is [`AuthError::Unavailable`] (503: try again);
    /// anything else it fails with is internal.
    fn from(error: xcore_db::Error) -> Self {
        use xcore_db::Error as E;
        match error {
            E::AcquireTimeout(_) | E::Connect(_) | E::Pool(_) => {
                Self::Unavailable(error.to_string())
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<CodeError> for AuthError {
    fn from(error: CodeError) -> Self {
        match error {
            CodeError::Database(error) => error.into(),
            other => Self::Internal(other.to_string()),
        }
    }
}
