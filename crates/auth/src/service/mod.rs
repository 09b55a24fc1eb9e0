//! [`Auth`]: the account flows (register, login with two-factor and lockout, refresh,
//! logout, password change and reset, sessions, two-factor setup) over the stores, with
//! the [`Authenticate`](xcore_middleware::Authenticate) implementation the request
//! [`Gate`](xcore_middleware::Gate) uses.
//!
//! This module holds [`Auth`] itself, its construction and the helpers every flow shares
//! (the lockout check and count, the clocks). The flows are `impl Auth` blocks split by
//! what the caller is doing, so each file reads as one story:
//!
//! - [`login`]: register, login, refresh, logout, and the [`Tokens`] they hand out;
//! - [`account`]: the caller's own profile and sessions;
//! - [`password`]: password change, and reset by emailed code;
//! - [`otp`]: two-factor setup, enabling and disabling, and the second-factor check;
//! - [`authenticator`]: [`TokenAuthenticator`] and its node-local caches;
//! - [`revocation`]: ending sessions and accounts on every node, and following the log
//!   other nodes write;
//! - [`error`]: [`AuthError`] and the conversions from the stores' errors.

mod account;
mod authenticator;
mod error;
mod login;
mod otp;
mod password;
mod revocation;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::NaiveDateTime;
use xcore_db::Database;

use crate::accounts::{Account, Accounts};
use crate::codes::Codes;
use crate::config::AuthConfig;
use crate::lockout::LoginFailures;
use crate::notifier::Notifier;
use crate::otp_key::OtpKey;
use crate::password::Passwords;
use crate::revocations::Revocations;
use crate::sessions::Sessions;
use crate::token::AccessTokens;

pub use account::MAX_DISPLAY_NAME;
pub use authenticator::TokenAuthenticator;
pub use error::AuthError;
pub use login::Tokens;
pub use otp::{OtpSetup, StoredOtpSecrets};

use authenticator::{Revoked, VerifiedTokens};

/// The account flows. Clones share everything.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

struct Inner {
    accounts: Accounts,
    sessions: Sessions,
    codes: Codes,
    failures: LoginFailures,
    passwords: Passwords,
    tokens: AccessTokens,
    otp_key: OtpKey,
    revoked: Revoked,
    revocations: Revocations,
    /// The `revoked_at` of the latest row of the revocation log read.
    log_position: std::sync::Mutex<Option<NaiveDateTime>>,
    verified: VerifiedTokens,
    notifier: Arc<dyn Notifier>,
    config: AuthConfig,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("tokens", &self.inner.tokens).finish_non_exhaustive()
    }
}

impl Auth {
    /// The flows over `db` (migrated with [`crate::accounts::MIGRATIONS`]), signing access
    /// tokens with `tokens`, sealing two-factor secrets with `otp_key` and delivering reset
    /// codes through `notifier`.
    ///
    /// # Errors
    ///
    /// [`AuthError::Internal`] for password parameters argon2 refuses.
    pub fn new(
        db: Database,
        config: &AuthConfig,
        tokens: AccessTokens,
        otp_key: OtpKey,
        notifier: Arc<dyn Notifier>,
    ) -> Result<Self, AuthError> {
        let inner = Inner {
            accounts: Accounts::new(db.clone()),
            sessions: sessions(&db, config, &otp_key),
            codes: Codes::new(db.clone()),
            failures: LoginFailures::new(db.clone(), config.lockout.clone()),
            revocations: Revocations::new(db),
            log_position: std::sync::Mutex::new(None),
            passwords: Passwords::new(&config.password)?,
            revoked: Revoked::new(Duration::from_secs(config.access_ttl_secs)),
            verified: VerifiedTokens::new(Duration::from_secs(config.access_ttl_secs)),
            tokens,
            otp_key,
            notifier,
            config: config.clone(),
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The account store.
    pub fn accounts(&self) -> &Accounts {
        &self.inner.accounts
    }

    /// The settings it runs with.
    pub fn config(&self) -> &AuthConfig {
        &self.inner.config
    }

    /// The access tokens.
    pub fn tokens(&self) -> &AccessTokens {
        &self.inner.tokens
    }

    /// What the request [`Gate`](xcore_middleware::Gate) authenticates callers with.
    pub fn authenticator(&self) -> TokenAuthenticator {
        TokenAuthenticator::new(
            self.inner.tokens.clone(),
            self.inner.revoked.clone(),
            self.inner.verified.clone(),
        )
    }

    /// Counts a failed proof (password or two-factor code) against `account`'s lockout.
    async fn count_failure(&self, account: &Account, now: NaiveDateTime) -> Result<(), AuthError> {
        let lockout = &self.inner.config.lockout;
        self.inner.accounts.login_failed(account.id, now, lockout).await?;
        Ok(())
    }
}

/// [`AuthError::Locked`] while `account` is locked at `now`.
fn check_unlocked(account: &Account, now: NaiveDateTime) -> Result<(), AuthError> {
    match account.locked_until {
        Some(until) if until > now => Err(locked(until, now)),
        _ => Ok(()),
    }
}

fn locked(until: NaiveDateTime, now: NaiveDateTime) -> AuthError {
    let millis = (until - now).num_milliseconds().max(0);
    AuthError::Locked { retry_after_secs: u64::try_from(millis).unwrap_or(0).div_ceil(1000).max(1) }
}

/// The session store `config` describes: successors derived under a key of `otp_key`'s
/// when a grace period is set.
fn sessions(db: &Database, config: &AuthConfig, otp_key: &OtpKey) -> Sessions {
    let sessions = Sessions::new(db.clone(), Duration::from_secs(config.refresh_ttl_secs));
    match config.refresh_grace_secs {
        0 => sessions,
        grace => sessions.with_grace(
            otp_key.derive("xcore refresh-token successors"),
            Duration::from_secs(grace),
        ),
    }
}

fn now() -> NaiveDateTime {
    chrono::Utc::now().naive_utc()
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}
