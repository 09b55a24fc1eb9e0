//! The `message_rate_limiter` plugin: the original engine's anti-spam extension, as a
//! `before_message` hook that refuses a message sent faster than the configured rates.
//!
//! Two limits, each of `messages` per `per_secs` seconds, and each can be turned off with
//! `enabled = false`:
//! - `per_user`: what one user sends, wherever they send it (default 20 every 10 s);
//! - `per_group`: what one group receives from everyone together (default 200 every
//!   10 s). The lobby, where every user is, counts as a group; a direct conversation
//!   does not (its two users have their own limits).
//!
//! A refused message gets `Refusal { code: "rate_limited", retry_after }`, where
//! `retry_after` is the exact time until one more message fits (the API answers 429 with
//! `Retry-After`). The count is exact, with the generic cell rate algorithm (see
//! [`limiter`]): a burst of `messages` at once, then one every `per_secs / messages`
//! seconds, with no window edge to game.
//!
//! Edits count as messages: an edit changes what every member sees and notifies them, so
//! a flood of edits is a flood. A message refused by a later hook or a failing store has
//! still been counted: the limit is on attempts that reach it. Users listed in `exempt`
//! (a bot such as the welcome plugin's sender) are never limited.
//!
//! Counting is per node, in memory: behind a load balancer spreading a user's messages
//! over `n` nodes, they can send up to `n` times the rate, and a restart forgets the
//! counts. Memory is bounded: each limit tracks at most `max_tracked` keys (the least
//! recently seen go first, getting a fresh budget), and a key idle for one period is
//! dropped, its state then being a fresh key's anyway.

pub mod limiter;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use xcore_core::config::{Problems, Section};
use xcore_core::{AppBuilder, Plugin, PluginError, PluginMeta, register_plugin};
use xcore_messaging::{Decision, HookSet, MessagingExt as _};

pub use limiter::Limiter;

/// Where the hook runs among `before_message` hooks: before those of the default order 0,
/// so that a flood is refused before other hooks spend work on it.
pub const ORDER: i32 = -1000;

/// The longest period a limit may have: longer budgets are quotas (see the `quotas`
/// plugin), which survive restarts.
pub const MAX_PERIOD_SECS: u64 = 86_400;

/// The plugin. Registered below with [`register_plugin!`]; the server links this crate
/// with `use xcore_plugin_message_rate_limiter as _;`.
#[derive(Debug, Clone, Copy)]
pub struct MessageRateLimiter;

register_plugin!(MessageRateLimiter);

/// `[plugins.message_rate_limiter]` in `xcore.toml`, or
/// `XCORE_PLUGINS__MESSAGE_RATE_LIMITER__<KEY>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimiterConfig {
    /// What one user may send (default `{ messages = 20, per_secs = 10 }`).
    pub per_user: Rate,
    /// What one group, the lobby included, may receive from all its members together
    /// (default `{ messages = 200, per_secs = 10 }`).
    pub per_group: Rate,
    /// Ids of users never limited (default none).
    pub exempt: Vec<String>,
    /// Keys (users, groups) each limit tracks at most (default 100,000).
    pub max_tracked: u64,
}

impl Default for RateLimiterConfig {
    fn default() -> Self {
        Self {
            per_user: Rate::per(20, 10),
            per_group: Rate::per(200, 10),
            exempt: Vec::new(),
            max_tracked: 100_000,
        }
    }
}

fn enabled() -> bool {
    true
}

/// `messages` every `per_secs` seconds, with a burst of `messages`; `enabled = false`
/// turns the limit off (a `messages` of 0 is refused rather than read as "off").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Whether the limit applies (default `true`).
    #[serde(default = "enabled")]
    pub enabled: bool,
    #[serde(default)]
    pub messages: u32,
    #[serde(default)]
    pub per_secs: u64,
}

impl Rate {
    /// `messages` every `per_secs` seconds.
    pub const fn per(messages: u32, per_secs: u64) -> Self {
        Self { enabled: true, messages, per_secs }
    }

    /// No limit.
    pub const fn off() -> Self {
        Self { enabled: false, messages: 0, per_secs: 0 }
    }

    /// What is wrong with the rate's values, if anything.
    fn problem(&self) -> Option<String> {
        if !self.enabled {
            None
        } else if self.messages == 0 {
            Some("`messages` must be at least 1 (`enabled = false` turns the limit off)".into())
        } else if self.per_secs == 0 {
            Some("`per_secs` must be at least 1".into())
        } else if self.per_secs > MAX_PERIOD_SECS {
            Some(format!(
                "`per_secs` must be at most {MAX_PERIOD_SECS} (a day); longer budgets are quotas"
            ))
        } else {
            None
        }
    }
}

impl Section for RateLimiterConfig {
    fn validate(&self, problems: &mut Problems) {
        for (key, rate) in [("per_user", &self.per_user), ("per_group", &self.per_group)] {
            if let Some(problem) = rate.problem() {
                problems.add(key, problem);
            }
        }
        if self.exempt.iter().any(|user| user.trim().is_empty()) {
            problems.add("exempt", "user ids must not be blank");
        }
        problems.check(self.max_tracked > 0, "max_tracked", "must be at least 1");
    }
}

/// Adds the rate-limiting hook, named `message_rate_limiter`, to `hooks` (nothing when
/// both limits are off): what the plugin does in the server, and how an application
/// embedding the engine limits its users (`engine.install(set)`).
pub fn register(hooks: &mut HookSet, config: &RateLimiterConfig) {
    let Some(limiter) = Limiter::new(config) else { return };
    let limiter = Arc::new(limiter);
    hooks.before_message(ORDER, "message_rate_limiter", move |outgoing, _| {
        let refusal = limiter.check(&outgoing);
        async move {
            Ok(match refusal {
                Some(refusal) => Decision::Refuse(refusal),
                None => Decision::Accept(outgoing.draft),
            })
        }
    });
}

impl Plugin for MessageRateLimiter {
    fn meta(&self) -> PluginMeta {
        PluginMeta {
            version: env!("CARGO_PKG_VERSION"),
            description: env!("CARGO_PKG_DESCRIPTION"),
            author: "xcore developers",
            dependencies: &["messaging"],
            ..PluginMeta::new("message_rate_limiter")
        }
    }

    fn build(&self, app: &mut AppBuilder) -> Result<(), PluginError> {
        let config: RateLimiterConfig = app.config()?;
        register(app.messaging_hooks(), &config);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
