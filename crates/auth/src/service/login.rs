//! Getting in and out: [`Auth::register`], [`Auth::login`] (with lockout and two-factor),
//! [`Auth::refresh`] and [`Auth::logout`], and the [`Tokens`] a login or refresh hands out.
//!
//! These are the flows a client runs without an access token, and each one starts, rotates
//! or ends a session; ending one also reaches every node's authenticator (see
//! [`super::revocation`]), so the session's access tokens stop working at once rather than
//! when they expire.

use std::net::IpAddr;
use std::time::Duration;

use chrono::NaiveDateTime;

use crate::accounts::{Account, check_email, email_key};
use crate::sessions::SessionError;

use super::account::clean_display_name;
use super::{Auth, AuthError, locked, now, unix_now};

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

impl Auth {
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
    /// authenticator app or a recovery code, from `client` (what lockouts count by; see
    /// [`crate::lockout`]).
    ///
    /// # Errors
    ///
    /// [`AuthError::Locked`] while `client` is locked out of this email,
    /// [`AuthError::InvalidCredentials`] for an unknown email or a wrong password (the
    /// same answer at the same cost, and counted alike), [`AuthError::Disabled`],
    /// [`AuthError::OtpRequired`], [`AuthError::InvalidOtp`].
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        otp: Option<&str>,
        client: IpAddr,
    ) -> Result<Tokens, AuthError> {
        let inner = &self.inner;
        let now = now();
        // Emails that cannot be addresses have no account and are not worth counting.
        let key = check_email(email).is_ok().then(|| email_key(email));
        if let Some(key) = &key {
            self.wait_turn(key, client, now).await?;
        }
        let account = inner.accounts.by_email(email).await?;
        let verified =
            inner.passwords.verify(password, account.as_ref().map(|a| a.password_hash.as_str()));
        let verified = verified.await?;
        let account = account.filter(|_| verified.matches);
        let Some(account) = account else {
            if let Some(key) = &key {
                self.login_failed(key, client, now).await?;
            }
            return Err(AuthError::InvalidCredentials);
        };
        if !account.active {
            return Err(AuthError::Disabled);
        }
        if account.otp_enabled {
            let Some(code) = otp.map(str::trim).filter(|code| !code.is_empty()) else {
                return Err(AuthError::OtpRequired);
            };
            if !self.second_factor(&account, code, now).await? {
                self.login_failed(&account.email_key, client, now).await?;
                return Err(AuthError::InvalidOtp);
            }
        }
        inner.failures.clear(&account.email_key, Some(client)).await?;
        inner.accounts.login_succeeded(account.id, now).await?;
        if verified.needs_rehash {
            let hash = inner.passwords.hash(password).await?;
            inner.accounts.set_password_hash(account.id, &hash, now).await?;
        }
        let session = inner.sessions.start(account.id, now).await?;
        self.tokens_for(account.id, &session.family, session.token)
    }

    /// Refuses `client` while it is locked out of `key`, and slows every attempt on an
    /// email that failed too often from everywhere.
    async fn wait_turn(
        &self,
        key: &str,
        client: IpAddr,
        now: NaiveDateTime,
    ) -> Result<(), AuthError> {
        let lockout = &self.inner.config.lockout;
        let standing = self.inner.failures.standing(key, client, now).await?;
        if let Some(until) = standing.locked_until {
            return Err(locked(until, now));
        }
        if standing.email_failures >= lockout.account_threshold {
            tokio::time::sleep(Duration::from_millis(lockout.account_delay_ms)).await;
        }
        Ok(())
    }

    /// Counts a failed login of `client` on `key`, and logs the security events it
    /// makes: repeated failures, a lock, an email slowed.
    async fn login_failed(
        &self,
        key: &str,
        client: IpAddr,
        now: NaiveDateTime,
    ) -> Result<(), AuthError> {
        let lockout = &self.inner.config.lockout;
        let failure = self.inner.failures.failed(key, client, now).await?;
        if let Some(lock) = failure.locked_for {
            tracing::warn!(
                target: "security",
                event = "login_locked",
                email = key,
                %client,
                failures = failure.failures,
                lock_secs = lock.as_secs(),
                "a client is locked out of an email after repeated failed logins"
            );
        } else if failure.failures >= lockout.threshold.div_ceil(2) {
            tracing::warn!(
                target: "security",
                event = "login_failures",
                email = key,
                %client,
                failures = failure.failures,
                "repeated failed logins"
            );
        }
        if failure.email_failures == lockout.account_threshold {
            tracing::warn!(
                target: "security",
                event = "login_slowed",
                email = key,
                failures = failure.email_failures,
                "failed logins on an email from many clients: every attempt on it is slowed"
            );
        }
        Ok(())
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
            Err(SessionError::Reused { user_id, family }) => {
                // The store revoked the session; its access tokens stop too.
                self.sessions_ended(user_id, &[family]).await?;
                tracing::warn!("a rotated refresh token was presented again: session revoked");
                return Err(AuthError::InvalidRefresh);
            }
            Err(error) => return Err(error.into()),
        };
        let account = self.inner.accounts.by_id(issued.user_id).await?;
        if !account.is_some_and(|account| account.active) {
            self.end_session(issued.user_id, issued.family).await?;
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
        if let Some((user_id, family)) = self.inner.sessions.end(refresh_token, now()).await? {
            self.sessions_ended(user_id, &[family]).await?;
        }
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

    async fn end_session(&self, user_id: i64, family: String) -> Result<(), AuthError> {
        self.inner.sessions.revoke(&family, now()).await?;
        self.sessions_ended(user_id, &[family]).await
    }
}
