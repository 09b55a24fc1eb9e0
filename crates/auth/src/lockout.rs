//! Lockout after repeated failed logins, without telling who has an account and without
//! letting a stranger lock anyone out.
//!
//! Failed logins are counted by email and client address: after
//! [`LockoutConfig::threshold`] failures that client is locked out of that email for
//! [`LockoutConfig::base_secs`], each further failure doubling the lock up to
//! [`LockoutConfig::max_secs`]. Emails with no account are counted exactly alike, so the
//! answers (401 then 429) never tell whether an email is registered; and since the lock
//! holds one client only, nobody can lock an account's owner out from another address.
//! Guessing from many addresses meets the per-email ceiling instead:
//! after [`LockoutConfig::account_threshold`] failures from everywhere, every attempt on
//! that email waits [`LockoutConfig::account_delay_ms`] before it is checked. That slows a
//! spread-out attack without ever blocking the owner. A successful login clears both
//! counts; a count with no failure for [`LockoutConfig::forget_after_secs`] restarts.
//! Locks and counts are rows of the database ([`LoginFailures`]), so they hold across
//! restarts and nodes.
//!
//! The flows a signed-in caller proves a password in (password change, account deletion,
//! turning two-factor off) count against the account itself instead
//! ([`crate::accounts::Accounts::login_failed`]): only a holder of the account's token
//! can fail them.

use std::net::IpAddr;
use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::{ExpressionMethods, QueryDsl};
use diesel_async::RunQueryDsl;
use serde::{Deserialize, Serialize};
use xcore_db::{Database, with_conn};

/// The lockout section of the auth config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LockoutConfig {
    /// Failures of one client on one email before the first lock.
    pub threshold: u32,
    /// Length of the first lock.
    pub base_secs: u64,
    /// Longest lock.
    pub max_secs: u64,
    /// Failures on one email from every client before each attempt on it is slowed.
    pub account_threshold: u32,
    /// How long each attempt on such an email waits before it is checked.
    pub account_delay_ms: u64,
    /// A count with no failure for this long starts again from zero.
    pub forget_after_secs: u64,
}

impl Default for LockoutConfig {
    fn default() -> Self {
        Self {
            threshold: 10,
            base_secs: 1,
            max_secs: 15 * 60,
            account_threshold: 100,
            account_delay_ms: 2000,
            forget_after_secs: 24 * 3600,
        }
    }
}

impl LockoutConfig {
    /// How long a client is locked out once it has `failures` consecutive failures:
    /// nothing below the threshold, then the base length doubling with each failure,
    /// capped.
    pub fn lock_for(&self, failures: u32) -> Option<Duration> {
        let beyond = failures.checked_sub(self.threshold)?;
        let factor = 1u64.checked_shl(beyond).unwrap_or(u64::MAX);
        let secs = self.base_secs.saturating_mul(factor).min(self.max_secs);
        Some(Duration::from_secs(secs))
    }

    pub(crate) fn forget_after(&self) -> chrono::Duration {
        let secs = i64::try_from(self.forget_after_secs).unwrap_or(i64::MAX);
        chrono::Duration::try_seconds(secs).unwrap_or(chrono::Duration::MAX)
    }
}

diesel::table! {
    auth_login_failures (email_key, client) {
        email_key -> Text,
        client -> Text,
        failures -> Integer,
        last_failure_at -> Timestamp,
        locked_until -> Nullable<Timestamp>,
    }
}

/// The client under which the failures on an email from every client are counted.
const EVERYWHERE: &str = "*";

/// Where a client stands with an email before it tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Standing {
    /// Until when this client is locked out of the email.
    pub locked_until: Option<NaiveDateTime>,
    /// Recent failures on the email from every client.
    pub email_failures: u32,
}

/// What a failure changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// Consecutive failures of this client on the email, this one included.
    pub failures: u32,
    /// Recent failures on the email from every client, this one included.
    pub email_failures: u32,
    /// The lock this failure started, if it started one.
    pub locked_for: Option<Duration>,
}

/// The failed-login counts of one database.
#[derive(Debug, Clone)]
pub struct LoginFailures {
    db: Database,
    config: LockoutConfig,
}

impl LoginFailures {
    pub fn new(db: Database, config: LockoutConfig) -> Self {
        Self { db, config }
    }

    /// Where `client` stands with `email_key` at `now`.
    ///
    /// # Errors
    ///
    /// [`xcore_db::Error`] when the database fails.
    pub async fn standing(
        &self,
        email_key: &str,
        client: IpAddr,
        now: NaiveDateTime,
    ) -> Result<Standing, xcore_db::Error> {
        let client = client.to_string();
        let mut conn = self.db.get().await?;
        let rows: Vec<(String, i32, NaiveDateTime, Option<NaiveDateTime>)> = with_conn!(conn, c => {
            auth_login_failures::table
                .filter(auth_login_failures::email_key.eq(email_key))
                .filter(auth_login_failures::client.eq_any([client.as_str(), EVERYWHERE]))
                .select((
                    auth_login_failures::client,
                    auth_login_failures::failures,
                    auth_login_failures::last_failure_at,
                    auth_login_failures::locked_until,
                ))
                .load(c)
                .await
        })?;
        let recent = now - self.config.forget_after();
        let mut standing = Standing::default();
        for (row_client, failures, last, locked_until) in rows {
            if row_client == EVERYWHERE {
                if last >= recent {
                    standing.email_failures = u32::try_from(failures).unwrap_or(0);
                }
            } else {
                standing.locked_until = locked_until.filter(|until| *until > now);
            }
        }
        Ok(standing)
    }

    /// Counts a failure of `client` on `email_key` at `now`, and locks the client out when
    /// it has failed too often.
    ///
    /// # Errors
    ///
    /// [`xcore_db::Error`] when the database fails.
    pub async fn failed(
        &self,
        email_key: &str,
        client: IpAddr,
        now: NaiveDateTime,
    ) -> Result<Failure, xcore_db::Error> {
        let client = client.to_string();
        let failures = self.count(email_key, &client, now).await?;
        let email_failures = self.count(email_key, EVERYWHERE, now).await?;
        let locked_for = self.config.lock_for(failures);
        if let Some(lock) = locked_for {
            let until = now + chrono::Duration::from_std(lock).unwrap_or(chrono::Duration::MAX);
            let mut conn = self.db.get().await?;
            with_conn!(conn, c => {
                diesel::update(auth_login_failures::table.find((email_key, client.as_str())))
                    .set(auth_login_failures::locked_until.eq(until))
                    .execute(c)
                    .await
            })?;
        }
        Ok(Failure { failures, email_failures, locked_for })
    }

    /// Adds one to the count of (`email_key`, `client`), restarting a count that was
    /// quiet for too long; the new count.
    async fn count(
        &self,
        email_key: &str,
        client: &str,
        now: NaiveDateTime,
    ) -> Result<u32, xcore_db::Error> {
        use auth_login_failures::dsl as f;
        let recent = now - self.config.forget_after();
        let mut conn = self.db.get().await?;
        let failures: i32 = with_conn!(conn, c => {
            diesel::insert_into(f::auth_login_failures)
                .values((
                    f::email_key.eq(email_key),
                    f::client.eq(client),
                    f::failures.eq(1),
                    f::last_failure_at.eq(now),
                ))
                .on_conflict((f::email_key, f::client))
                .do_update()
                .set((
                    f::failures.eq(
                        diesel::dsl::case_when::<_, _, diesel::sql_types::Integer>(
                            f::last_failure_at.lt(recent),
                            1,
                        )
                        .otherwise(f::failures + 1),
                    ),
                    f::last_failure_at.eq(now),
                ))
                .returning(f::failures)
                .get_result(c)
                .await
        })?;
        Ok(u32::try_from(failures).unwrap_or(0))
    }

    /// Clears the counts of `email_key` for `client` and from everywhere (a successful
    /// login), or for every client (`None`: a password reset).
    ///
    /// # Errors
    ///
    /// [`xcore_db::Error`] when the database fails.
    pub async fn clear(
        &self,
        email_key: &str,
        client: Option<IpAddr>,
    ) -> Result<(), xcore_db::Error> {
        use auth_login_failures::dsl as f;
        let mut conn = self.db.get().await?;
        match client.map(|client| client.to_string()) {
            Some(client) => with_conn!(conn, c => {
                let clients = [client.as_str(), EVERYWHERE];
                diesel::delete(f::auth_login_failures)
                    .filter(f::email_key.eq(email_key))
                    .filter(f::client.eq_any(clients))
                    .execute(c)
                    .await
            })?,
            None => with_conn!(conn, c => {
                diesel::delete(f::auth_login_failures)
                    .filter(f::email_key.eq(email_key))
                    .execute(c)
                    .await
            })?,
        };
        Ok(())
    }

    /// Deletes the counts with no failure since `before`; how many there were.
    ///
    /// # Errors
    ///
    /// [`xcore_db::Error`] when the database fails.
    pub async fn prune(&self, before: NaiveDateTime) -> Result<usize, xcore_db::Error> {
        let mut conn = self.db.get().await?;
        let deleted = with_conn!(conn, c => {
            diesel::delete(
                auth_login_failures::table.filter(auth_login_failures::last_failure_at.lt(before)),
            )
            .execute(c)
            .await
        })?;
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use xcore_db::DatabaseConfig;

    use super::*;
    use crate::accounts::MIGRATIONS;

    fn at(secs: i64) -> NaiveDateTime {
        chrono::DateTime::from_timestamp(secs, 0).unwrap().naive_utc()
    }

    #[tokio::test]
    async fn counts_lock_one_client_restart_after_a_quiet_spell_and_clear() {
        let config = DatabaseConfig { url: "sqlite::memory:".into(), ..Default::default() };
        let db = Database::new(&config).unwrap();
        db.migrate(&[&MIGRATIONS]).await.unwrap();
        let lockout = LockoutConfig { threshold: 2, forget_after_secs: 1000, ..Default::default() };
        let log = LoginFailures::new(db, lockout);
        let (a, b): (IpAddr, IpAddr) = ([192, 0, 2, 1].into(), [192, 0, 2, 2].into());
        assert_eq!(log.failed("ada", a, at(10)).await.unwrap().locked_for, None);
        let second = log.failed("ada", a, at(11)).await.unwrap();
        assert_eq!((second.failures, second.email_failures), (2, 2));
        assert_eq!(second.locked_for, Some(Duration::from_secs(1)));
        assert_eq!(log.standing("ada", a, at(11)).await.unwrap().locked_until, Some(at(12)));
        let other = log.standing("ada", b, at(11)).await.unwrap();
        assert_eq!(other, Standing { locked_until: None, email_failures: 2 });
        // A quiet spell longer than `forget_after_secs` restarts both counts.
        let later = log.failed("ada", a, at(2000)).await.unwrap();
        assert_eq!((later.failures, later.email_failures, later.locked_for), (1, 1, None));
        assert_eq!(log.standing("ada", b, at(5000)).await.unwrap().email_failures, 0);
        log.failed("ada", b, at(2001)).await.unwrap();
        log.clear("ada", Some(a)).await.unwrap();
        assert_eq!(log.standing("ada", b, at(2001)).await.unwrap().email_failures, 0);
        assert_eq!(
            log.failed("ada", b, at(2002)).await.unwrap().failures,
            2,
            "b's own count stays"
        );
        assert_eq!(log.prune(at(2002)).await.unwrap(), 0);
        assert_eq!(log.prune(at(2003)).await.unwrap(), 2);
    }

    #[test]
    fn locks_start_at_the_threshold_double_and_cap() {
        let config = LockoutConfig::default();
        let check = |failures, expected: Option<u64>| {
            assert_eq!(config.lock_for(failures), expected.map(Duration::from_secs), "{failures}");
        };
        check(0, None);
        check(9, None);
        check(10, Some(1));
        check(11, Some(2));
        check(12, Some(4));
        check(19, Some(512));
        check(20, Some(900));
        check(200, Some(900));
        check(u32::MAX, Some(900));
    }
}
