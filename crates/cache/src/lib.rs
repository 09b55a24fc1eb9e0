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

mod cache;
mod coherence;
mod config;
mod counters;
mod epoch;
mod error;
mod flight;
mod local;
mod names;
mod namespace;
mod plugin;
mod remote;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use cache::{Cache, Status};
pub use config::{BackendKind, CacheConfig};
pub use error::{Error, LoadError, Result};
pub use names::MAX_KEY_LEN;
pub use namespace::Namespace;
pub use plugin::CachePlugin;

pub(crate) use names::{check_namespace, redact_url};

/// What a cache can hold: owned, cloneable, and (for Redis) serializable as JSON.
pub trait Value: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}

impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> Value for T {}
