//! The `[messaging]` section.

use serde::{Deserialize, Serialize};
use xcore_core::config::{Problems, Section};

/// The `[messaging]` section: the engine's limits and how it commits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MessagingConfig {
    /// The longest message body, in characters (default 4000).
    pub max_message_chars: usize,
    /// The largest attachment description, in bytes of JSON (default 4096).
    pub max_attachment_bytes: usize,
    /// The largest page of history one call returns (default 200).
    pub max_page: u32,
    /// Commit concurrent sends together, one transaction per batch (default on). Off,
    /// every message is a transaction of its own.
    pub group_commit: bool,
    /// The most messages one group commit holds (default 512).
    pub max_batch: usize,
    /// How many batches commit at once: 0 chooses (one on SQLite, which has a single
    /// writer; four on PostgreSQL). A conversation is always committed by the same one,
    /// so its messages are stored in the order they were sent.
    pub commit_writers: usize,
    /// How long one `before_message` hook may take before it is skipped and `on_error`
    /// fires (default 200 ms).
    pub before_hook_timeout_ms: u64,
    /// How long one notification hook (`on_message`, `on_connect`, …) may take per event
    /// (default 5000 ms).
    pub hook_timeout_ms: u64,
    /// How many events a notification hook may lag behind before the oldest are dropped
    /// for it (reported through `on_error`; default 10,000).
    pub hook_queue: usize,
    /// How long a user stays online after `POST /messaging/presence` without another
    /// (default 60 s).
    pub presence_ttl_secs: u64,
    /// How nodes relay live events to each other's sockets: `local` (one node, the
    /// default), `redis` or `nats`.
    pub broker: crate::gateway::BrokerKind,
    /// The broker's address (`redis://host:6379`, `nats://host:4222`); required unless
    /// `broker` is `local`.
    pub broker_url: Option<String>,
    /// The Redis channel or NATS subject the nodes share (default `xcore.messaging`):
    /// deployments sharing a broker need different ones.
    pub broker_channel: String,
    /// The WebSocket gateway at `/ws` (`[messaging.gateway]`).
    pub gateway: crate::gateway::GatewayConfig,
}

impl Default for MessagingConfig {
    fn default() -> Self {
        Self {
            max_message_chars: 4000,
            max_attachment_bytes: 4096,
            max_page: 200,
            group_commit: true,
            max_batch: 512,
            commit_writers: 0,
            before_hook_timeout_ms: 200,
            hook_timeout_ms: 5000,
            hook_queue: 10_000,
            presence_ttl_secs: 60,
            broker: crate::gateway::BrokerKind::Local,
            broker_url: None,
            broker_channel: "xcore.messaging".to_owned(),
            gateway: crate::gateway::GatewayConfig::default(),
        }
    }
}

impl Section for MessagingConfig {
    fn validate(&self, problems: &mut Problems) {
        for (key, value) in [
            ("max_message_chars", self.max_message_chars),
            ("max_attachment_bytes", self.max_attachment_bytes),
            ("max_batch", self.max_batch),
            ("hook_queue", self.hook_queue),
        ] {
            problems.check(value > 0, key, "must be at least 1");
        }
        problems.check(self.max_page > 0, "max_page", "must be at least 1");
        problems.check(self.commit_writers <= 64, "commit_writers", "must be at most 64");
        for (key, value) in [
            ("before_hook_timeout_ms", self.before_hook_timeout_ms),
            ("hook_timeout_ms", self.hook_timeout_ms),
            ("presence_ttl_secs", self.presence_ttl_secs),
        ] {
            problems.check(value > 0, key, "must be at least 1");
        }
        if self.broker != crate::gateway::BrokerKind::Local
            && self.broker_url.as_deref().is_none_or(|url| url.trim().is_empty())
        {
            problems.add("broker_url", "is required when `broker` is `redis` or `nats`");
        }
        problems.check(
            !self.broker_channel.trim().is_empty()
                && !self.broker_channel.contains(char::is_whitespace),
            "broker_channel",
            "must be a name without spaces",
        );
        self.gateway.validate(problems);
    }
}
