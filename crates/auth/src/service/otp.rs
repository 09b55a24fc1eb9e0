//! Two-factor authentication: setting it up ([`Auth::setup_otp`], [`Auth::enable_otp`]),
//! turning it off ([`Auth::disable_otp`]), and checking a second factor at login.
//!
//! The codes themselves are [`xcore_otp`]'s (TOTP, no I/O); what lives here is the account
//! side: a secret stays pending until a code made from it proves the app is set up, a
//! time step is claimed in the store so a code works once, and recovery codes stand in
//! for a lost app. Secrets are stored sealed with the module's [`OtpKey`]; one still in
//! clear from before sealing began is read, and sealed on its next use or by
//! [`Auth::seal_stored_otp_secrets`], which the auth module runs at startup.

use chrono::NaiveDateTime;
use xcore_middleware::CurrentUser;
use xcore_otp::{Algorithm, Secret, Totp};

use crate::accounts::Account;
use crate::codes::Purpose;
use crate::otp_key::{Opened, OtpKey};

use super::{Auth, AuthError, check_unlocked, now, unix_now};

/// Digits of two-factor codes: what authenticator apps show by default.
const OTP_DIGITS: u32 = 6;

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

impl Auth {
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
        let sealed = self.inner.otp_key.seal(account.id, secret.as_bytes())?;
        self.inner.accounts.set_otp(account.id, Some(&sealed), false, None, now()).await?;
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
        let stored = account.otp_secret.as_deref().ok_or(AuthError::OtpNotSetUp)?;
        let opened = self.inner.otp_key.open(account.id, stored)?;
        let totp = Totp::new(Secret::from_bytes(opened.secret())?, Algorithm::Sha1, OTP_DIGITS)?;
        let step = totp.verify(code.trim(), unix_now(), None).ok_or(AuthError::InvalidOtp)?;
        let step = i64::try_from(step).map_err(|_| AuthError::InvalidOtp)?;
        let sealed = match &opened {
            Opened::Sealed(_) => stored.to_vec(),
            Opened::Plain(secret) => self.inner.otp_key.seal(account.id, secret)?,
        };
        let now = now();
        self.inner.accounts.set_otp(account.id, Some(&sealed), true, Some(step), now).await?;
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
    pub(super) async fn second_factor(
        &self,
        account: &Account,
        code: &str,
        now: NaiveDateTime,
    ) -> Result<bool, AuthError> {
        let Some(stored) = account.otp_secret.as_deref() else { return Ok(false) };
        if code.len() == OTP_DIGITS as usize && code.bytes().all(|b| b.is_ascii_digit()) {
            let opened = self.inner.otp_key.open(account.id, stored)?;
            let totp =
                Totp::new(Secret::from_bytes(opened.secret())?, Algorithm::Sha1, OTP_DIGITS)?;
            let last = account.otp_last_step.and_then(|step| u64::try_from(step).ok());
            let Some(step) = totp.verify(code, unix_now(), last) else { return Ok(false) };
            let Ok(step) = i64::try_from(step) else { return Ok(false) };
            let claimed = self.inner.accounts.claim_otp_step(account.id, step).await?;
            if claimed && let Opened::Plain(secret) = &opened {
                seal_in_store(&self.inner.otp_key, &self.inner.accounts, account.id, secret)
                    .await?;
            }
            return Ok(claimed);
        }
        Ok(self.inner.codes.spend(account.id, Purpose::Recovery, code, now).await?)
    }

    /// Seals every two-factor secret still stored in clear (from before secrets were
    /// sealed), and checks that every sealed one opens with the key. The auth module runs
    /// it at startup; running it again, or on several nodes at once, changes nothing more.
    ///
    /// # Errors
    ///
    /// [`AuthError::Internal`] when the database fails or there are no random bytes. A
    /// secret that does not open is not an error: it is listed in the answer.
    pub async fn seal_stored_otp_secrets(&self) -> Result<StoredOtpSecrets, AuthError> {
        let (key, accounts) = (&self.inner.otp_key, &self.inner.accounts);
        let mut checked = StoredOtpSecrets::default();
        for (id, stored) in accounts.otp_secrets().await? {
            match key.open(id, &stored) {
                Ok(Opened::Sealed(_)) => checked.sealed += 1,
                Ok(Opened::Plain(secret)) => {
                    if seal_in_store(key, accounts, id, &secret).await? {
                        checked.sealed_now += 1;
                    }
                }
                Err(error) => {
                    checked.first_error.get_or_insert_with(|| error.to_string());
                    checked.unreadable.push(id);
                }
            }
        }
        Ok(checked)
    }
}

/// What [`Auth::seal_stored_otp_secrets`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredOtpSecrets {
    /// Secrets that were sealed already and open with the key.
    pub sealed: usize,
    /// Secrets that were stored in clear and are sealed now.
    pub sealed_now: usize,
    /// The accounts whose secret does not open with the key: sealed with another key, or
    /// altered.
    pub unreadable: Vec<i64>,
    /// Why the first of them does not open.
    pub first_error: Option<String>,
}

/// Replaces the secret of `id`, stored in clear, with its sealed form, unless the stored
/// value changed meanwhile: whether it was replaced.
async fn seal_in_store(
    key: &OtpKey,
    accounts: &crate::accounts::Accounts,
    id: i64,
    secret: &[u8],
) -> Result<bool, AuthError> {
    let sealed = key.seal(id, secret)?;
    Ok(accounts.replace_otp_secret(id, secret, &sealed).await?)
}
