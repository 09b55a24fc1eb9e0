//! The in-process tier: a size-bounded moka cache of typed values.
//!
//! Values are kept as the caller's own type behind an `Arc`, so a hit is a hash lookup and
//! a clone, with no decoding. Each entry is weighed by its key and the length of its JSON
//! encoding, which is what the same value costs in Redis and a fair estimate of its heap
//! size.

use std::any::{Any, type_name};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::notification::RemovalCause;

use crate::{Error, Result, Value};

/// Bytes counted for an entry on top of its key and value: moka's node and our header.
const ENTRY_OVERHEAD: u32 = 96;

/// One cached value.
#[derive(Clone)]
pub(crate) struct Entry {
    value: Arc<dyn Any + Send + Sync>,
    type_name: &'static str,
    weight: u32,
    ttl: Option<Duration>,
}

impl Entry {
    pub(crate) fn new<T: Value>(value: T, encoded_len: usize, ttl: Option<Duration>) -> Self {
        Self {
            value: Arc::new(value),
            type_name: type_name::<T>(),
            weight: u32::try_from(encoded_len).unwrap_or(u32::MAX),
            ttl,
        }
    }
}

/// Expires each entry after its own time to live.
struct PerEntry;

impl Expiry<String, Entry> for PerEntry {
    fn expire_after_create(&self, _: &String, entry: &Entry, _: Instant) -> Option<Duration> {
        entry.ttl
    }

    fn expire_after_update(
        &self,
        _: &String,
        entry: &Entry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        entry.ttl
    }
}

/// The in-process store; cloning shares it.
///
/// Keys are hashed with foldhash, seeded at random per cache: SipHash (moka's default) is
/// a tenth of the cost of a hit, and foldhash keeps a key-choosing client from predicting
/// collisions.
#[derive(Clone)]
pub(crate) struct Local {
    entries: moka::sync::Cache<String, Entry, foldhash::fast::RandomState>,
}

impl Local {
    pub(crate) fn new(max_bytes: u64, evictions: metrics::Counter) -> Self {
        let entries = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &String, entry: &Entry| {
                let key = u32::try_from(key.len()).unwrap_or(u32::MAX);
                key.saturating_add(entry.weight).saturating_add(ENTRY_OVERHEAD)
            })
            .expire_after(PerEntry)
            .eviction_listener(move |_, _, cause| {
                if cause == RemovalCause::Size {
                    evictions.increment(1);
                }
            })
            .support_invalidation_closures()
            .build_with_hasher(foldhash::fast::RandomState::default());
        Self { entries }
    }

    /// The value under `key`, if present and of type `T`.
    pub(crate) fn get<T: Value>(&self, key: &str) -> Result<Option<T>> {
        let Some(entry) = self.entries.get(key) else { return Ok(None) };
        match entry.value.downcast_ref::<T>() {
            Some(value) => Ok(Some(value.clone())),
            None => Err(Error::WrongType {
                key: key.to_owned(),
                stored: entry.type_name,
                requested: type_name::<T>(),
            }),
        }
    }

    pub(crate) fn insert(&self, key: String, entry: Entry) {
        self.entries.insert(key, entry);
    }

    pub(crate) fn remove(&self, key: &str) {
        self.entries.invalidate(key);
    }

    pub(crate) fn remove_prefix(&self, prefix: &str) {
        let prefix = prefix.to_owned();
        // Only fails when invalidation closures are off, and they are switched on above.
        if self.entries.invalidate_entries_if(move |key, _| key.starts_with(&prefix)).is_err() {
            self.entries.invalidate_all();
        }
    }

    pub(crate) fn clear(&self) {
        self.entries.invalidate_all();
    }

    /// Bytes held, after pending evictions have run.
    #[cfg(test)]
    pub(crate) fn weighted_size(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.weighted_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_bound_evicts() {
        let evicted = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let local = Local::new(8 * 1024, metrics::Counter::from_arc(evicted.clone()));
        for index in 0..200 {
            let value = "x".repeat(100);
            local.insert(format!("key-{index}"), Entry::new(value, 102, None));
            local.entries.run_pending_tasks();
        }
        let size = local.weighted_size();
        assert!(size <= 8 * 1024, "{size} bytes held");
        let held = (0..200).filter(|i| local.entries.contains_key(&format!("key-{i}"))).count();
        assert!(held > 0 && held < 200, "{held} entries held");
        let evicted = evicted.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(evicted, 200 - held as u64, "evictions counted");
    }

    #[test]
    fn a_value_is_returned_as_its_own_type_only() {
        let local = Local::new(1024 * 1024, metrics::Counter::noop());
        local.insert("n".to_owned(), Entry::new(7u32, 1, None));
        assert_eq!(local.get::<u32>("n").unwrap(), Some(7));
        let error = local.get::<String>("n").unwrap_err();
        assert_eq!(error.to_string(), "`n` holds a value of type u32, not alloc::string::String");
    }
}
