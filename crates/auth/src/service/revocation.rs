//! Ending sessions and accounts on every node: the flows end them on this node's
//! authenticator at once and write them to the revocation log
//! ([`crate::revocations`]); [`Auth::follow_revocations`] reads what the other nodes
//! wrote.
//!
//! Every node keeps its place in the log by the database's clock and rereads a short
//! overlap each time, because on PostgreSQL a row can become visible a moment after a
//! later one. Rows are applied idempotently, so rereading costs a little work and nothing
//! else.

use std::time::Duration;

use chrono::NaiveDateTime;

use super::{Auth, AuthError, unix_now};

/// How far back each read of the log starts before the latest row already read.
const OVERLAP: chrono::Duration = chrono::Duration::seconds(2);

/// How many reads of the log between two prunings.
const PRUNE_EVERY: u32 = 60;

impl Auth {
    /// Ends `sessions` of `user_id`: refused here at once, and on every node that follows
    /// the log.
    pub(super) async fn sessions_ended(
        &self,
        user_id: i64,
        sessions: &[String],
    ) -> Result<(), AuthError> {
        sessions.iter().for_each(|session| self.inner.revoked.insert(session));
        self.inner.revocations.sessions_ended(user_id, sessions).await?;
        Ok(())
    }

    /// Ends every session of `user_id`, past and in flight: its access tokens issued until
    /// now are refused here at once, and on every node that follows the log.
    pub(super) async fn account_ended(&self, user_id: i64) -> Result<(), AuthError> {
        let now = unix_now();
        self.inner.revoked.insert_account(user_id, now);
        self.inner.revocations.account_ended(user_id, now).await?;
        Ok(())
    }

    /// Reads the rows of the revocation log written since the last read (all of them the
    /// first time) into this node's authenticator; how many were read.
    ///
    /// # Errors
    ///
    /// [`AuthError::Internal`] when the database fails.
    pub async fn sync_revocations(&self) -> Result<usize, AuthError> {
        let inner = &self.inner;
        let from = inner.log_position.lock().map_or(None, |position| *position);
        let rows = inner.revocations.since(from.map(|from| from - OVERLAP)).await?;
        rows.iter().for_each(|row| inner.revoked.apply(row));
        if let Some(last) = rows.last().map(|row| row.revoked_at)
            && let Ok(mut position) = inner.log_position.lock()
        {
            *position = Some(position.map_or(last, |position| position.max(last)));
        }
        Ok(rows.len())
    }

    /// Deletes the rows of the revocation log that no current token can need: older than
    /// an access token's lifetime before the latest row read.
    async fn prune_revocations(&self) -> Result<usize, AuthError> {
        let inner = &self.inner;
        let Some(latest) = inner.log_position.lock().map_or(None, |position| *position) else {
            return Ok(0);
        };
        let lifetime = i64::try_from(inner.config.access_ttl_secs).unwrap_or(i64::MAX);
        let lifetime = chrono::Duration::try_seconds(lifetime).unwrap_or(chrono::Duration::MAX);
        let before: Option<NaiveDateTime> =
            latest.checked_sub_signed(lifetime).and_then(|t| t.checked_sub_signed(OVERLAP * 30));
        match before {
            Some(before) => Ok(inner.revocations.prune(before).await?),
            None => Ok(0),
        }
    }

    /// Follows the revocation log every `auth.revocation_poll_ms`, and now and then prunes
    /// it and the failed-login counts nobody needs any more, until the future is dropped. A failed read is logged and tried again at the
    /// next tick; nothing is skipped, since the next read starts where the last good one
    /// ended.
    pub async fn follow_revocations(self) {
        let period = Duration::from_millis(self.inner.config.revocation_poll_ms.max(10));
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        for tick in 0u32.. {
            ticks.tick().await;
            match self.sync_revocations().await {
                Ok(_) if failing => {
                    failing = false;
                    tracing::info!("the revocation log is readable again");
                }
                Ok(_) => {}
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(%error, "cannot read the revocation log; retrying");
                }
                Err(_) => {}
            }
            if tick % PRUNE_EVERY == PRUNE_EVERY - 1 {
                if let Err(error) = self.prune_revocations().await {
                    tracing::debug!(%error, "revocation log not pruned");
                }
                let quiet = super::now() - self.inner.config.lockout.forget_after();
                if let Err(error) = self.inner.failures.prune(quiet).await {
                    tracing::debug!(%error, "failed-login counts not pruned");
                }
            }
        }
    }
}
