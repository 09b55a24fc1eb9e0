//! The counters a [`Cache`](crate::Cache) reports on `/metrics`: hits, misses, loads and
//! failed loads, labelled by backend (evictions are counted by the in-process tier, and
//! only described here).
//!
//! The handles are taken once, when the cache is built, so the request path counts through
//! a handle instead of looking a counter up by name and labels.

/// The counters on `/metrics`, by backend.
pub(crate) struct Metrics {
    pub(crate) hits: metrics::Counter,
    pub(crate) misses: metrics::Counter,
    pub(crate) loads: metrics::Counter,
    pub(crate) load_errors: metrics::Counter,
}

impl Metrics {
    pub(crate) fn new(backend: &'static str) -> Self {
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
