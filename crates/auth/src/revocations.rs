//! Revocations: the sessions and accounts ended while their access tokens may still be
//! current, as a log every node follows.
//!
//! Access tokens are checked without the database, so ending a session has to reach every
//! node's authenticator some other way. Each flow that ends sessions writes a row here;
//! each node reads the rows written since its last look (every
//! `auth.revocation_poll_ms`) and, at startup, every row still relevant, so an ended
//! session stays refused after a restart and on nodes that did not end it. Rows carry the
//! database's clock, so nodes whose clocks differ still read them in order; a row is only
//! useful while the tokens it refuses may be current, and [`Revocations::prune`] deletes
//! the older ones.

use chrono::NaiveDateTime;
use diesel::{ExpressionMethods, QueryDsl};
use diesel_async::RunQueryDsl;
use xcore_db::{Database, with_conn};

diesel::table! {
    auth_revocations (id) {
        id -> BigInt,
        user_id -> BigInt,
        session -> Nullable<Text>,
        not_before -> Nullable<BigInt>,
        revoked_at -> Timestamp,
    }
}

/// One row of the log.
#[derive(Debug, Clone, PartialEq, Eq, diesel::Queryable)]
pub struct Revocation {
    pub user_id: i64,
    /// The session ended, or `None` when every session of the account ended.
    pub session: Option<String>,
    /// For a whole account: tokens issued at or before this Unix time are refused.
    pub not_before: Option<i64>,
    /// When it was written, by the database's clock.
    pub revoked_at: NaiveDateTime,
}

/// The revocation log of one database.
#[derive(Debug, Clone)]
pub struct Revocations {
    db: Database,
}

impl Revocations {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Records that `sessions` of `user_id` ended.
    ///
    /// # Errors
    ///
    /// [`xcore_db::Error`] when the database fails.
    pub async fn sessions_ended(
        &self,
        user_id: i64,
        sessions: &[String],
    ) -> Result<(), xcore_db::Error> {
        let mut conn = self.db.get().await?;
        // One statement per session: SQLite's batch insert cannot leave `revoked_at` to
        // its default, and a session ends alone but for a password change or a reset.
        for session in sessions {
            with_conn!(conn, c => {
                diesel::insert_into(auth_revocations::table)
                    .values((
                        auth_revocations::user_id.eq(user_id),
                        auth_revocations::session.eq(session),
                    ))
                    .execute(c)
                    .await
            })?;
        }
        Ok(())
    }

    /// Records that every session of `user_id` ended: its tokens issued at or before
    /// `not_before` (a Unix time) are refused.
    ///
    /// # Errors
    ///
    /// [`xcore_db::Error`] when the database fails.
    pub async fn account_ended(
        &self,
        user_id: i64,
        not_before: u64,
    ) -> Result<(), xcore_db::Error> {
        let not_before = i64::try_from(not_before).unwrap_or(i64::MAX);
        let mut conn = self.db.get().await?;
        with_conn!(conn, c => {
            diesel::insert_into(auth_revocations::table)
                .values((
                    auth_revocations::user_id.eq(user_id),
                    auth_revocations::not_before.eq(not_before),
                ))
                .execute(c)
                .await
        })?;
        Ok(())
    }

    /// The rows written at or after `from` (every row for `None`), oldest first.
    ///
    /// # Errors
    ///
    /// [`xcore_db::Error`] when the database fails.
    pub async fn since(
        &self,
        from: Option<NaiveDateTime>,
    ) -> Result<Vec<Revocation>, xcore_db::Error> {
        let mut conn = self.db.get().await?;
        let columns = (
            auth_revocations::user_id,
            auth_revocations::session,
            auth_revocations::not_before,
            auth_revocations::revoked_at,
        );
        let rows = with_conn!(conn, c => {
            let query = auth_revocations::table.select(columns).into_boxed();
            let query = match from {
                Some(from) => query.filter(auth_revocations::revoked_at.ge(from)),
                None => query,
            };
            query.order(auth_revocations::revoked_at.asc()).load(c).await
        })?;
        Ok(rows)
    }

    /// Deletes the rows written before `before`; how many there were.
    ///
    /// # Errors
    ///
    /// [`xcore_db::Error`] when the database fails.
    pub async fn prune(&self, before: NaiveDateTime) -> Result<usize, xcore_db::Error> {
        let mut conn = self.db.get().await?;
        let deleted = with_conn!(conn, c => {
            diesel::delete(auth_revocations::table.filter(auth_revocations::revoked_at.lt(before)))
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

    async fn on_every_backend<F, Fut>(label: &str, check: F)
    where
        F: Fn(Revocations) -> Fut,
        Fut: Future<Output = ()>,
    {
        let mut urls = vec!["sqlite::memory:".to_owned()];
        urls.extend(xcore_db::testing::fresh_postgres_url(label).await);
        for url in urls {
            let db = Database::new(&DatabaseConfig { url, ..Default::default() }).unwrap();
            db.migrate(&[&MIGRATIONS]).await.unwrap();
            check(Revocations::new(db)).await;
        }
    }

    #[tokio::test]
    async fn rows_come_back_in_order_from_a_point_and_prune_before_one() {
        on_every_backend("auth_revocations", |log| async move {
            log.sessions_ended(7, &[]).await.unwrap();
            assert!(log.since(None).await.unwrap().is_empty(), "nothing written for nothing");
            log.sessions_ended(7, &["a".to_owned(), "b".to_owned()]).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            log.account_ended(8, 1_000).await.unwrap();
            let all = log.since(None).await.unwrap();
            let summary: Vec<_> = all
                .iter()
                .map(|row| (row.user_id, row.session.as_deref(), row.not_before))
                .collect();
            assert_eq!(summary[2], (8, None, Some(1_000)));
            let mut first_two = summary[..2].to_vec();
            first_two.sort();
            assert_eq!(first_two, [(7, Some("a"), None), (7, Some("b"), None)]);
            // The database's clock, not this process's: a point in time from a row.
            let last = all[2].revoked_at;
            assert!(all[0].revoked_at < last, "{all:?}");
            let later = log.since(Some(last)).await.unwrap();
            assert_eq!(later.len(), 1);
            assert_eq!(log.prune(last).await.unwrap(), 2);
            assert_eq!(log.since(None).await.unwrap().len(), 1);
        })
        .await;
    }
}
