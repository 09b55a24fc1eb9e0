//! How a `tiered` cache keeps its in-process tier coherent across nodes: the
//! [`Invalidation`] published on every write and delete, and [`Coherence`], the
//! subscription that applies the other nodes' invalidations.
//!
//! Messages on a Redis channel can be missed while the subscription is down, so the local
//! tier is only trusted while it is up: until then reads and writes bypass it, and it is
//! emptied each time the subscription comes back or goes away.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::epoch::Epochs;
use crate::local::Local;
use crate::remote::Remote;
use crate::{Error, Result};

/// What an invalidation covers.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Scope {
    Key(String),
    Prefix(String),
}

impl Scope {
    /// Moves the counters this change concerns.
    pub(crate) fn record(&self, epochs: &Epochs) {
        match self {
            Self::Key(key) => epochs.key_changed(key),
            Self::Prefix(_) => epochs.all_changed(),
        }
    }

    pub(crate) fn apply(&self, local: &Local) {
        match self {
            Self::Key(key) => local.remove(key),
            Self::Prefix(prefix) if prefix.is_empty() => local.clear(),
            Self::Prefix(prefix) => local.remove_prefix(prefix),
        }
    }
}

/// The message published on every write and delete of a `tiered` cache.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Invalidation {
    /// The node that wrote, which ignores its own messages.
    pub(crate) node: String,
    #[serde(flatten)]
    pub(crate) scope: Scope,
}

/// A `tiered` cache's subscription to the invalidations of the other nodes.
pub(crate) struct Coherence {
    pub(crate) node: String,
    pub(crate) channel: String,
    /// Whether the subscription is up; the local tier is bypassed while it is not.
    listening: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Coherence {
    /// Subscribes in the background; `epochs` are the cache's, moved by every invalidation
    /// received and every change of subscription.
    pub(crate) fn start(local: Local, remote: &Remote, epochs: Arc<Epochs>) -> Self {
        let node = node_id();
        let channel = remote.channel();
        let listening = Arc::new(AtomicBool::new(false));
        let subscriber = Subscriber {
            client: remote.client().clone(),
            timeout: remote.timeout(),
            channel: channel.clone(),
            node: node.clone(),
            local,
            listening: listening.clone(),
            epochs,
        };
        let task = tokio::spawn(subscriber.run());
        Self { node, channel, listening, task }
    }

    pub(crate) fn listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }
}

impl Drop for Coherence {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The task behind [`Coherence`].
struct Subscriber {
    client: redis::Client,
    timeout: Duration,
    channel: String,
    node: String,
    local: Local,
    listening: Arc<AtomicBool>,
    epochs: Arc<Epochs>,
}

impl Subscriber {
    const FIRST_RETRY: Duration = Duration::from_millis(100);
    const LAST_RETRY: Duration = Duration::from_secs(5);

    async fn run(self) {
        let mut retry = Self::FIRST_RETRY;
        let mut failures = 0u32;
        loop {
            match self.subscribe().await {
                Ok(pubsub) => {
                    if failures > 0 {
                        tracing::info!("cache: invalidation channel back; local tier emptied");
                    }
                    retry = Self::FIRST_RETRY;
                    failures = 0;
                    self.listen(pubsub).await;
                    tracing::warn!("cache: invalidation channel lost; bypassing the local tier");
                }
                Err(error) => {
                    if failures == 0 {
                        tracing::warn!(%error, "cache: cannot subscribe to invalidations; bypassing the local tier");
                    }
                    failures = failures.saturating_add(1);
                }
            }
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(Self::LAST_RETRY);
        }
    }

    async fn subscribe(&self) -> Result<redis::aio::PubSub> {
        let subscribe = async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(&self.channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(self.timeout * 4, subscribe).await {
            Ok(result) => result.map_err(Error::Unavailable),
            Err(_) => Err(Error::Unavailable(redis::RedisError::from(std::io::Error::from(
                std::io::ErrorKind::TimedOut,
            )))),
        }
    }

    /// Applies invalidations until the subscription ends.
    async fn listen(&self, pubsub: redis::aio::PubSub) {
        // Writes may have been missed while nobody listened.
        self.local.clear();
        self.epochs.all_changed();
        self.listening.store(true, Ordering::Release);
        let mut messages = pubsub.into_on_message();
        while let Some(message) = messages.next().await {
            let payload: String = match message.get_payload() {
                Ok(payload) => payload,
                Err(error) => {
                    tracing::debug!(%error, "cache: unreadable invalidation ignored");
                    continue;
                }
            };
            match serde_json::from_str::<Invalidation>(&payload) {
                Ok(invalidation) if invalidation.node != self.node => {
                    invalidation.scope.record(&self.epochs);
                    invalidation.scope.apply(&self.local);
                }
                Ok(_) => {}
                Err(error) => tracing::debug!(%error, "cache: malformed invalidation ignored"),
            }
        }
        self.listening.store(false, Ordering::Release);
        self.epochs.all_changed();
        self.local.clear();
    }
}

/// A random identifier of this cache instance, telling its own invalidations apart.
fn node_id() -> String {
    use std::hash::BuildHasher;
    static COUNT: AtomicU64 = AtomicU64::new(0);
    // `RandomState` is seeded from the operating system's randomness.
    let seed = std::collections::hash_map::RandomState::new()
        .hash_one((std::process::id(), COUNT.fetch_add(1, Ordering::Relaxed)));
    format!("{seed:016x}")
}
