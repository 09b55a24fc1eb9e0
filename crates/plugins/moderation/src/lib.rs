//! The `moderation` plugin: the original engine's `messages_management` and
//! `users_management` extensions, done so that they hold across nodes and restarts and
//! leave a record.
//!
//! - A word list (`words`): a message or an edit containing a listed word, whole and in
//!   any case ([`filter`]), is refused with `word_refused`, or has the word masked
//!   (`action = "mask"`, each character replaced by `mask`).
//! - Mutes and bans: a muted user's messages and edits are refused with `muted` (and the
//!   time until the mute ends, as `retry_after`, when it has an end), a banned user's
//!   with `banned`. They are rows in the database ([`store`]), read by every node; a node
//!   keeps what it read for `cache_secs`, and sees its own changes at once.
//! - Deletions: a moderator deletes any message, through the engine.
//! - A record of every action (`moderation_actions`): mutes, bans, their lifting and
//!   deletions by moderators, refusals and masks by the word filter (`word_filter`).
//!
//! Both checks are one `before_message` hook ([`hook`]), at [`ORDER`]: after the rate
//! limiter (-1000), which turns a flood away before anything else is spent on it, and
//! before hooks of the default order 0, which then see only masked text. The moderators'
//! API ([`http`]) is mounted at `/plugins/moderation`, for callers holding
//! `messaging.moderate`: the permission that already lets them edit and delete any
//! message through `/messaging`.
//!
//! On a bare engine, outside the server: apply [`MIGRATIONS`], build a [`Moderation`]
//! over the engine's database, [`register`] the hook into a `HookSet` and install it.

pub mod filter;
pub mod http;

mod error;
mod hook;
mod model;
mod store;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use xcore_core::config::{Problems, Section};
use xcore_core::{AppBuilder, Plugin, PluginError, PluginMeta, register_plugin};
use xcore_db::{MigrationSet, MigrationsExt as _};
use xcore_messaging::{Engine, HookSet, MessagingExt as _};
use xcore_middleware::Gate;

pub use error::{Error, Result};
pub use filter::WordFilter;
pub use model::{Action, ActionFilter, ActionKind, Sanction, SanctionKind, WORD_FILTER};
pub use store::Moderation;

/// Where the hook runs among `before_message` hooks: after the message rate limiter's
/// -1000, before the default order 0.
pub const ORDER: i32 = -500;

/// The longest `cache_secs`: how stale another node's view of a sanction may be.
pub const MAX_CACHE_SECS: u64 = 300;

/// The plugin. Registered below with [`register_plugin!`]; the server links this crate
/// with `use xcore_plugin_moderation as _;`.
#[derive(Debug, Clone, Copy)]
pub struct ModerationPlugin;

register_plugin!(ModerationPlugin);

/// `[plugins.moderation]` in `xcore.toml`, or `XCORE_PLUGINS__MODERATION__<KEY>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModerationConfig {
    /// Words or phrases messages may not contain (default none).
    pub words: Vec<String>,
    /// What a message containing one gets (default `refuse`).
    pub action: WordAction,
    /// The character that replaces each character of a masked word (default `*`).
    pub mask: char,
    /// How long a node keeps a user's sanctions in memory (default 2 s; 0 reads them on
    /// every message). Another node's change reaches this one within that time.
    pub cache_secs: u64,
}

impl Default for ModerationConfig {
    fn default() -> Self {
        Self { words: Vec::new(), action: WordAction::Refuse, mask: '*', cache_secs: 2 }
    }
}

/// What the word filter does with a message containing a listed word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WordAction {
    /// Refuse it with `word_refused`.
    Refuse,
    /// Store it with each listed word masked.
    Mask,
}

impl Section for ModerationConfig {
    fn validate(&self, problems: &mut Problems) {
        for word in &self.words {
            if word.trim().is_empty() {
                problems.add("words", "words must not be blank");
            } else if word.chars().any(char::is_control) {
                problems.add("words", format!("{word:?} contains control characters"));
            }
        }
        if let Err(error) = WordFilter::new(&self.words, self.mask) {
            problems.add("words", format!("the list cannot be compiled: {error}"));
        }
        problems.check(
            !self.mask.is_whitespace() && !self.mask.is_control(),
            "mask",
            "must be a visible character",
        );
        problems.check(
            self.cache_secs <= MAX_CACHE_SECS,
            "cache_secs",
            "must be at most 300 (five minutes)",
        );
    }
}

/// The moderation tables (sanctions and the record of actions), for both backends.
pub static MIGRATIONS: MigrationSet = MigrationSet {
    name: "moderation",
    sqlite: diesel_migrations::embed_migrations!("migrations/sqlite"),
    postgres: diesel_migrations::embed_migrations!("migrations/postgres"),
};

/// Adds the moderation hook, named `moderation`, to `hooks`: what the plugin does in the
/// server, and how an application embedding the engine moderates it:
///
/// ```no_run
/// # async fn demo(engine: xcore_messaging::Engine) -> Result<(), Box<dyn std::error::Error>> {
/// use xcore_plugin_moderation::{MIGRATIONS, Moderation, ModerationConfig, register};
///
/// engine.database().migrate(&[&MIGRATIONS]).await?;
/// let config = ModerationConfig { words: vec!["darn".into()], ..ModerationConfig::default() };
/// let moderation = Moderation::new(engine.database().clone(), std::time::Duration::from_secs(2));
/// let mut hooks = xcore_messaging::HookSet::default();
/// register(&mut hooks, &moderation, &config)?;
/// engine.install(hooks);
/// moderation.ban(&"admin".into(), &"troll".into(), Some("spam")).await?;
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// [`Error::Invalid`] when the word list cannot be compiled (the config's checks report
/// it first in the server).
pub fn register(
    hooks: &mut HookSet,
    moderation: &Moderation,
    config: &ModerationConfig,
) -> Result<()> {
    let filter = WordFilter::new(&config.words, config.mask)
        .map_err(|error| Error::invalid("words", format!("cannot be compiled: {error}")))?;
    hook::register(hooks, moderation.clone(), filter, config.action);
    Ok(())
}

impl Plugin for ModerationPlugin {
    fn meta(&self) -> PluginMeta {
        PluginMeta {
            version: env!("CARGO_PKG_VERSION"),
            description: env!("CARGO_PKG_DESCRIPTION"),
            author: "xcore developers",
            // The gate checks the moderators' permission; the engine deletes and runs the
            // hook; the database keeps the sanctions.
            dependencies: &["auth", "database", "messaging"],
            ..PluginMeta::new("moderation")
        }
    }

    fn build(&self, app: &mut AppBuilder) -> Result<(), PluginError> {
        let config: ModerationConfig = app.config()?;
        app.require::<Gate>()?;
        let engine = app.require::<Engine>()?.clone();
        let moderation =
            Moderation::new(engine.database().clone(), Duration::from_secs(config.cache_secs));
        register(app.messaging_hooks(), &moderation, &config)
            .map_err(|error| app.config_error("words", error.to_string()))?;
        app.add_migrations(&MIGRATIONS);
        app.insert_resource(moderation.clone());
        app.routes(http::router(engine, moderation));
        Ok(())
    }
}

#[cfg(test)]
mod tests;
