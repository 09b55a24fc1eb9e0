//! What a signed-in caller does with their own account: read it ([`Auth::me`]), change
//! its display name, list or end its sessions, delete it; and what an operator does to
//! any account: disable, enable or delete it.
//!
//! Every flow here takes the [`CurrentUser`] the request gate authenticated, so none of
//! them asks for a password; the rules for display names live here too because
//! registration applies the same ones.

use xcore_middleware::CurrentUser;

use crate::accounts::Account;
use crate::sessions::Session;

use super::{Auth, AuthError, check_unlocked, now};

impl Auth {
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
    /// [`AuthError::Invalid`] for a name that is too long, [`AuthError::NoAccount`] when
    /// the account was deleted.
    pub async fn set_display_name(
        &self,
        user: &CurrentUser,
        display_name: Option<&str>,
    ) -> Result<Account, AuthError> {
        let display_name = clean_display_name(display_name)?;
        let account = self.inner.accounts.set_display_name(user.user_id, display_name, now());
        account.await?.ok_or(AuthError::NoAccount)
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
        self.sessions_ended(user.user_id, &[id.to_owned()]).await
    }

    /// Deletes the account of `user`, who proves it with the password: its sessions end
    /// on every node at once.
    ///
    /// # Errors
    ///
    /// [`AuthError::InvalidCredentials`] for a wrong password (counted as a failed login),
    /// [`AuthError::Locked`], [`AuthError::NoAccount`].
    pub async fn delete_me(&self, user: &CurrentUser, password: &str) -> Result<(), AuthError> {
        let now = now();
        let account = self.me(user).await?;
        check_unlocked(&account, now)?;
        if !self.inner.passwords.verify(password, Some(&account.password_hash)).await?.matches {
            self.count_failure(&account, now).await?;
            return Err(AuthError::InvalidCredentials);
        }
        self.delete_account(account.id).await
    }

    /// Deletes account `id` (an operator's or an administrator's decision): its sessions
    /// end on every node at once.
    ///
    /// # Errors
    ///
    /// [`AuthError::NoAccount`] when there is no such account.
    pub async fn delete_account(&self, id: i64) -> Result<(), AuthError> {
        // The log first: once the row is gone nothing would name the sessions.
        self.account_ended(id).await?;
        if !self.inner.accounts.delete(id).await? {
            return Err(AuthError::NoAccount);
        }
        tracing::info!(target: "security", event = "account_deleted", user_id = id);
        Ok(())
    }

    /// Disables (`active = false`) or enables account `id`. Disabling ends its sessions on
    /// every node at once, and it cannot log in or refresh until enabled again.
    ///
    /// # Errors
    ///
    /// [`AuthError::NoAccount`] when there is no such account.
    pub async fn set_active(&self, id: i64, active: bool) -> Result<(), AuthError> {
        let now = now();
        if !self.inner.accounts.set_active(id, active, now).await? {
            return Err(AuthError::NoAccount);
        }
        if !active {
            let ended = self.inner.sessions.revoke_all(id, None, now).await?;
            self.inner.revocations.sessions_ended(id, &ended).await?;
            self.account_ended(id).await?;
        }
        let event = if active { "account_enabled" } else { "account_disabled" };
        tracing::info!(target: "security", event, user_id = id);
        Ok(())
    }
}

/// The longest display name, in characters.
pub const MAX_DISPLAY_NAME: usize = 100;

/// `name` checked as given (the length counts every character, as the document's
/// `maxLength` does), then trimmed; blank is none.
pub(super) fn clean_display_name(name: Option<&str>) -> Result<Option<&str>, AuthError> {
    if name.is_some_and(|name| name.chars().count() > MAX_DISPLAY_NAME) {
        return Err(AuthError::Invalid("a display name may have at most 100 characters"));
    }
    if name.is_some_and(|name| name.chars().any(char::is_control)) {
        return Err(AuthError::Invalid("a display name may not contain control characters"));
    }
    Ok(name.map(str::trim).filter(|name| !name.is_empty()))
}
