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
    /// Anything the client cannot act on; the detail is for the log.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<AccountError> for AuthError {
    fn from(error: AccountError) -> Self {
        match error {
            AccountError::EmailTaken => Self::EmailTaken,
            AccountError::InvalidEmail(email) => Self::InvalidEmail(email),
            AccountError::Database(error) => Self::Internal(error.to_string()),
        }
    }
}

impl From<SessionError> for AuthError {
    fn from(error: SessionError) -> Self {
        match error {
            SessionError::Invalid | SessionError::Reused { .. } => Self::InvalidRefresh,
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
internal_from!(
    CodeError,
    PasswordError,
    TokenError,
    xcore_otp::Error,
    xcore_db::Error,
    OtpKeyError
);
