//! The account store: users, on SQLite or PostgreSQL.
//!
//! Emails are unique regardless of case: each account keeps the email as given and its
//! key (lower-cased), on which the unique index and every look-up work. Failures of the
//! proofs a signed-in caller makes are counted in the row, and the lock they lead to is
//! stored as an instant, so it holds across restarts and across nodes (logins count
//! elsewhere: see [`crate::lockout`]).

use chrono::NaiveDateTime;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::{
    BoolExpressionMethods, ExpressionMethods, NullableExpressionMethods, OptionalExtension,
    QueryDsl, Selectable, SelectableHelper,
};
use diesel_async::RunQueryDsl;
use diesel_migrations::embed_migrations;
use xcore_db::{Database, MigrationSet, with_conn};

use crate::email::forbidden_in_email;
pub use crate::email::{EMAIL_PATTERN, MAX_EMAIL_LEN, check_email, email_key};
use crate::lockout::LockoutConfig;

/// The auth tables (users, refresh tokens, one-time codes), for both backends.
pub static MIGRATIONS: MigrationSet = MigrationSet {
    name: "auth",
    sqlite: embed_migrations!("migrations/sqlite"),
    postgres: embed_migrations!("migrations/postgres"),
};

diesel::table! {
    auth_users (id) {
        id -> BigInt,
        email -> Text,
        email_key -> Text,
        display_name -> Nullable<Text>,
        password_hash -> Text,
        active -> Bool,
        email_verified -> Bool,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        last_login_at -> Nullable<Timestamp>,
        failed_logins -> Integer,
        locked_until -> Nullable<Timestamp>,
        otp_secret -> Nullable<Binary>,
        otp_enabled -> Bool,
        otp_last_step -> Nullable<BigInt>,
    }
}

/// An account as stored.
#[derive(Clone, PartialEq, Eq, diesel::Queryable, Selectable)]
#[diesel(table_name = auth_users)]
pub struct Account {
    pub id: i64,
    pub email: String,
    pub email_key: String,
    pub display_name: Option<String>,
    pub password_hash: String,
    pub active: bool,
    pub email_verified: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub last_login_at: Option<NaiveDateTime>,
    pub failed_logins: i32,
    pub locked_until: Option<NaiveDateTime>,
    /// The two-factor secret, sealed (see [`crate::otp_key`]).
    pub otp_secret: Option<Vec<u8>>,
    pub otp_enabled: bool,
    pub otp_last_step: Option<i64>,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("active", &self.active)
            .field("failed_logins", &self.failed_logins)
            .field("locked_until", &self.locked_until)
            .finish_non_exhaustive()
    }
}

/// What an account operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("an account with this email exists")]
    EmailTaken,
    #[error("`{0}` is not an email address")]
    InvalidEmail(String),
    #[error(transparent)]
    Database(#[from] xcore_db::Error),
}

impl From<DieselError> for AccountError {
    fn from(error: DieselError) -> Self {
        match error {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => Self::EmailTaken,
            other => Self::Database(xcore_db::Error::Query(other)),
        }
    }
}

/// The accounts of one database.
#[derive(Debug, Clone)]
pub struct Accounts {
    db: Database,
}

impl Accounts {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Creates an account for `email` with the password hash `password_hash`.
    ///
    /// # Errors
    ///
    /// [`AccountError::InvalidEmail`], [`AccountError::EmailTaken`] when the email (in any
    /// case) has an account, [`AccountError::Database`].
    pub async fn create(
        &self,
        email: &str,
        display_name: Option<&str>,
        password_hash: &str,
        now: NaiveDateTime,
    ) -> Result<Account, AccountError> {
        check_email(email)?;
        let (email, key) = (email.trim(), email_key(email));
        let mut conn = self.db.get().await?;
        let account = with_conn!(conn, c => {
            diesel::insert_into(auth_users::table)
                .values((
                    auth_users::email.eq(email),
                    auth_users::email_key.eq(&key),
                    auth_users::display_name.eq(display_name),
                    auth_users::password_hash.eq(password_hash),
                    auth_users::created_at.eq(now),
                    auth_users::updated_at.eq(now),
                ))
                .returning(Account::as_returning())
                .get_result(c)
                .await
        })?;
        Ok(account)
    }

    /// The account of `email` (in any case), if any.
    ///
    /// # Errors
    ///
    /// [`AccountError::Database`].
    pub async fn by_email(&self, email: &str) -> Result<Option<Account>, AccountError> {
        let key = email_key(email);
        // No account can have such an address, and PostgreSQL refuses NUL in a query
        // parameter: answer "none" as for any unknown address.
        if key.chars().any(forbidden_in_email) {
            return Ok(None);
        }
        let mut conn = self.db.get().await?;
        let account = with_conn!(conn, c => {
            auth_users::table
                .filter(auth_users::email_key.eq(&key))
                .select(Account::as_select())
                .first(c)
                .await
                .optional()
        })?;
        Ok(account)
    }

    /// The account `id`, if any.
    ///
    /// # Errors
    ///
    /// [`AccountError::Database`].
    pub async fn by_id(&self, id: i64) -> Result<Option<Account>, AccountError> {
        let mut conn = self.db.get().await?;
        let account = with_conn!(conn, c => {
            auth_users::table.find(id).select(Account::as_select()).first(c).await.optional()
        })?;
        Ok(account)
    }

    /// Counts a failed login and locks the account when `lockout` says so; returns the
    /// instant the lock ends, if the account is now locked.
    ///
    /// # Errors
    ///
    /// [`AccountError::Database`].
    pub async fn login_failed(
        &self,
        id: i64,
        now: NaiveDateTime,
        lockout: &LockoutConfig,
    ) -> Result<Option<NaiveDateTime>, AccountError> {
        let mut conn = self.db.get().await?;
        // The increment happens in the database, so concurrent failures all count.
        let failures: i32 = with_conn!(conn, c => {
            diesel::update(auth_users::table.find(id))
                .set(auth_users::failed_logins.eq(auth_users::failed_logins + 1))
                .returning(auth_users::failed_logins)
                .get_result(c)
                .await
        })?;
        let Some(lock) = lockout.lock_for(u32::try_from(failures).unwrap_or(0)) else {
            return Ok(None);
        };
        let until = now + chrono::Duration::from_std(lock).unwrap_or(chrono::Duration::MAX);
        with_conn!(conn, c => {
            diesel::update(auth_users::table.find(id))
                .set(auth_users::locked_until.eq(until))
                .execute(c)
                .await
        })?;
        Ok(Some(until))
    }

    /// Records a successful login: resets the failure count and the lock.
    ///
    /// # Errors
    ///
    /// [`AccountError::Database`].
    pub async fn login_succeeded(&self, id: i64, now: NaiveDateTime) -> Result<(), AccountError> {
        let mut conn = self.db.get().await?;
        with_conn!(conn, c => {
            diesel::update(auth_users::table.find(id))
                .set((
                    auth_users::failed_logins.eq(0),
                    auth_users::locked_until.eq(None::<NaiveDateTime>),
                    auth_users::last_login_at.eq(now),
                ))
                .execute(c)
                .await
        })?;
        Ok(())
    }

    /// Clears the failure count and any lock (a password reset proves the owner).
    ///
    /// # Errors
    ///
    /// [`AccountError::Database`].
    pub async fn unlock(&self, id: i64) -> Result<(), AccountError> {
        let mut conn = self.db.get().await?;
        with_conn!(conn, c => {
            diesel::update(auth_users::table.find(id))
                .set((
                    auth_users::failed_logins.eq(0),
                    auth_users::locked_until.eq(None::<NaiveDateTime>),
                ))
                .execute(c)
                .await
        })?;
        Ok(())
    }

    /// Enables or disables account `id`; whether there is such an account.
    ///
    /// # Errors
    ///
    /// [`AccountError::Database`].
    pub async fn set_active(
        &self,
        id: i64,
        active: bool,
        now: NaiveDateTime,
    ) -> Result<bool, AccountError> {
        let mut conn = self.db.get().await?;
        let updated = with_conn!(conn, c => {
            diesel::update(auth_users::table.find(id))
                .set((auth_users::active.eq(active), auth_users::updated_at.eq(now)))
                .execute(c)
                .await
        })?;
        Ok(updated > 0)
    }

    /// Deletes account `id` with its sessions and codes; whether there was such an
    /// account.
    ///
    /// # Errors
    ///
    /// [`AccountError::Database`].
    pub async fn delete(&self, id: i64) -> Result<bool, AccountError> {
        let mut conn = self.db.get().await?;
        let deleted = with_conn!(conn, c => {
            diesel::delete(auth_users::table.find(id)).execute(c).await
        })?;
        Ok(deleted > 0)
    }

    /// Replaces the password hash (a password change, or a rehash with new parameters).
    ///
    /// # Errors
    ///
    /// [`AccountError::Database`].
    pub async fn set_password_hash(
        &self,
        id: i64,
        password_hash: &str,
        now: NaiveDateTime,
    ) -> Result<(), AccountError> {
        let mut conn = self.db.get().await?;
        with_conn!(conn, c => {
            diesel::update(auth_users::table.find(id))
                .set((
                    auth_users::password_hash.eq(password_hash),
                    auth_users::updated_at.eq(now),
                ))
                .execute(c)
                .await
        })?;
        Ok(())
    }

    /// Changes the display name (`None` clears it); `None` when there is no account `id`.
    ///
    /// # Errors
    ///
    /// [`AccountError::Database`].
    pub async fn set_display_name(
        &self,
        id: i64,
        display_name: Option<&str>,
        now: NaiveDateTime,
    ) -> Result<Option<Account>, AccountError> {
        let mut conn = self.db.get().await?;
        let account = with_conn!(conn, c => {
            diesel::update(auth_users::table.find(id))
                .set((auth_users::display_name.eq(display_name), auth_users::updated_at.eq(now)))
                .returning(Account::as_returning())
                .get_result(c)
                .await
                .optional()
        })?;
        Ok(account)
    }

    /// Stores the two-factor secret of `id`, as given: sealed by the caller (see
    /// [`crate::otp_key`]). It is pending (`enabled` false) after a setup, in force once
    /// confirmed; `None` removes two-factor. Either way the last used time
    /// step is forgotten.
    ///
    /// # Errors
    ///
    /// [`AccountError::Database`].
    pub async fn set_otp(
        &self,
        id: i64,
        secret: Option<&[u8]>,
        enabled: bool,
        last_step: Option<i64>,
        now: NaiveDateTime,
    ) -> Result<(), AccountError> {
        let mut conn = self.db.get().await?;
        with_conn!(conn, c => {
            diesel::update(auth_users::table.find(id))
                .set((
                    auth_users::otp_secret.eq(secret),
                    auth_users::otp_enabled.eq(enabled),
                    auth_users::otp_last_step.eq(last_step),
                    auth_users::updated_at.eq(now),
                ))
                .execute(c)
                .await
        })?;
        Ok(())
    }

    /// Replaces the stored two-factor secret of `id` with `to` if it is still `from`:
    /// whether it was replaced. Sealing a secret stored in clear goes through here, so a
    /// change made meanwhile (a new setup, two-factor turned off) is never undone.
    ///
    /// # Errors
    ///
    /// [`AccountError::Database`].
    pub async fn replace_otp_secret(
        &self,
        id: i64,
        from: &[u8],
        to: &[u8],
    ) -> Result<bool, AccountError> {
        let mut conn = self.db.get().await?;
        let replaced = with_conn!(conn, c => {
            diesel::update(auth_users::table.find(id).filter(auth_users::otp_secret.eq(from)))
                .set(auth_users::otp_secret.eq(to))
                .execute(c)
                .await
        })?;
        Ok(replaced == 1)
    }

    /// The stored two-factor secret of every account that has one, by account id.
    ///
    /// # Errors
    ///
    /// [`AccountError::Database`].
    pub async fn otp_secrets(&self) -> Result<Vec<(i64, Vec<u8>)>, AccountError> {
        let mut conn = self.db.get().await?;
        let rows: Vec<(i64, Option<Vec<u8>>)> = with_conn!(conn, c => {
            auth_users::table
                .filter(auth_users::otp_secret.is_not_null())
                .select((auth_users::id, auth_users::otp_secret))
                .order(auth_users::id)
                .load(c)
                .await
        })?;
        Ok(rows.into_iter().filter_map(|(id, secret)| Some((id, secret?))).collect())
    }

    /// Records that the two-factor code of time step `step` was used, unless that step or
    /// a later one already was: whether it was recorded. The check and the write are one
    /// statement, so a code replayed concurrently is accepted once.
    ///
    /// # Errors
    ///
    /// [`AccountError::Database`].
    pub async fn claim_otp_step(&self, id: i64, step: i64) -> Result<bool, AccountError> {
        let mut conn = self.db.get().await?;
        let claimed = with_conn!(conn, c => {
            diesel::update(
                auth_users::table.find(id).filter(
                    auth_users::otp_last_step
                        .is_null()
                        .or(auth_users::otp_last_step.lt(step).assume_not_null()),
                ),
            )
            .set(auth_users::otp_last_step.eq(step))
            .execute(c)
            .await
        })?;
        Ok(claimed == 1)
    }
}

#[cfg(test)]
mod tests {
    use xcore_db::DatabaseConfig;

    use super::*;

    fn at(secs: i64) -> NaiveDateTime {
        chrono::DateTime::from_timestamp(secs, 0).unwrap().naive_utc()
    }

    async fn accounts(url: &str) -> Accounts {
        let db =
            Database::new(&DatabaseConfig { url: url.to_owned(), ..Default::default() }).unwrap();
        db.migrate(&[&MIGRATIONS]).await.unwrap();
        Accounts::new(db)
    }

    /// The same checks on SQLite and, when `XCORE_TEST_DATABASE_URL` is set, PostgreSQL.
    async fn on_every_backend<F, Fut>(label: &str, check: F)
    where
        F: Fn(Accounts) -> Fut,
        Fut: Future<Output = ()>,
    {
        check(accounts("sqlite::memory:").await).await;
        if let Some(url) = xcore_db::testing::fresh_postgres_url(label).await {
            check(accounts(&url).await).await;
        }
    }

    #[tokio::test]
    async fn emails_are_unique_in_any_case_and_found_in_any_case() {
        on_every_backend("auth_emails", |accounts| async move {
            let ada = accounts.create("Ada@Example.com", Some("Ada"), "$h", at(1)).await.unwrap();
            assert_eq!(
                (ada.email.as_str(), ada.email_key.as_str()),
                ("Ada@Example.com", "ada@example.com")
            );
            assert!(ada.active && !ada.email_verified && !ada.otp_enabled);
            let again = accounts.create("ADA@example.COM", None, "$h", at(2)).await;
            assert!(matches!(again, Err(AccountError::EmailTaken)), "{again:?}");
            assert_eq!(accounts.by_email("ada@EXAMPLE.com").await.unwrap(), Some(ada.clone()));
            assert_eq!(accounts.by_id(ada.id).await.unwrap(), Some(ada));
            assert_eq!(accounts.by_email("grace@example.com").await.unwrap(), None);
        })
        .await;
    }

    #[tokio::test]
    async fn failures_lock_with_back_off_and_success_resets() {
        on_every_backend("auth_lockout", |accounts| async move {
            let lockout = LockoutConfig { threshold: 3, max_secs: 60, ..LockoutConfig::default() };
            let id = accounts.create("ada@example.com", None, "$h", at(0)).await.unwrap().id;
            assert_eq!(accounts.login_failed(id, at(10), &lockout).await.unwrap(), None);
            assert_eq!(accounts.login_failed(id, at(10), &lockout).await.unwrap(), None);
            assert_eq!(accounts.login_failed(id, at(10), &lockout).await.unwrap(), Some(at(11)));
            assert_eq!(accounts.login_failed(id, at(20), &lockout).await.unwrap(), Some(at(22)));
            let locked = accounts.by_id(id).await.unwrap().unwrap();
            assert_eq!((locked.failed_logins, locked.locked_until), (4, Some(at(22))));
            accounts.login_succeeded(id, at(30)).await.unwrap();
            let reset = accounts.by_id(id).await.unwrap().unwrap();
            assert_eq!((reset.failed_logins, reset.locked_until), (0, None));
            assert_eq!(reset.last_login_at, Some(at(30)));
        })
        .await;
    }

    /// Regression (issue "Hardening"): updating a deleted account's profile was a database
    /// error (500) instead of "no such account".
    #[tokio::test]
    async fn a_missing_account_has_no_profile_to_update() {
        on_every_backend("auth_missing_profile", |accounts| async move {
            assert_eq!(accounts.set_display_name(4242, Some("Ada"), at(1)).await.unwrap(), None);
        })
        .await;
    }

    #[tokio::test]
    async fn password_hashes_are_replaced() {
        on_every_backend("auth_rehash", |accounts| async move {
            let id = accounts.create("ada@example.com", None, "$old", at(0)).await.unwrap().id;
            accounts.set_password_hash(id, "$new", at(5)).await.unwrap();
            let account = accounts.by_id(id).await.unwrap().unwrap();
            assert_eq!((account.password_hash.as_str(), account.updated_at), ("$new", at(5)));
        })
        .await;
    }
}
