//! What a signed-in caller does with their own account: read it ([`Auth::me`]), change
//! its display name, and list or end its sessions.
//!
//! Every flow here takes the [`CurrentUser`] the request gate authenticated, so none of
//! them asks for a password; the rules for display names live here too because
//! registration applies the same ones.

use xcore_middleware::CurrentUser;

use crate::accounts::Account;
use crate::sessions::Session;

use super::{Auth, AuthError, now};

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
        self.inner.revoked.insert(id);
        Ok(())
    }
}

/// The longest display name, in characters.
pub const MAX_DISPLAY_NAME: usize = 100;

pub(super) fn clean_display_name(name: Option<&str>) -> Result<Option<&str>, AuthError> {
    let name = name.map(str::trim).filter(|name| !name.is_empty());
    if name.is_some_and(|name| name.chars().count() > MAX_DISPLAY_NAME) {
        return Err(AuthError::Invalid("a display name may have at most 100 characters"));
    }
    if name.is_some_and(|name| name.chars().any(char::is_control)) {
        return Err(AuthError::Invalid("a display name may not contain control characters"));
    }
    Ok(name)
}
