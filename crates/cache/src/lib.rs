//! xcore's cache: typed values in process memory, in Redis, or in both.
//!
//! A [`Cache`] stores any `serde` type under a string key, with a time to live per entry
//! (a configured default otherwise). Three backends share one API, chosen by
//! [`CacheConfig::backend`]:
//!
//! - `memory`: a size-bounded moka cache in this process. Values stay in their own type,
//!   so a hit costs a hash lookup and a clone.
//! - `redis`: a Redis server shared by every node, values encoded as JSON under
//!   `<namespace>:<key>`.
//! - `tiered`: memory in front of Redis. Every write and delete is published on a Redis
//!   channel and every node drops its local copy, so nodes never serve each other's stale
//!   values. While the channel is down a node bypasses its local tier, and it empties the
//!   local tier when the channel comes back (messages may have been missed meanwhile).
//!
//! [`Cache::get_or_insert_with`] runs its loader once for concurrent misses of a key (single
//! flight); a loader's error reaches every waiter and is not cached. When Redis is
//! unreachable, reads report a miss (callers fall back to their source), writes fail with
//! [`Error::Unavailable`], [`Cache::status`] reports the outage, and the connection comes
//! back by itself. Any tokio application can use it; in the server it is a module like any
//! plugin ([`CachePlugin`]), configured by `[cache]`.

mod config;
mod epoch;
mod error;
mod flight;
mod local;
mod plugin;
mod remote;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use config::{BackendKind, CacheConfig};
pub use error::{Error, LoadError, Result};
pub use plugin::CachePlugin;

use epoch::{Epochs, Mark};
use flight::Flights;
use local::{Entry, Local};
use remote::Remote;

/// Longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// What a cache can hold: owned, cloneable, and (for Redis) serializable as JSON.
pub trait Value: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}

impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> Value for T {}

/// A handle to a cache; clones share it.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    kind: BackendKind,
    /// The in-process tier (`memory` and `tiered`).
    local: Option<Local>,
    /// The Redis tier (`redis` and `tiered`).
    remote: Option<Remote>,
    /// What keeps the local tier coherent across nodes (`tiered`).
    coherence: Option<Coherence>,
    default_ttl: Option<Duration>,
    flights: Flights,
    metrics: Metrics,
    /// Moved by every write and delete, here or (for `tiered`) on another node: a value
    /// read or loaded while its key's counter moved may be outdated, so it is returned but
    /// not kept.
    epochs: Arc<Epochs>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").field("backend", &self.inner.kind).finish_non_exhaustive()
    }
}

/// The counters on `/metrics`, by backend.
struct Metrics {
    hits: metrics::Counter,
    misses: metrics::Counter,
    loads: metrics::Counter,
    load_errors: metrics::Counter,
}

impl Metrics {
    fn new(backend: &'static str) -> Self {
        metrics::describe_counter!("cache_hits_total", "Cache reads that found a value.");
        metrics::describe_counter!("cache_misses_total", "Cache reads that found nothing.");
        metrics::describe_counter!("cache_loads_total", "Loaders run after a miss.");
        metrics::describe_counter!("cache_load_errors_total", "Loaders that failed.");
        metrics::describe_counter!(
            "cache_evictions_total",
            "Entries evicted from the in-process tier to stay within max_bytes."
        );
        Self {
            hits: metrics::counter!("cache_hits_total", "backend" => backend),
            misses: metrics::counter!("cache_misses_total", "backend" => backend),
            loads: metrics::counter!("cache_loads_total", "backend" => backend),
            load_errors: metrics::counter!("cache_load_errors_total", "backend" => backend),
        }
    }
}

/// Whether the cache can do its work, for readiness probes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    pub backend: BackendKind,
    /// False while Redis is unreachable or the invalidation channel is down.
    pub healthy: bool,
    /// `ok`, or what is wrong.
    pub detail: String,
}

impl Cache {
    /// A cache as `config` describes. Nothing is connected yet: with Redis away the cache
    /// works degraded (reads miss, writes fail) and connects when Redis answers.
    ///
    /// # Errors
    ///
    /// [`Error::MissingUrl`] or [`Error::InvalidUrl`] for a Redis backend without a usable
    /// URL, [`Error::InvalidNamespace`], [`Error::Unavailable`] when the Redis client
    /// cannot be set up, and [`Error::NoRuntime`]: the `redis` and `tiered` backends must
    /// be created inside a Tokio runtime.
    pub fn new(config: &CacheConfig) -> Result<Self> {
        check_namespace(&config.namespace)?;
        let kind = config.backend;
        let backend = kind.as_str();
        let local = (kind != BackendKind::Redis).then(|| {
            Local::new(
                config.max_bytes,
                metrics::counter!("cache_evictions_total", "backend" => backend),
            )
        });
        let remote = if kind == BackendKind::Memory {
            None
        } else {
            if tokio::runtime::Handle::try_current().is_err() {
                return Err(Error::NoRuntime(backend));
            }
            let timeout = Duration::from_millis(config.timeout_ms.max(1));
            Some(Remote::new(config.redis_client()?, &config.namespace, timeout)?)
        };
        let epochs = Arc::new(Epochs::default());
        let coherence = match (&local, &remote) {
            (Some(local), Some(remote)) => {
                Some(Coherence::start(local.clone(), remote, epochs.clone()))
            }
            _ => None,
        };
        let inner = Inner {
            kind,
            local,
            remote,
            coherence,
            default_ttl: config.default_ttl(),
            flights: Flights::default(),
            metrics: Metrics::new(backend),
            epochs,
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The backend in use.
    pub fn backend(&self) -> BackendKind {
        self.inner.kind
    }

    /// A view of this cache whose keys all start with `<name>:`, cleared as a whole by
    /// [`Namespace::clear`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidNamespace`] unless `name` is 1 to 64 letters, digits, `_`, `-`, `.`.
    pub fn namespace(&self, name: &str) -> Result<Namespace> {
        check_namespace(name)?;
        Ok(Namespace { cache: self.clone(), prefix: Arc::from(format!("{name}:")) })
    }

    /// The value under `key`, or `None` when there is none (or Redis is unreachable).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`]; [`Error::WrongType`] or [`Error::Decode`] when the stored
    /// value is not a `T`.
    pub async fn get<T: Value>(&self, key: &str) -> Result<Option<T>> {
        check_key(key)?;
        let found = self.lookup(key).await?;
        let counter =
            if found.is_some() { &self.inner.metrics.hits } else { &self.inner.metrics.misses };
        counter.increment(1);
        Ok(found)
    }

    /// Stores `value` under `key` for the default time to live.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`], [`Error::Encode`], and [`Error::Unavailable`] when Redis is
    /// unreachable (the value is then not stored anywhere).
    pub async fn set<T: Value>(&self, key: &str, value: T) -> Result<()> {
        check_key(key)?;
        self.store(key, value, self.inner.default_ttl, None).await
    }

    /// Stores `value` under `key` for `ttl`.
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set), and [`Error::ZeroTtl`].
    pub async fn set_with_ttl<T: Value>(&self, key: &str, value: T, ttl: Duration) -> Result<()> {
        check_key(key)?;
        if ttl.is_zero() {
            return Err(Error::ZeroTtl);
        }
        self.store(key, value, Some(ttl), None).await
    }

    /// Removes the value under `key`, on every node.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`]; [`Error::Unavailable`] when Redis is unreachable.
    pub async fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        self.invalidate(Scope::Key(key.to_owned())).await
    }

    /// Removes every value whose key starts with `prefix`, on every node; an empty prefix
    /// empties the cache (within its configured namespace). With Redis this walks the
    /// whole database (`SCAN`): fine for maintenance and small databases, not for a
    /// request path on a large shared one, where deleting known keys is the way.
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] when Redis is unreachable.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<()> {
        self.invalidate(Scope::Prefix(prefix.to_owned())).await
    }

    /// The value under `key`; on a miss, runs `loader`, stores what it returns for the
    /// default time to live and returns it. Concurrent misses of one key run `loader`
    /// once and all get its result. A failed load is returned to every waiter and not
    /// stored; a value that cannot be stored (Redis away) is still returned, and so is a
    /// value loaded while this cache saw a write or a delete (which may have made it
    /// outdated), without being stored.
    ///
    /// # Errors
    ///
    /// [`Error::Load`] with the loader's error, and the errors of [`get`](Self::get).
    pub async fn get_or_insert_with<T, F, Fut, E>(&self, key: &str, loader: F) -> Result<T>
    where
        T: Value,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if let Some(value) = self.get(key).await? {
            return Ok(value);
        }
        let load = || async {
            // A load that finished just before this one may have stored the value.
            if let Ok(Some(value)) = self.lookup::<T>(key).await {
                return Ok(value);
            }
            self.inner.metrics.loads.increment(1);
            let since = self.inner.epochs.mark(key);
            match loader().await {
                Ok(value) => {
                    let ttl = self.inner.default_ttl;
                    if let Err(error) = self.store(key, value.clone(), ttl, Some(since)).await {
                        tracing::debug!(key, %error, "cache: loaded value not stored");
                    }
                    Ok(value)
                }
                Err(error) => {
                    self.inner.metrics.load_errors.increment(1);
                    Err(LoadError::from(error.into()))
                }
            }
        };
        self.inner
            .flights
            .run(key, load)
            .await
            .map_err(|source| Error::Load { key: key.to_owned(), source })
    }

    /// Whether the backend is reachable (a Redis `PING`, bounded by the configured
    /// timeout) and, for `tiered`, whether invalidations are being received.
    pub async fn status(&self) -> Status {
        let backend = self.inner.kind;
        let Some(remote) = &self.inner.remote else {
            return Status { backend, healthy: true, detail: "ok".to_owned() };
        };
        let ping = tokio::time::timeout(remote.timeout(), remote.ping()).await;
        let problem = match ping {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error.to_string()),
            Err(_) => Some("Redis did not answer in time".to_owned()),
        };
        let deaf = self.inner.coherence.as_ref().is_some_and(|c| !c.listening());
        match (problem, deaf) {
            (None, false) => Status { backend, healthy: true, detail: "ok".to_owned() },
            (None, true) => Status {
                backend,
                healthy: false,
                detail: "degraded: not subscribed to invalidations yet; serving from Redis"
                    .to_owned(),
            },
            (Some(problem), _) => {
                Status { backend, healthy: false, detail: format!("degraded: {problem}") }
            }
        }
    }

    /// The local tier, when it may be used: always for `memory`; for `tiered` only while
    /// invalidations are being received.
    fn usable_local(&self) -> Option<&Local> {
        let local = self.inner.local.as_ref()?;
        match &self.inner.coherence {
            Some(coherence) if !coherence.listening() => None,
            _ => Some(local),
        }
    }

    /// The value under `key`, without counting a hit or a miss.
    async fn lookup<T: Value>(&self, key: &str) -> Result<Option<T>> {
        if let Some(value) =
            self.usable_local().map(|local| local.get::<T>(key)).transpose()?.flatten()
        {
            return Ok(Some(value));
        }
        let Some(remote) = &self.inner.remote else { return Ok(None) };
        let mark = self.inner.epochs.mark(key);
        let keep = self.usable_local().is_some();
        let Ok(Some((bytes, ttl))) = remote.get(key, keep).await else { return Ok(None) };
        let value: T = serde_json::from_slice(&bytes).map_err(|source| Error::Decode {
            key: key.to_owned(),
            requested: std::any::type_name::<T>(),
            source,
        })?;
        if let Some(local) = self.usable_local() {
            // Kept only if no invalidation arrived meanwhile: it could concern this value.
            if !self.inner.epochs.changed_since(key, mark) {
                local.insert(key.to_owned(), Entry::new(value.clone(), bytes.len(), ttl));
            }
        }
        Ok(Some(value))
    }

    /// Stores `value`: a write, or with `since` the fill of a miss, which is dropped if the
    /// key was written or deleted since `since` (and, not being a write, moves no counter).
    async fn store<T: Value>(
        &self,
        key: &str,
        value: T,
        ttl: Option<Duration>,
        since: Option<Mark>,
    ) -> Result<()> {
        let encoded = serde_json::to_vec(&value)
            .map_err(|source| Error::Encode { key: key.to_owned(), source })?;
        let epochs = &self.inner.epochs;
        let mark = epochs.mark(key);
        if since.is_some_and(|since| since != mark) {
            tracing::debug!(key, "cache: value loaded during a write not stored");
            return Ok(());
        }
        if let Some(remote) = &self.inner.remote {
            if let Err(error) = remote.set(key, &encoded, ttl).await {
                if let Some(local) = &self.inner.local {
                    local.remove(key);
                }
                return Err(error);
            }
            self.publish(remote, Scope::Key(key.to_owned())).await;
        }
        if let Some(local) = self.usable_local() {
            if epochs.changed_since(key, mark) {
                local.remove(key);
            } else {
                local.insert(key.to_owned(), Entry::new(value, encoded.len(), ttl));
            }
        }
        if since.is_none() {
            epochs.key_changed(key);
        }
        Ok(())
    }

    async fn invalidate(&self, scope: Scope) -> Result<()> {
        scope.record(&self.inner.epochs);
        if let Some(local) = &self.inner.local {
            scope.apply(local);
        }
        if let Some(remote) = &self.inner.remote {
            match &scope {
                Scope::Key(key) => remote.delete(key).await?,
                Scope::Prefix(prefix) => remote.delete_prefix(prefix).await?,
            }
            self.publish(remote, scope).await;
        }
        Ok(())
    }

    /// Tells the other nodes to drop their copies. A failed publish needs no retry: Redis
    /// is then unreachable for the other nodes' subscriptions too, and a node empties its
    /// local tier when its subscription comes back.
    async fn publish(&self, remote: &Remote, scope: Scope) {
        let Some(coherence) = &self.inner.coherence else { return };
        let message = Invalidation { node: coherence.node.clone(), scope };
        let Ok(message) = serde_json::to_string(&message) else { return };
        if let Err(error) = remote.publish(&coherence.channel, &message).await {
            tracing::debug!(%error, "cache: invalidation not published");
        }
    }
}

/// A view of a [`Cache`] whose keys start with `<name>:`.
#[derive(Debug, Clone)]
pub struct Namespace {
    cache: Cache,
    prefix: Arc<str>,
}

impl Namespace {
    fn key(&self, key: &str) -> String {
        let mut full = String::with_capacity(self.prefix.len() + key.len());
        full.push_str(&self.prefix);
        full.push_str(key);
        full
    }

    /// See [`Cache::get`].
    ///
    /// # Errors
    ///
    /// As [`Cache::get`].
    pub async fn get<T: Value>(&self, key: &str) -> Result<Option<T>> {
        self.cache.get(&self.key(key)).await
    }

    /// See [`Cache::set`].
    ///
    /// # Errors
    ///
    /// As [`Cache::set`].
    pub async fn set<T: Value>(&self, key: &str, value: T) -> Result<()> {
        self.cache.set(&self.key(key), value).await
    }

    /// See [`Cache::set_with_ttl`].
    ///
    /// # Errors
    ///
    /// As [`Cache::set_with_ttl`].
    pub async fn set_with_ttl<T: Value>(&self, key: &str, value: T, ttl: Duration) -> Result<()> {
        self.cache.set_with_ttl(&self.key(key), value, ttl).await
    }

    /// See [`Cache::delete`].
    ///
    /// # Errors
    ///
    /// As [`Cache::delete`].
    pub async fn delete(&self, key: &str) -> Result<()> {
        self.cache.delete(&self.key(key)).await
    }

    /// See [`Cache::get_or_insert_with`].
    ///
    /// # Errors
    ///
    /// As [`Cache::get_or_insert_with`].
    pub async fn get_or_insert_with<T, F, Fut, E>(&self, key: &str, loader: F) -> Result<T>
    where
        T: Value,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.cache.get_or_insert_with(&self.key(key), loader).await
    }

    /// Removes every value of this namespace, on every node.
    ///
    /// # Errors
    ///
    /// As [`Cache::delete_prefix`].
    pub async fn clear(&self) -> Result<()> {
        self.cache.delete_prefix(&self.prefix).await
    }
}

/// What an invalidation covers.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Scope {
    Key(String),
    Prefix(String),
}

impl Scope {
    /// Moves the counters this change concerns.
    fn record(&self, epochs: &Epochs) {
        match self {
            Self::Key(key) => epochs.key_changed(key),
            Self::Prefix(_) => epochs.all_changed(),
        }
    }

    fn apply(&self, local: &Local) {
        match self {
            Self::Key(key) => local.remove(key),
            Self::Prefix(prefix) if prefix.is_empty() => local.clear(),
            Self::Prefix(prefix) => local.remove_prefix(prefix),
        }
    }
}

/// The message published on every write and delete of a `tiered` cache.
#[derive(Debug, Serialize, Deserialize)]
struct Invalidation {
    /// The node that wrote, which ignores its own messages.
    node: String,
    #[serde(flatten)]
    scope: Scope,
}

/// A `tiered` cache's subscription to the invalidations of the other nodes.
struct Coherence {
    node: String,
    channel: String,
    /// Whether the subscription is up; the local tier is bypassed while it is not.
    listening: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Coherence {
    /// Subscribes in the background; `epochs` are the cache's, moved by every invalidation
    /// received and every change of subscription.
    fn start(local: Local, remote: &Remote, epochs: Arc<Epochs>) -> Self {
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

    fn listening(&self) -> bool {
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

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        let shown: String = key.chars().take(64).collect();
        return Err(Error::InvalidKey(shown));
    }
    Ok(())
}

pub(crate) fn check_namespace(name: &str) -> Result<()> {
    let valid = (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if valid { Ok(()) } else { Err(Error::InvalidNamespace(name.to_owned())) }
}

/// `url` with its password, if any, replaced by `***`.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((credentials, host)) => {
            let user = credentials.split_once(':').map_or(credentials, |(user, _)| user);
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => url.to_owned(),
    }
}
