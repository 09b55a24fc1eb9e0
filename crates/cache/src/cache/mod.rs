//! [`Cache`], the handle, and its construction from a [`CacheConfig`]: which tiers exist
//! for the configured backend, and the state every operation shares.
//!
//! The operations are `impl Cache` blocks in the submodules, one concern each: reads and
//! writes (`ops`), the single-flight load behind [`Cache::get_or_insert_with`] (`load`),
//! and the readiness [`Status`] (`status`). They sit under this module so they can reach
//! the handle's state without it being visible to the rest of the crate.

mod load;
mod ops;
mod status;

use std::sync::Arc;
use std::time::Duration;

pub use status::Status;

use crate::coherence::Coherence;
use crate::counters::Metrics;
use crate::epoch::Epochs;
use crate::flight::Flights;
use crate::local::Local;
use crate::names::check_namespace;
use crate::remote::Remote;
use crate::{BackendKind, CacheConfig, Error, Result};

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

    /// The local tier, when it may be used: always for `memory`; for `tiered` only while
    /// invalidations are being received.
    fn usable_local(&self) -> Option<&Local> {
        let local = self.inner.local.as_ref()?;
        match &self.inner.coherence {
            Some(coherence) if !coherence.listening() => None,
            _ => Some(local),
        }
    }
}
