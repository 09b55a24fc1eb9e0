//! Changing a password: [`Auth::change_password`] for a signed-in caller who knows the
//! current one, and the reset by emailed code ([`Auth::request_reset`],
//! [`Auth::confirm_reset`]) for one who does not.
//!
//! Both end the account's sessions (for a change, all but the caller's), in the store and
//! on every node's authenticator, so a session opened with the old password does not
//! outlive it. The hashing itself is [`crate::password`]'s.

use xcore_middleware::CurrentUser;

use crate::codes::Purpose;
use crate::notifier::Message;

use super::{Auth, AuthError, check_unlocked, now};

impl Auth {
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
        self.sessions_ended(account.id, &ended).await?;
        Ok(())
    }

    /// Sends a password-reset code to `email` if it has an account. The answer is the same
    /// either way, and delivery happens in the background so its duration tells nothing.
    ///
    /// # Errors
    ///
    /// [`AuthError::InvalidEmail`] for what cannot be an address, [`AuthError::Internal`]
    /// when the database fails.
    pub async fn request_reset(&self, email: &str) -> Result<(), AuthError> {
        crate::accounts::check_email(email)?;
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
    /// [`AuthError::InvalidEmail`] for what cannot be an address, [`AuthError::InvalidCode`]
    /// for an unknown email or a wrong, used or expired code; [`AuthError::Policy`].
    pub async fn confirm_reset(
        &self,
        email: &str,
        code: &str,
        new_password: &str,
    ) -> Result<(), AuthError> {
        let inner = &self.inner;
        let now = now();
        crate::accounts::check_email(email)?;
        inner.passwords.check_policy(new_password)?;
        let account = inner.accounts.by_email(email).await?.ok_or(AuthError::InvalidCode)?;
        if !inner.codes.spend(account.id, Purpose::PasswordReset, code, now).await? {
            return Err(AuthError::InvalidCode);
        }
        let hash = inner.passwords.hash(new_password).await?;
        inner.accounts.set_password_hash(account.id, &hash, now).await?;
        inner.accounts.unlock(account.id).await?;
        inner.failures.clear(&account.email_key, None).await?;
        let ended = inner.sessions.revoke_all(account.id, None, now).await?;
        self.sessions_ended(account.id, &ended).await?;
        Ok(())
    }
}
