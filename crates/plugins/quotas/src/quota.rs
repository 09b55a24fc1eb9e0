//! The hooks: the check before a message is stored, and the usage kept from what was
//! committed.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::Utc;
use xcore_db::Database;
use xcore_messaging::{
    Actor, Decision, Engine, Error as MessagingError, Event, EventKind, HookSet, Outgoing, Refusal,
    UserId,
};

use crate::store::{self, draft_size, stored_size};
use crate::{ORDER, QuotasConfig, Result};

/// The refusal code of a message over the daily quota.
pub const DAILY_CODE: &str = "quota_exceeded";

/// The refusal code of a message or edit over the storage quota.
pub const STORAGE_CODE: &str = "storage_quota_exceeded";

/// The quotas of one engine.
#[derive(Debug)]
pub(crate) struct Quotas {
    messages_per_day: Option<i64>,
    stored_bytes: Option<i64>,
    exempt: HashSet<UserId>,
    /// The last day this node pruned the daily counts before (0: not yet).
    pruned: AtomicI64,
}

impl Quotas {
    pub(crate) fn new(config: &QuotasConfig) -> Self {
        Self {
            messages_per_day: config.messages_per_day.limit(),
            stored_bytes: config.stored_bytes.limit(),
            exempt: config.exempt.iter().map(UserId::from).collect(),
            pruned: AtomicI64::new(i64::MIN),
        }
    }

    /// Adds the hooks to `hooks`: the check when a quota is on, and the usage always, so
    /// that turning the storage quota on later starts from what is stored.
    pub(crate) fn register(self, hooks: &mut HookSet) {
        let quotas = Arc::new(self);
        if quotas.messages_per_day.is_some() || quotas.stored_bytes.is_some() {
            let check = Arc::clone(&quotas);
            hooks.before_message(ORDER, "quotas", move |outgoing, engine| {
                let quotas = Arc::clone(&check);
                async move { quotas.check(outgoing, &engine).await.map_err(Into::into) }
            });
        }
        for kind in [EventKind::Message, EventKind::MessageEdited, EventKind::MessageDeleted] {
            hooks.on(kind, "quotas", |event, engine| async move {
                account(&event, engine.database()).await.map_err(Into::into)
            });
        }
    }

    /// Refuses `outgoing` over a quota; counts it against the daily quota otherwise.
    async fn check(&self, outgoing: Outgoing, engine: &Engine) -> Result<Decision> {
        if self.exempt.contains(&outgoing.sender) {
            return Ok(Decision::Accept(outgoing.draft));
        }
        let db = engine.database();
        // Storage first: it only reads, so a message it refuses costs no daily count.
        if let Some(max) = self.stored_bytes
            && let Some(refusal) = storage_refusal(&outgoing, engine, max).await?
        {
            return Ok(Decision::Refuse(refusal));
        }
        if let (Some(max), None) = (self.messages_per_day, outgoing.edit_of) {
            let (day, until_midnight) = store::utc_day(Utc::now());
            self.prune_before(db, day);
            if !store::reserve(db, &outgoing.sender, day, max).await? {
                let refusal = Refusal::new(
                    DAILY_CODE,
                    format!(
                        "you have sent your {max} messages for today; more can be sent after \
                         midnight UTC"
                    ),
                )
                .retry_after(until_midnight);
                return Ok(Decision::Refuse(refusal));
            }
        }
        Ok(Decision::Accept(outgoing.draft))
    }

    /// Deletes past days' counts, once a day on each node, off the sender's path.
    fn prune_before(&self, db: &Database, day: i64) {
        if self.pruned.fetch_max(day, Ordering::Relaxed) >= day {
            return;
        }
        let db = db.clone();
        tokio::spawn(async move {
            match store::prune(&db, day).await {
                Ok(rows) => tracing::debug!(plugin = "quotas", rows, "past daily counts pruned"),
                Err(error) => tracing::warn!(plugin = "quotas", %error,
                    "past daily counts were not pruned; the next day tries again"),
            }
        });
    }
}

/// The refusal of `outgoing` when it would take its owner's stored bytes over `max`: a
/// new message, or an edit that grows one. An edit counts against the message's sender,
/// whoever edits it.
async fn storage_refusal(
    outgoing: &Outgoing,
    engine: &Engine,
    max: i64,
) -> Result<Option<Refusal>> {
    let size = draft_size(&outgoing.draft);
    let (owner, growth) = match outgoing.edit_of {
        None => (outgoing.sender.clone(), size),
        Some(seq) => {
            // Read as a moderator: the engine has already checked the editor's rights.
            let reader = Actor::moderator(outgoing.sender.clone());
            match engine.message(&reader, outgoing.conversation, seq).await {
                Ok(current) => (current.sender_id.clone(), size - stored_size(&current)),
                // Gone meanwhile: the engine refuses the edit itself.
                Err(
                    MessagingError::UnknownMessage { .. } | MessagingError::UnknownConversation(_),
                ) => {
                    return Ok(None);
                }
                Err(error) => return Err(error.into()),
            }
        }
    };
    if growth <= 0 {
        return Ok(None);
    }
    let used = store::stored_bytes(engine.database(), &owner).await?;
    if used.saturating_add(growth) <= max {
        return Ok(None);
    }
    let whose = if owner == outgoing.sender { "your".to_owned() } else { format!("`{owner}`'s") };
    Ok(Some(Refusal::new(
        STORAGE_CODE,
        format!(
            "this would take {whose} stored messages to {} bytes, over the quota of {max} \
             bytes; delete or shorten messages to make room",
            used.saturating_add(growth)
        ),
    )))
}

/// Applies a committed change to its sender's stored bytes.
async fn account(event: &Event, db: &Database) -> Result<()> {
    let (user, delta) = match event {
        Event::Message { message, .. } => (&message.sender_id, stored_size(message)),
        Event::MessageEdited { message, previous, .. }
        | Event::MessageDeleted { message, previous, .. } => {
            (&message.sender_id, stored_size(message) - stored_size(previous))
        }
        _ => return Ok(()),
    };
    store::add_bytes(db, user, delta).await
}
