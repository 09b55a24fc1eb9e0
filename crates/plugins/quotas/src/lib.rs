//! The `quotas` plugin: the quotas the original engine promised, as a `before_message`
//! hook that refuses what would go over them and notification hooks that keep the usage.
//!
//! Two quotas per user, each turned off with `enabled = false`:
//! - `messages_per_day`: messages sent per UTC day (default 10,000). Over it, a message is
//!   refused with `Refusal { code: "quota_exceeded", retry_after }`, `retry_after` being
//!   the time until the next midnight UTC (the API answers 429 with `Retry-After`). Edits
//!   are not messages and do not count. The count is reserved in the database before the
//!   message is stored, with one conditional upsert that only counts while under the
//!   limit, so concurrent senders on any number of nodes never get more than the limit
//!   through, and a restart forgets nothing. A message refused later (by a hook of a
//!   higher order, or a failing store) has still been counted: the quota is on attempts
//!   that pass it. Each node deletes past days' counts on its first message of a day.
//! - `stored_bytes`: what a user's stored messages take (default 100 MiB), a message
//!   taking the UTF-8 bytes of its body plus those of its attachment's JSON text; deleted
//!   messages take nothing. A message, or an edit that grows one, that would take its
//!   sender over the quota is refused with `storage_quota_exceeded` and no `retry_after`
//!   (403): waiting does not help, deleting or shortening messages does. An edit counts
//!   against the message's sender, whoever edits it; shrinking edits and deletions are
//!   never refused.
//!
//! The storage usage is kept in the database from the committed messages, edits and
//! deletions (`on_message`, `on_message_edited`, `on_message_deleted`, which carry the
//! version a change replaced), so it is exact for what is stored. The check reads it
//! before each message, so concurrent sends in flight, not yet committed, are not in it:
//! a user sending many messages at once can overshoot the quota by at most what they had
//! in flight. The usage is kept whether the storage quota is on or not, so turning it on
//! later starts from the truth. Messages stored before the plugin was installed are
//! counted once, by its migration. What the usage cannot see: changes made while the
//! plugin was disabled or by another program, and events a notification hook lost (see
//! `on_error`); [`recount`] starts it again from the stored messages.
//!
//! The check runs at [`ORDER`], after the rate limiter: a flood is refused there before it
//! costs a database round trip here. Like every `before_message` hook, a check that fails
//! (the database is down) or runs past `messaging.before_hook_timeout_ms` lets the
//! message through and fires `on_error`: the quotas fail open rather than stop the chat.
//! Users listed in `exempt` (a bot such as the welcome plugin's sender) are never refused,
//! though their usage is kept.

mod error;
mod quota;
mod store;

use serde::{Deserialize, Serialize};
use xcore_core::config::{Problems, Section};
use xcore_core::{AppBuilder, Plugin, PluginError, PluginMeta, register_plugin};
use xcore_db::{Database, MigrationSet, MigrationsExt as _};
use xcore_messaging::{HookSet, MessagingExt as _, UserId};

pub use error::{Error, Result};
pub use quota::{DAILY_CODE, STORAGE_CODE};
pub use store::{message_size, utc_day};

/// Where the check runs among `before_message` hooks: after the rate limiter (-1000), so
/// a flood is refused in memory before it costs database work here, and before the hooks
/// of the default order 0, which then see only messages within the quotas.
pub const ORDER: i32 = -800;

/// The plugin. Registered below with [`register_plugin!`]; the server links this crate
/// with `use xcore_plugin_quotas as _;`.
#[derive(Debug, Clone, Copy)]
pub struct Quotas;

register_plugin!(Quotas);

/// `[plugins.quotas]` in `xcore.toml`, or `XCORE_PLUGINS__QUOTAS__<KEY>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotasConfig {
    /// Messages one user may send per UTC day (default `{ max = 10000 }`).
    pub messages_per_day: Limit,
    /// Bytes one user's stored messages may take (default `{ max = 104857600 }`, 100 MiB).
    pub stored_bytes: Limit,
    /// Ids of users never refused (default none).
    pub exempt: Vec<String>,
}

impl Default for QuotasConfig {
    fn default() -> Self {
        Self {
            messages_per_day: Limit::of(10_000),
            stored_bytes: Limit::of(100 * 1024 * 1024),
            exempt: Vec::new(),
        }
    }
}

fn enabled() -> bool {
    true
}

/// A quota of `max`; `enabled = false` turns it off (a `max` of 0 is refused rather than
/// read as "off").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// Whether the quota applies (default `true`).
    #[serde(default = "enabled")]
    pub enabled: bool,
    #[serde(default)]
    pub max: u64,
}

impl Limit {
    /// A quota of `max`.
    pub const fn of(max: u64) -> Self {
        Self { enabled: true, max }
    }

    /// No quota.
    pub const fn off() -> Self {
        Self { enabled: false, max: 0 }
    }

    /// The limit as the database counts it, when on.
    pub(crate) fn limit(&self) -> Option<i64> {
        self.enabled.then(|| i64::try_from(self.max).unwrap_or(i64::MAX))
    }

    /// What is wrong with the quota's values, if anything.
    fn problem(&self) -> Option<String> {
        if !self.enabled {
            None
        } else if self.max == 0 {
            Some("`max` must be at least 1 (`enabled = false` turns the quota off)".into())
        } else if i64::try_from(self.max).is_err() {
            Some(format!("`max` must be at most {}", i64::MAX))
        } else {
            None
        }
    }
}

impl Section for QuotasConfig {
    fn validate(&self, problems: &mut Problems) {
        for (key, limit) in
            [("messages_per_day", &self.messages_per_day), ("stored_bytes", &self.stored_bytes)]
        {
            if let Some(problem) = limit.problem() {
                problems.add(key, problem);
            }
        }
        if self.exempt.iter().any(|user| user.trim().is_empty()) {
            problems.add("exempt", "user ids must not be blank");
        }
    }
}

/// The quota tables, for both backends. Creating them counts the messages already stored
/// in `messaging_messages`: apply it after the messaging migrations (the server does,
/// since this plugin depends on the messaging module).
pub static MIGRATIONS: MigrationSet = MigrationSet {
    name: "quotas",
    sqlite: diesel_migrations::embed_migrations!("migrations/sqlite"),
    postgres: diesel_migrations::embed_migrations!("migrations/postgres"),
};

/// Adds the quota hooks to `hooks`: what the plugin does in the server, and how an
/// application embedding the engine limits its users
/// (`let mut set = HookSet::default(); register(&mut set, &config); engine.install(set);`,
/// after applying [`MIGRATIONS`] to the engine's database).
pub fn register(hooks: &mut HookSet, config: &QuotasConfig) {
    quota::Quotas::new(config).register(hooks);
}

/// What a user has used of their quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Messages counted today (UTC).
    pub messages_today: i64,
    /// Bytes their stored messages take, as committed messages, edits and deletions have
    /// been accounted so far.
    pub stored_bytes: i64,
}

/// What `user` has used of their quotas, as stored in `database`.
///
/// # Errors
///
/// [`Error::Store`] when the quota tables cannot be read.
pub async fn usage(database: &Database, user: &UserId) -> Result<Usage> {
    let (day, _) = utc_day(chrono::Utc::now());
    Ok(Usage {
        messages_today: store::messages_on(database, user, day).await?,
        stored_bytes: store::stored_bytes(database, user).await?,
    })
}

/// Counts every user's stored bytes again from the stored messages, replacing the usage
/// kept so far. Run it while no message is sent, edited or deleted (no node serving):
/// a change committed meanwhile could be counted twice or not at all.
///
/// # Errors
///
/// [`Error::Store`] when the tables cannot be read or written; nothing is changed then.
pub async fn recount(database: &Database) -> Result<()> {
    store::recount(database).await
}

impl Plugin for Quotas {
    fn meta(&self) -> PluginMeta {
        PluginMeta {
            version: env!("CARGO_PKG_VERSION"),
            description: env!("CARGO_PKG_DESCRIPTION"),
            author: "xcore developers",
            dependencies: &["database", "messaging"],
            ..PluginMeta::new("quotas")
        }
    }

    fn build(&self, app: &mut AppBuilder) -> Result<(), PluginError> {
        let config: QuotasConfig = app.config()?;
        app.add_migrations(&MIGRATIONS);
        register(app.messaging_hooks(), &config);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
