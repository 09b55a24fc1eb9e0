//! The `welcome` plugin: greets a user in a direct message when they come online, the
//! original engine's `welcome` extension (`welcome_message`, sent on connect) done so that
//! a newcomer is greeted once, not on every reconnection.
//!
//! On `on_connect` with `came_online` (the user had no device connected on this node),
//! the sender user (`sender_id`, registered on first use as `sender_name`) sends
//! `welcome_message`, with `{username}` replaced by the user's username, in their direct
//! conversation.
//!
//! With `once` (the default), a user is greeted the first time they ever come online and
//! never again. Who has been greeted is kept in the `welcome_greetings` table: the greeting
//! is recorded before it is sent (an insert that only one node can win), so two nodes
//! seeing the same newcomer at once greet them once, and the record survives restarts. A
//! greeting that fails to be sent is un-recorded, so the next time the user comes online
//! tries again; a node that stops between recording and sending loses that one greeting
//! rather than ever sending two. The table is filled at installation with every user seen
//! online before: they are not newcomers. The record was chosen over looking for an
//! earlier message from the sender in the conversation, which a deleted group or a sender
//! who also chats cannot answer reliably, and which two nodes can both find empty.
//!
//! Without `once`, every coming online is greeted (per node: presence is counted by each
//! node, so a user online on two nodes is greeted by each).
//!
//! The greeting goes through the `before_message` hooks like any message: a rate limiter
//! may delay it (the plugin waits for a short `retry_after` and tries again) and a quota
//! may refuse it (then it is un-recorded). Give the sender an exemption in such plugins
//! (`exempt = ["welcome"]`) when many users join at once.

mod error;
mod greeter;

use serde::{Deserialize, Serialize};
use xcore_core::config::{Problems, Section};
use xcore_core::{AppBuilder, Plugin, PluginError, PluginMeta, register_plugin};
use xcore_db::{MigrationSet, MigrationsExt as _};
use xcore_messaging::{Engine, HookSet, MessagingExt as _};

pub use error::{Error, Result};
pub use greeter::PLACEHOLDER;

/// The plugin. Registered below with [`register_plugin!`]; the server links this crate
/// with `use xcore_plugin_welcome as _;`.
#[derive(Debug, Clone, Copy)]
pub struct Welcome;

register_plugin!(Welcome);

/// `[plugins.welcome]` in `xcore.toml`, or `XCORE_PLUGINS__WELCOME__<KEY>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WelcomeConfig {
    /// The greeting; `{username}` is replaced by the greeted user's username (default
    /// `"Welcome, {username}!"`).
    pub welcome_message: String,
    /// The id of the user the greeting comes from, registered if missing (default
    /// `"welcome"`).
    pub sender_id: String,
    /// The username the sender is registered with, and set to when it differs (default
    /// `"Welcome"`).
    pub sender_name: String,
    /// Greet a user only the first time they ever come online (default `true`); `false`
    /// greets them every time they come online.
    pub once: bool,
}

impl Default for WelcomeConfig {
    fn default() -> Self {
        Self {
            welcome_message: "Welcome, {username}!".to_owned(),
            sender_id: "welcome".to_owned(),
            sender_name: "Welcome".to_owned(),
            once: true,
        }
    }
}

impl Section for WelcomeConfig {
    fn validate(&self, problems: &mut Problems) {
        if self.welcome_message.trim().is_empty() {
            problems.add("welcome_message", "must not be blank");
        }
        for unknown in greeter::unknown_placeholders(&self.welcome_message) {
            problems.add(
                "welcome_message",
                format!("`{{{unknown}}}` is not a placeholder; only `{PLACEHOLDER}` is replaced"),
            );
        }
        // The messaging engine's rules for user ids and usernames.
        check_name(problems, "sender_id", &self.sender_id, 128);
        check_name(problems, "sender_name", &self.sender_name, 64);
    }
}

/// `value` has 1 to `max` characters, not all blank, and no control character.
fn check_name(problems: &mut Problems, key: &str, value: &str, max: usize) {
    let count = value.chars().count();
    if count == 0 || count > max || value.chars().all(char::is_whitespace) {
        problems.add(key, format!("must be 1 to {max} characters, not all blank"));
    } else if value.chars().any(char::is_control) {
        problems.add(key, "must not contain control characters");
    }
}

/// Who has been greeted, for both backends. It reads `messaging_users` once, when it is
/// created: apply it after the messaging migrations (the server does, since this plugin
/// depends on the messaging module).
pub static MIGRATIONS: MigrationSet = MigrationSet {
    name: "welcome",
    sqlite: diesel_migrations::embed_migrations!("migrations/sqlite"),
    postgres: diesel_migrations::embed_migrations!("migrations/postgres"),
};

/// Adds the greeting hook to `hooks`: what the plugin does in the server, and how an
/// application embedding the engine greets its users
/// (`let mut set = HookSet::default(); register(&mut set, config); engine.install(set);`,
/// after applying [`MIGRATIONS`]).
pub fn register(hooks: &mut HookSet, config: WelcomeConfig) {
    greeter::Greeter::new(config).register(hooks);
}

impl Plugin for Welcome {
    fn meta(&self) -> PluginMeta {
        PluginMeta {
            version: env!("CARGO_PKG_VERSION"),
            description: env!("CARGO_PKG_DESCRIPTION"),
            author: "xcore developers",
            dependencies: &["database", "messaging"],
            ..PluginMeta::new("welcome")
        }
    }

    fn build(&self, app: &mut AppBuilder) -> Result<(), PluginError> {
        let config: WelcomeConfig = app.config()?;
        // A greeting the engine would refuse as too long would fail for every user: say so
        // now rather than on each coming online.
        let max = app.require::<Engine>()?.config().max_message_chars;
        let longest = greeter::longest_greeting(&config.welcome_message);
        if longest > max {
            return Err(app.config_error(
                "welcome_message",
                format!(
                    "can reach {longest} characters with the longest username, over \
                     `messaging.max_message_chars` ({max})"
                ),
            ));
        }
        app.add_migrations(&MIGRATIONS);
        register(app.messaging_hooks(), config);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
