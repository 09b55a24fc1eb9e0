//! [`Auth`]: the account flows (register, login with two-factor and lockout, refresh,
//! logout, password change and reset, sessions, two-factor setup) over the stores, with
//! the [`Authenticate`] implementation the request [`Gate`](xcore_middleware::Gate) uses.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::NaiveDateTime;
use xcore_db::Database;
use xcore_middleware::{Authenticate, CurrentUser, Rejection};
use xcore_otp::{Algorithm, Secret, Totp};

use crate::accounts::{Account, AccountError, Accounts};
use crate::codes::{CodeError, Codes, Purpose};
use crate::config::AuthConfig;
use crate::notifier::{Message, Notifier};
use crate::password::{PasswordError, Passwords, PolicyError};
use crate::sessions::{Session, SessionError, Sessions};
use crate::token::{AccessTokens, TokenError};

/// Digits of two-factor codes: what authenticator apps show by default.
const OTP_DIGITS: u32 = 6;

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
internal_from!(CodeError, PasswordError, TokenError, xcore_otp::Error);

/// Access and refresh tokens handed out by a login or a refresh.
#[derive(Clone, PartialEq, Eq)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("expires_in", &self.expires_in).finish_non_exhaustive()
    }
}

/// A two-factor secret waiting to be confirmed.
#[derive(Clone, PartialEq, Eq)]
pub struct OtpSetup {
    /// The secret in base32, for typing into an authenticator app.
    pub secret: String,
    pub otpauth_uri: String,
}

impl std::fmt::Debug for OtpSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtpSetup").finish_non_exhaustive()
    }
}

/// The account flows. Clones share everything.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

struct Inner {
    accounts: Accounts,
    sessions: Sessions,
    codes: Codes,
    passwords: Passwords,
    tokens: AccessTokens,
    revoked: Revoked,
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
    /// tokens with `tokens` and delivering reset codes through `notifier`.
    ///
    /// # Errors
    ///
    /// [`AuthError::Internal`] for password parameters argon2 refuses.
    pub fn new(
        db: Database,
        config: &AuthConfig,
        tokens: AccessTokens,
        notifier: Arc<dyn Notifier>,
    ) -> Result<Self, AuthError> {
        let inner = Inner {
            accounts: Accounts::new(db.clone()),
            sessions: Sessions::new(db.clone(), Duration::from_secs(config.refresh_ttl_secs)),
            codes: Codes::new(db),
            passwords: Passwords::new(&config.password)?,
            revoked: Revoked::new(Duration::from_secs(config.access_ttl_secs)),
            verified: VerifiedTokens::new(Duration::from_secs(config.access_ttl_secs)),
            tokens,
            notifier,
            config: config.clone(),
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The account store.
    pub fn accounts(&self) -> &Accounts {
        &self.inner.accounts
    }

    /// The access tokens.
    pub fn tokens(&self) -> &AccessTokens {
        &self.inner.tokens
    }

    /// What the request [`Gate`](xcore_middleware::Gate) authenticates callers with.
    pub fn authenticator(&self) -> TokenAuthenticator {
        TokenAuthenticator {
            tokens: self.inner.tokens.clone(),
            revoked: self.inner.revoked.clone(),
            verified: self.inner.verified.clone(),
        }
    }

    /// Creates an account.
    ///
    /// # Errors
    ///
    /// [`AuthError::InvalidEmail`], [`AuthError::Policy`], [`AuthError::Invalid`] for a
    /// display name that is too long, [`AuthError::EmailTaken`].
    pub async fn register(
        &self,
        email: &str,
        password: &str,
        display_name: Option<&str>,
    ) -> Result<Account, AuthError> {
        crate::accounts::check_email(email)?;
        self.inner.passwords.check_policy(password)?;
        let display_name = clean_display_name(display_name)?;
        let hash = self.inner.passwords.hash(password).await?;
        Ok(self.inner.accounts.create(email, display_name, &hash, now()).await?)
    }

    /// Logs in with a password and, when the account has two-factor on, a code from the
    /// authenticator app or a recovery code.
    ///
    /// # Errors
    ///
    /// [`AuthError::Locked`] while the account is locked, [`AuthError::InvalidCredentials`]
    /// for an unknown email or a wrong password (the same answer at the same cost),
    /// [`AuthError::Disabled`], [`AuthError::OtpRequired`], [`AuthError::InvalidOtp`].
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        otp: Option<&str>,
    ) -> Result<Tokens, AuthError> {
        let inner = &self.inner;
        let now = now();
        let account = inner.accounts.by_email(email).await?;
        if let Some(account) = &account {
            check_unlocked(account, now)?;
        }
        let verified =
            inner.passwords.verify(password, account.as_ref().map(|a| a.password_hash.as_str()));
        let verified = verified.await?;
        let Some(account) = account else { return Err(AuthError::InvalidCredentials) };
        if !verified.matches {
            self.count_failure(&account, now).await?;
            return Err(AuthError::InvalidCredentials);
        }
        if !account.active {
            return Err(AuthError::Disabled);
        }
        if account.otp_enabled {
            let Some(code) = otp.map(str::trim).filter(|code| !code.is_empty()) else {
                return Err(AuthError::OtpRequired);
            };
            if !self.second_factor(&account, code, now).await? {
                self.count_failure(&account, now).await?;
                return Err(AuthError::InvalidOtp);
            }
        }
        inner.accounts.login_succeeded(account.id, now).await?;
        if verified.needs_rehash {
            let hash = inner.passwords.hash(password).await?;
            inner.accounts.set_password_hash(account.id, &hash, now).await?;
        }
        let session = inner.sessions.start(account.id, now).await?;
        self.tokens_for(account.id, &session.family, session.token)
    }

    /// Exchanges a refresh token for new tokens; the presented one stops working, and
    /// presenting it again ends the session.
    ///
    /// # Errors
    ///
    /// [`AuthError::InvalidRefresh`], [`AuthError::Disabled`].
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens, AuthError> {
        let issued = match self.inner.sessions.rotate(refresh_token, now()).await {
            Ok(issued) => issued,
            Err(SessionError::Reused { family }) => {
                // The store revoked the session; its access tokens stop here too.
                self.inner.revoked.insert(&family);
                tracing::warn!("a rotated refresh token was presented again: session revoked");
                return Err(AuthError::InvalidRefresh);
            }
            Err(error) => return Err(error.into()),
        };
        let account = self.inner.accounts.by_id(issued.user_id).await?;
        if !account.is_some_and(|account| account.active) {
            self.end_session(&issued.family).await?;
            return Err(AuthError::Disabled);
        }
        self.tokens_for(issued.user_id, &issued.family, issued.token)
    }

    /// Ends the session `refresh_token` belongs to. An unknown token changes nothing and is
    /// not an error (RFC 7009): the client's goal, that the token not work, holds.
    ///
    /// # Errors
    ///
    /// [`AuthError::Internal`] when the database fails.
    pub async fn logout(&self, refresh_token: &str) -> Result<(), AuthError> {
        if let Some((_, family)) = self.inner.sessions.end(refresh_token, now()).await? {
            self.inner.revoked.insert(&family);
        }
        Ok(())
    }

    /// The account of `user`.
    ///
    /// # Errors
    ///
    /// [`AuthError::NoAccount`] when it was deleted.
    pub async fn me(&self, user: &CurrentUser) -> Result<Account, AuthError> {
        self.inner.accounts.by_id(user.user_id).await?.ok_or(AuthError::NoAccount)
    }

    /// Changes the display name of `user` (`None` or blank clears it).
    ///
    /// # Errors
    ///
    /// [`AuthError::Invalid`] for a name that is too long.
    pub async fn set_display_name(
        &self,
        user: &CurrentUser,
        display_name: Option<&str>,
    ) -> Result<Account, AuthError> {
        let display_name = clean_display_name(display_name)?;
        Ok(self.inner.accounts.set_display_name(user.user_id, display_name, now()).await?)
    }

    /// Changes the password of `user`, who proves it with the current one; every other
    /// session of the account ends.
    ///
    /// # Errors
    ///
    /// [`AuthError::InvalidCredentials`] for a wrong current password (counted as a failed
    /// login), [`AuthError::Locked`], [`AuthError::Policy`].
    pub async fn change_password(
        &self,
        user: &CurrentUser,
        current: &str,
        new: &str,
    ) -> Result<(), AuthError> {
        let inner = &self.inner;
        let now = now();
        let account = self.me(user).await?;
        check_unlocked(&account, now)?;
        inner.passwords.check_policy(new)?;
        if !inner.passwords.verify(current, Some(&account.password_hash)).await?.matches {
            self.count_failure(&account, now).await?;
            return Err(AuthError::InvalidCredentials);
        }
        let hash = inner.passwords.hash(new).await?;
        inner.accounts.set_password_hash(account.id, &hash, now).await?;
        let ended = inner.sessions.revoke_all(account.id, Some(&user.session_id), now).await?;
        ended.iter().for_each(|family| inner.revoked.insert(family));
        Ok(())
    }

    /// Sends a password-reset code to `email` if it has an account. The answer is the same
    /// either way, and delivery happens in the background so its duration tells nothing.
    ///
    /// # Errors
    ///
    /// [`AuthError::Internal`] when the database fails.
    pub async fn request_reset(&self, email: &str) -> Result<(), AuthError> {
        let now = now();
        let Some(account) = self.inner.accounts.by_email(email).await? else {
            return Ok(());
        };
        if !account.active {
            return Ok(());
        }
        let ttl = self.inner.config.reset_code_ttl_secs;
        let expires_at = now + chrono::Duration::seconds(i64::try_from(ttl).unwrap_or(i64::MAX));
        let code = self.inner.codes.issue_reset(account.id, now, expires_at).await?;
        let message = Message {
            to: account.email.clone(),
            subject: "Your password reset code".to_owned(),
            body: format!(
                "Someone asked to reset the password of this account. If it was you, use this \
                 code within {} minutes:\n\n{code}\n\nIf it was not you, ignore this message.",
                ttl.div_ceil(60)
            ),
        };
        let notifier = self.inner.notifier.clone();
        tokio::spawn(async move {
            if let Err(error) = notifier.send(message).await {
                tracing::error!(%error, account = account.id, "password reset code not delivered");
            }
        });
        Ok(())
    }

    /// Sets a new password with a reset code; every session of the account ends and its
    /// lock is lifted.
    ///
    /// # Errors
    ///
    /// [`AuthError::InvalidCode`] for an unknown email or a wrong, used or expired code;
    /// [`AuthError::Policy`].
    pub async fn confirm_reset(
        &self,
        email: &str,
        code: &str,
        new_password: &str,
    ) -> Result<(), AuthError> {
        let inner = &self.inner;
        let now = now();
        inner.passwords.check_policy(new_password)?;
        let account = inner.accounts.by_email(email).await?.ok_or(AuthError::InvalidCode)?;
        if !inner.codes.spend(account.id, Purpose::PasswordReset, code, now).await? {
            return Err(AuthError::InvalidCode);
        }
        let hash = inner.passwords.hash(new_password).await?;
        inner.accounts.set_password_hash(account.id, &hash, now).await?;
        inner.accounts.unlock(account.id).await?;
        let ended = inner.sessions.revoke_all(account.id, None, now).await?;
        ended.iter().for_each(|family| inner.revoked.insert(family));
        Ok(())
    }

    /// The sessions of `user` that can still be refreshed, newest first.
    ///
    /// # Errors
    ///
    /// [`AuthError::Internal`] when the database fails.
    pub async fn sessions(&self, user: &CurrentUser) -> Result<Vec<Session>, AuthError> {
        Ok(self.inner.sessions.active(user.user_id, now()).await?)
    }

    /// Ends session `id` of `user`.
    ///
    /// # Errors
    ///
    /// [`AuthError::NoSuchSession`] when the account has no such session.
    pub async fn end_user_session(&self, user: &CurrentUser, id: &str) -> Result<(), AuthError> {
        if !self.inner.sessions.end_family(user.user_id, id, now()).await? {
            return Err(AuthError::NoSuchSession);
        }
        self.inner.revoked.insert(id);
        Ok(())
    }

    /// Starts two-factor setup for `user`: a new secret, pending until
    /// [`enable_otp`](Self::enable_otp) confirms a code made from it.
    ///
    /// # Errors
    ///
    /// [`AuthError::OtpAlreadyEnabled`].
    pub async fn setup_otp(&self, user: &CurrentUser) -> Result<OtpSetup, AuthError> {
        let account = self.me(user).await?;
        if account.otp_enabled {
            return Err(AuthError::OtpAlreadyEnabled);
        }
        let secret = Secret::generate()?;
        self.inner
            .accounts
            .set_otp(account.id, Some(secret.as_bytes()), false, None, now())
            .await?;
        let encoded = secret.to_base32();
        let totp = Totp::new(secret, Algorithm::Sha1, OTP_DIGITS)?;
        Ok(OtpSetup {
            secret: encoded,
            otpauth_uri: totp.otpauth_uri(&self.inner.config.issuer, &account.email),
        })
    }

    /// Turns two-factor on for `user`, who proves the app is set up with a current code;
    /// returns the recovery codes, shown this once.
    ///
    /// # Errors
    ///
    /// [`AuthError::OtpAlreadyEnabled`], [`AuthError::OtpNotSetUp`],
    /// [`AuthError::InvalidOtp`].
    pub async fn enable_otp(
        &self,
        user: &CurrentUser,
        code: &str,
    ) -> Result<Vec<String>, AuthError> {
        let account = self.me(user).await?;
        if account.otp_enabled {
            return Err(AuthError::OtpAlreadyEnabled);
        }
        let secret = account.otp_secret.as_deref().ok_or(AuthError::OtpNotSetUp)?;
        let totp = Totp::new(Secret::from_bytes(secret)?, Algorithm::Sha1, OTP_DIGITS)?;
        let step = totp.verify(code.trim(), unix_now(), None).ok_or(AuthError::InvalidOtp)?;
        let step = i64::try_from(step).map_err(|_| AuthError::InvalidOtp)?;
        let now = now();
        self.inner.accounts.set_otp(account.id, Some(secret), true, Some(step), now).await?;
        Ok(self.inner.codes.issue_recovery(account.id, now).await?)
    }

    /// Turns two-factor off for `user`, who proves it with a code (from the app or a
    /// recovery code) or the password.
    ///
    /// # Errors
    ///
    /// [`AuthError::OtpNotEnabled`], [`AuthError::Invalid`] when neither proof is given,
    /// [`AuthError::InvalidOtp`] or [`AuthError::InvalidCredentials`] for a wrong one.
    pub async fn disable_otp(
        &self,
        user: &CurrentUser,
        code: Option<&str>,
        password: Option<&str>,
    ) -> Result<(), AuthError> {
        let inner = &self.inner;
        let now = now();
        let account = self.me(user).await?;
        if !account.otp_enabled {
            return Err(AuthError::OtpNotEnabled);
        }
        check_unlocked(&account, now)?;
        let (proven, error) = match (code, password) {
            (Some(code), _) => {
                (self.second_factor(&account, code.trim(), now).await?, AuthError::InvalidOtp)
            }
            (None, Some(password)) => (
                inner.passwords.verify(password, Some(&account.password_hash)).await?.matches,
                AuthError::InvalidCredentials,
            ),
            (None, None) => return Err(AuthError::Invalid("send `code` or `password`")),
        };
        if !proven {
            self.count_failure(&account, now).await?;
            return Err(error);
        }
        inner.accounts.set_otp(account.id, None, false, None, now).await?;
        inner.codes.clear(account.id, Purpose::Recovery).await?;
        Ok(())
    }

    /// Whether `code` is a current authenticator code not used before, or an unused
    /// recovery code, of `account`; either is spent.
    async fn second_factor(
        &self,
        account: &Account,
        code: &str,
        now: NaiveDateTime,
    ) -> Result<bool, AuthError> {
        let Some(secret) = account.otp_secret.as_deref() else { return Ok(false) };
        if code.len() == OTP_DIGITS as usize && code.bytes().all(|b| b.is_ascii_digit()) {
            let totp = Totp::new(Secret::from_bytes(secret)?, Algorithm::Sha1, OTP_DIGITS)?;
            let last = account.otp_last_step.and_then(|step| u64::try_from(step).ok());
            let Some(step) = totp.verify(code, unix_now(), last) else { return Ok(false) };
            let Ok(step) = i64::try_from(step) else { return Ok(false) };
            return Ok(self.inner.accounts.claim_otp_step(account.id, step).await?);
        }
        Ok(self.inner.codes.spend(account.id, Purpose::Recovery, code, now).await?)
    }

    /// Counts a failed proof (password or two-factor code) against `account`'s lockout.
    async fn count_failure(&self, account: &Account, now: NaiveDateTime) -> Result<(), AuthError> {
        let lockout = &self.inner.config.lockout;
        self.inner.accounts.login_failed(account.id, now, lockout).await?;
        Ok(())
    }

    fn tokens_for(
        &self,
        user_id: i64,
        session: &str,
        refresh_token: String,
    ) -> Result<Tokens, AuthError> {
        let (access_token, _) =
            self.inner.tokens.issue(&user_id.to_string(), session, &[], unix_now())?;
        Ok(Tokens { access_token, refresh_token, expires_in: self.inner.config.access_ttl_secs })
    }

    async fn end_session(&self, family: &str) -> Result<(), AuthError> {
        self.inner.sessions.revoke(family, now()).await?;
        self.inner.revoked.insert(family);
        Ok(())
    }
}

/// The longest display name, in characters.
pub const MAX_DISPLAY_NAME: usize = 100;

fn clean_display_name(name: Option<&str>) -> Result<Option<&str>, AuthError> {
    let name = name.map(str::trim).filter(|name| !name.is_empty());
    if name.is_some_and(|name| name.chars().count() > MAX_DISPLAY_NAME) {
        return Err(AuthError::Invalid("a display name may have at most 100 characters"));
    }
    if name.is_some_and(|name| name.chars().any(char::is_control)) {
        return Err(AuthError::Invalid("a display name may not contain control characters"));
    }
    Ok(name)
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

fn now() -> NaiveDateTime {
    chrono::Utc::now().naive_utc()
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}

/// Sessions ended on this node whose access tokens may still be current: checked on every
/// request, and forgotten once such tokens have expired anyway.
#[derive(Clone)]
struct Revoked {
    sessions: moka::sync::Cache<String, ()>,
}

impl Revoked {
    fn new(access_ttl: Duration) -> Self {
        let sessions = moka::sync::Cache::builder()
            .max_capacity(1_000_000)
            .time_to_live(access_ttl + Duration::from_secs(1))
            .build();
        Self { sessions }
    }

    fn insert(&self, session: &str) {
        self.sessions.insert(session.to_owned(), ());
    }

    fn contains(&self, session: &str) -> bool {
        self.sessions.contains_key(session)
    }
}

/// Access tokens already verified on this node, with the caller they stand for, until
/// they expire.
///
/// A client sends the same access token with every request for its lifetime; checking
/// its signature and claims once instead of on every request takes the cost of
/// authenticating from microseconds to a hash lookup. Only tokens that passed every check
/// are kept, under the whole token (so a token differing in any byte is verified afresh),
/// each until its own `exp`. Whether its session has ended is still asked on every use.
#[derive(Clone)]
struct VerifiedTokens {
    tokens: moka::sync::Cache<Box<str>, Arc<Verified>, foldhash::fast::RandomState>,
}

struct Verified {
    user: CurrentUser,
    /// The token's `exp`, in seconds since the Unix epoch.
    expires_at: u64,
}

/// Tokens kept at most: a few MiB.
const VERIFIED_TOKENS: u64 = 10_000;

impl VerifiedTokens {
    /// Kept at most `ttl` (the access-token lifetime): a token first seen late in its life
    /// is held longer than it lives, and [`get`](Self::get) checks its own expiry. A
    /// fixed lifetime and plain LRU eviction keep inserting cheap (no per-entry timer, no
    /// frequency sketch); recency is what predicts a token's next use anyway.
    fn new(ttl: Duration) -> Self {
        let tokens = moka::sync::Cache::builder()
            .max_capacity(VERIFIED_TOKENS)
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .time_to_live(ttl)
            .build_with_hasher(foldhash::fast::RandomState::default());
        Self { tokens }
    }

    /// The caller `token` stands for, if it was verified and has not expired.
    fn get(&self, token: &str) -> Option<CurrentUser> {
        let verified = self.tokens.get(token)?;
        (verified.expires_at > unix_now()).then(|| verified.user.clone())
    }

    fn insert(&self, token: &str, user: CurrentUser, expires_at: u64) {
        self.tokens.insert(token.into(), Arc::new(Verified { user, expires_at }));
    }
}

/// Authenticates callers by their access tokens: the signature, issuer, audience and
/// lifetime (once per token and node), and that the session was not ended on this node
/// (on every request).
#[derive(Clone)]
pub struct TokenAuthenticator {
    tokens: AccessTokens,
    revoked: Revoked,
    verified: VerifiedTokens,
}

impl std::fmt::Debug for TokenAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAuthenticator").field("tokens", &self.tokens).finish_non_exhaustive()
    }
}

impl TokenAuthenticator {
    /// Verifies `token` in full, and keeps the result.
    fn verify(&self, token: &str) -> Result<CurrentUser, Rejection> {
        let claims = self.tokens.verify(token).map_err(|error| match error {
            TokenError::Expired => Rejection::Expired,
            error => {
                tracing::debug!(%error, "access token refused");
                Rejection::Invalid
            }
        })?;
        let user_id = claims.sub.parse().map_err(|_| Rejection::Invalid)?;
        let user = CurrentUser { user_id, session_id: claims.sid, roles: claims.roles };
        self.verified.insert(token, user.clone(), claims.exp);
        Ok(user)
    }
}

impl Authenticate for TokenAuthenticator {
    fn authenticate(&self, token: &str) -> Result<CurrentUser, Rejection> {
        let user = match self.verified.get(token) {
            Some(user) => user,
            None => self.verify(token)?,
        };
        if self.revoked.contains(&user.session_id) {
            return Err(Rejection::Revoked);
        }
        Ok(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authenticator(ttl_secs: u64) -> TokenAuthenticator {
        let tokens = AccessTokens::hs256(&[9; 32], "xcore", "xcore", ttl_secs).unwrap();
        TokenAuthenticator {
            tokens,
            revoked: Revoked::new(Duration::from_secs(ttl_secs)),
            verified: VerifiedTokens::new(Duration::from_secs(ttl_secs)),
        }
    }

    #[test]
    fn a_verified_token_is_remembered_until_it_expires_and_never_beyond() {
        let auth = authenticator(1);
        let (token, _) = auth.tokens.issue("7", "s1", &[], unix_now()).unwrap();
        assert_eq!(auth.authenticate(&token).unwrap().user_id, 7);
        assert!(auth.verified.get(&token).is_some(), "kept after the first use");
        // One byte changed is another token: verified afresh, and refused.
        let mut tampered = token.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(auth.authenticate(&tampered), Err(Rejection::Invalid));
        assert!(auth.verified.get(&tampered).is_none());
        std::thread::sleep(Duration::from_millis(2100));
        assert_eq!(auth.authenticate(&token), Err(Rejection::Expired));
    }

    #[test]
    fn an_ended_session_is_refused_even_with_a_remembered_token() {
        let auth = authenticator(60);
        let (token, _) = auth.tokens.issue("7", "s1", &[], unix_now()).unwrap();
        assert!(auth.authenticate(&token).is_ok());
        auth.revoked.insert("s1");
        assert_eq!(auth.authenticate(&token), Err(Rejection::Revoked));
    }
}
