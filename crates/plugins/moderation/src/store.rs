//! [`Moderation`]: mutes and bans, moderators' deletions, and the record of every action,
//! in the database.
//!
//! Sanctions live in `moderation_sanctions` (one mute and one ban at most per user), so
//! they hold on every node and across restarts; a mute past its end is ignored wherever
//! it is read, so it stops applying by itself with nothing to sweep. What a user may do is
//! asked on every message, so each node keeps a user's sanctions in memory for
//! `cache_secs`: another node's change reaches it within that time, and this node's own
//! changes at once (they drop the user's entry, and a read that raced with a change does
//! not keep what it read; see [`Moderation::standing`]).
//!
//! Every change is written in one transaction with its row in `moderation_actions`, so a
//! sanction never exists without its record. A moderator's deletion goes through the
//! engine ([`Engine::delete_message`] as [`Actor::moderator`]) and is recorded after it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{NaiveDateTime, Utc};
use diesel::result::Error as DieselError;
use diesel::{
    BoolExpressionMethods, ExpressionMethods, OptionalExtension, QueryDsl, SelectableHelper,
};
use diesel_async::{AsyncConnection, RunQueryDsl};
use xcore_db::{Database, with_conn};
use xcore_messaging::{Actor, ConversationId, Engine, Message, Refusal, UserId};

use crate::error::{Error, Result};
use crate::model::{
    Action, ActionFilter, ActionKind, ActionRow, Entry, Sanction, SanctionKind, SanctionRow,
    actions, sanctions,
};

/// How many users' sanctions a node keeps in memory at most.
const MAX_CACHED: u64 = 100_000;
/// What one user may not do now, as stored (a mute may have ended since).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Standing {
    banned: bool,
    /// `Some(None)`: muted until lifted; `Some(Some(end))`: muted until `end`.
    mute: Option<Option<NaiveDateTime>>,
}

impl Standing {
    /// Why a message from this user is refused at `now`, if it is.
    fn refusal(&self, now: NaiveDateTime) -> Option<Refusal> {
        if self.banned {
            return Some(Refusal::new("banned", "you are banned from sending messages"));
        }
        match self.mute? {
            None => Some(Refusal::new("muted", "you are muted until a moderator lifts it")),
            Some(end) if end > now => {
                let wait = (end - now).to_std().unwrap_or(Duration::ZERO);
                let until = end.and_utc().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                Some(
                    Refusal::new("muted", format!("you are muted until {until}")).retry_after(wait),
                )
            }
            Some(_) => None,
        }
    }
}

/// Mutes, bans, deletions and their record. Clone it freely: clones share everything.
#[derive(Clone)]
pub struct Moderation {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    /// Each user's sanctions, for `cache_secs`; `None` when it is 0.
    standings: Option<moka::sync::Cache<UserId, Standing>>,
    /// Moved by every change this node makes: a read that saw it move drops what it read.
    epoch: AtomicU64,
}

impl std::fmt::Debug for Moderation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Moderation").finish_non_exhaustive()
    }
}

impl Moderation {
    /// Moderation over `db`, whose moderation tables must exist (apply
    /// [`MIGRATIONS`](crate::MIGRATIONS); the server does at startup), keeping each
    /// user's sanctions in memory for `cache` (none when zero).
    pub fn new(db: Database, cache: Duration) -> Self {
        let standings = (!cache.is_zero()).then(|| {
            moka::sync::Cache::builder().max_capacity(MAX_CACHED).time_to_live(cache).build()
        });
        Self { inner: Arc::new(Inner { db, standings, epoch: AtomicU64::new(0) }) }
    }

    /// Why a message or an edit from `user` is refused now (`banned`, or `muted` with
    /// the time until the mute ends), if it is.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the sanctions cannot be read.
    pub async fn refusal(&self, user: &UserId) -> Result<Option<Refusal>> {
        Ok(self.standing(user).await?.refusal(Utc::now().naive_utc()))
    }

    /// `user`'s sanctions, from this node's memory when they were read recently.
    async fn standing(&self, user: &UserId) -> Result<Standing> {
        let cache = self.inner.standings.as_ref();
        if let Some(standing) = cache.and_then(|cache| cache.get(user)) {
            return Ok(standing);
        }
        let epoch = AtomicU64::load(&self.inner.epoch, Ordering::SeqCst);
        let mut conn = self.inner.db.get().await?;
        let rows: Vec<(String, Option<NaiveDateTime>)> = with_conn!(conn, c => {
            sanctions::table
                .filter(sanctions::user_id.eq(user.as_str()))
                .select((sanctions::kind, sanctions::ends_at))
                .load(c)
                .await
        })?;
        let mut standing = Standing::default();
        for (kind, end) in rows {
            if kind == SanctionKind::Ban.as_str() {
                standing.banned = true;
            } else {
                standing.mute = Some(end);
            }
        }
        if let Some(cache) = cache {
            cache.insert(user.clone(), standing.clone());
            // A change made meanwhile may have dropped the entry before it was inserted:
            // drop it again (see `changed`).
            if AtomicU64::load(&self.inner.epoch, Ordering::SeqCst) != epoch {
                cache.invalidate(user);
            }
        }
        Ok(standing)
    }

    /// Makes this node see a change to `user`'s sanctions at once.
    fn changed(&self, user: &UserId) {
        self.inner.epoch.fetch_add(1, Ordering::SeqCst);
        if let Some(cache) = &self.inner.standings {
            cache.invalidate(user);
        }
    }

    /// Mutes `user` for `duration` (until lifted when `None`), replacing a mute they
    /// have; recorded as `by`'s `mute`.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for a zero or unrepresentable duration; [`Error::Store`].
    pub async fn mute(
        &self,
        by: &UserId,
        user: &UserId,
        duration: Option<Duration>,
        reason: Option<&str>,
    ) -> Result<Sanction> {
        let now = Utc::now().naive_utc();
        let end = match duration {
            None => None,
            Some(duration) if duration.is_zero() => {
                return Err(Error::invalid("duration", "must be longer than zero"));
            }
            Some(duration) => Some(
                chrono::Duration::from_std(duration)
                    .ok()
                    .and_then(|duration| now.checked_add_signed(duration))
                    .ok_or_else(|| Error::invalid("duration", "is too long"))?,
            ),
        };
        self.impose(SanctionKind::Mute, by, user, end, reason).await
    }

    /// Bans `user` until a moderator lifts it; recorded as `by`'s `ban`. Banning a banned
    /// user records it again, with the new reason.
    ///
    /// # Errors
    ///
    /// [`Error::Store`].
    pub async fn ban(&self, by: &UserId, user: &UserId, reason: Option<&str>) -> Result<Sanction> {
        self.impose(SanctionKind::Ban, by, user, None, reason).await
    }

    /// Lifts `user`'s mute: `false` when they had none in force (nothing is recorded
    /// then).
    ///
    /// # Errors
    ///
    /// [`Error::Store`].
    pub async fn unmute(&self, by: &UserId, user: &UserId, reason: Option<&str>) -> Result<bool> {
        self.lift(SanctionKind::Mute, by, user, reason).await
    }

    /// Lifts `user`'s ban: `false` when they had none (nothing is recorded then).
    ///
    /// # Errors
    ///
    /// [`Error::Store`].
    pub async fn unban(&self, by: &UserId, user: &UserId, reason: Option<&str>) -> Result<bool> {
        self.lift(SanctionKind::Ban, by, user, reason).await
    }

    async fn impose(
        &self,
        kind: SanctionKind,
        by: &UserId,
        user: &UserId,
        end: Option<NaiveDateTime>,
        reason: Option<&str>,
    ) -> Result<Sanction> {
        let reason = tidy(reason);
        let action = match kind {
            SanctionKind::Mute => ActionKind::Mute,
            SanctionKind::Ban => ActionKind::Ban,
        };
        let mut entry = Entry::new(by.as_str(), action, user).reason(reason.clone());
        entry.ends_at = end;
        let row = (
            sanctions::user_id.eq(user.as_str()),
            sanctions::kind.eq(kind.as_str()),
            sanctions::ends_at.eq(end),
            sanctions::reason.eq(reason.clone()),
            sanctions::actor.eq(by.as_str()),
            sanctions::created_at.eq(entry.created_at),
        );
        let mut conn = self.inner.db.get().await?;
        let stored: SanctionRow = with_conn!(conn, c => {
            c.transaction::<_, DieselError, _>(async |c| {
                let stored = diesel::insert_into(sanctions::table)
                    .values(row)
                    .on_conflict((sanctions::user_id, sanctions::kind))
                    .do_update()
                    .set((
                        sanctions::ends_at.eq(end),
                        sanctions::reason.eq(reason.clone()),
                        sanctions::actor.eq(by.as_str()),
                        sanctions::created_at.eq(entry.created_at),
                    ))
                    .returning(SanctionRow::as_returning())
                    .get_result(c)
                    .await?;
                diesel::insert_into(actions::table).values(entry.clone()).execute(c).await?;
                Ok(stored)
            })
            .await
        })?;
        self.changed(user);
        Ok(stored.into_sanction())
    }

    async fn lift(
        &self,
        kind: SanctionKind,
        by: &UserId,
        user: &UserId,
        reason: Option<&str>,
    ) -> Result<bool> {
        let action = match kind {
            SanctionKind::Mute => ActionKind::Unmute,
            SanctionKind::Ban => ActionKind::Unban,
        };
        let entry = Entry::new(by.as_str(), action, user).reason(tidy(reason));
        let now = entry.created_at;
        let mut conn = self.inner.db.get().await?;
        let lifted = with_conn!(conn, c => {
            c.transaction::<_, DieselError, _>(async |c| {
                let removed: Option<Option<NaiveDateTime>> =
                    diesel::delete(sanctions::table.find((user.as_str(), kind.as_str())))
                        .returning(sanctions::ends_at)
                        .get_result(c)
                        .await
                        .optional()?;
                // A mute past its end was no longer in force: removing it is tidying up.
                let in_force = removed.is_some_and(|end| end.is_none_or(|end| end > now));
                if in_force {
                    diesel::insert_into(actions::table).values(entry.clone()).execute(c).await?;
                }
                Ok(in_force)
            })
            .await
        })?;
        self.changed(user);
        Ok(lifted)
    }

    /// The mutes or bans in force, the most recent first.
    ///
    /// # Errors
    ///
    /// [`Error::Store`].
    pub async fn sanctions(&self, kind: SanctionKind) -> Result<Vec<Sanction>> {
        let now = Utc::now().naive_utc();
        let mut conn = self.inner.db.get().await?;
        let rows: Vec<SanctionRow> = with_conn!(conn, c => {
            sanctions::table
                .filter(sanctions::kind.eq(kind.as_str()))
                .filter(sanctions::ends_at.is_null().or(sanctions::ends_at.gt(now)))
                .order((sanctions::created_at.desc(), sanctions::user_id.asc()))
                .select(SanctionRow::as_select())
                .load(c)
                .await
        })?;
        Ok(rows.into_iter().map(SanctionRow::into_sanction).collect())
    }

    /// Deletes message `seq` of `conversation` as moderator `by` (through the engine, so
    /// members are notified as for any deletion), recorded as a `delete` of its sender's
    /// message. Deleting a deleted message changes and records nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Messaging`] for an unknown conversation or message or a failing engine;
    /// [`Error::Unrecorded`] when the message was deleted but the record failed.
    pub async fn delete_message(
        &self,
        engine: &Engine,
        by: &UserId,
        conversation: ConversationId,
        seq: i64,
        reason: Option<&str>,
    ) -> Result<Message> {
        let actor = Actor::moderator(by.clone());
        let original = engine.message(&actor, conversation, seq).await?;
        if original.deleted {
            return Ok(original);
        }
        let deleted = engine.delete_message(&actor, conversation, seq).await?;
        let entry = Entry::new(by.as_str(), ActionKind::Delete, &original.sender_id)
            .at(conversation, Some(seq))
            .reason(tidy(reason));
        if let Err(error) = self.record(entry).await {
            tracing::error!(plugin = "moderation", moderator = %by, conversation, seq, %error,
                "a moderator deleted a message but the action could not be recorded");
            return Err(match error {
                Error::Store(error) => Error::Unrecorded(error),
                other => other,
            });
        }
        Ok(deleted)
    }

    /// Writes `entry` to the record.
    pub(crate) async fn record(&self, entry: Entry) -> Result<()> {
        let mut conn = self.inner.db.get().await?;
        with_conn!(conn, c => {
            diesel::insert_into(actions::table).values(entry).execute(c).await
        })?;
        Ok(())
    }

    /// Recorded actions, newest first, as `filter` says.
    ///
    /// # Errors
    ///
    /// [`Error::Store`].
    pub async fn actions(&self, filter: &ActionFilter) -> Result<Vec<Action>> {
        let mut conn = self.inner.db.get().await?;
        let rows: Vec<ActionRow> = with_conn!(conn, c => {
            let mut query = actions::table.select(ActionRow::as_select()).into_boxed();
            if let Some(user) = &filter.user {
                query = query.filter(actions::target.eq(user.as_str()));
            }
            if let Some(before) = filter.before {
                query = query.filter(actions::id.lt(before));
            }
            query.order(actions::id.desc()).limit(i64::from(filter.limit)).load(c).await
        })?;
        Ok(rows.into_iter().map(Action::try_from).collect::<Result<_, _>>()?)
    }
}

/// A reason as stored: trimmed, and none when blank.
fn tidy(reason: Option<&str>) -> Option<String> {
    reason.map(str::trim).filter(|reason| !reason.is_empty()).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standing_refuses_as_long_as_it_applies() {
        let now = Utc::now().naive_utc();
        let later = now + chrono::Duration::minutes(5);
        let refusal = |standing: Standing| standing.refusal(now);
        assert_eq!(refusal(Standing::default()), None);
        let banned = refusal(Standing { banned: true, mute: Some(None) }).unwrap();
        assert_eq!((banned.code.as_str(), banned.retry_after), ("banned", None));
        let muted = refusal(Standing { banned: false, mute: Some(Some(later)) }).unwrap();
        assert_eq!(muted.code, "muted");
        assert_eq!(muted.retry_after, Some(Duration::from_secs(300)));
        let forever = refusal(Standing { banned: false, mute: Some(None) }).unwrap();
        assert_eq!((forever.code.as_str(), forever.retry_after), ("muted", None));
        assert_eq!(refusal(Standing { banned: false, mute: Some(Some(now)) }), None, "ended");
    }

    #[test]
    fn reasons_are_trimmed_and_blank_is_none() {
        assert_eq!(tidy(Some("  spam ")), Some("spam".to_owned()));
        assert_eq!(tidy(Some(" \n")), None);
        assert_eq!(tidy(None), None);
    }
}
