//! Cache throughput: `cargo xtask bench cache` (or `cargo bench -p xcore-cache`).
//!
//! Every figure is the cost of one `get` awaited in a loop on a single-threaded runtime,
//! so its inverse is the rate one core sustains. The baseline is a bare `moka::sync::Cache`
//! lookup of the same key in the same run. The Redis figures need `XCORE_TEST_REDIS_URL`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use xcore_cache::{BackendKind, Cache, CacheConfig};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Times `iters` sequential awaits of `get` on `runtime`.
fn timed<F, Fut>(runtime: &tokio::runtime::Runtime, iters: u64, get: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: Future,
{
    runtime.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            black_box(get().await);
        }
        start.elapsed()
    })
}

fn cache(runtime: &tokio::runtime::Runtime, backend: BackendKind, url: Option<&str>) -> Cache {
    let config = CacheConfig {
        backend,
        url: url.map(str::to_owned),
        namespace: format!("bench-{}", std::process::id()),
        ..CacheConfig::default()
    };
    runtime.block_on(async {
        let cache = Cache::new(&config).unwrap();
        while !cache.status().await.healthy {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cache
    })
}

fn memory(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("memory");
    let baseline: moka::sync::Cache<String, u64> = moka::sync::Cache::new(10_000);
    baseline.insert("user:42".to_owned(), 42);
    group.bench_function("baseline: moka::sync::Cache::get hit", |b| {
        b.iter(|| black_box(baseline.get(black_box("user:42"))));
    });
    let cache = cache(&runtime, BackendKind::Memory, None);
    runtime.block_on(cache.set("user:42", 42u64)).unwrap();
    group.bench_function("get hit", |b| {
        b.iter_custom(|iters| timed(&runtime, iters, || cache.get::<u64>("user:42")));
    });
    group.bench_function("get miss", |b| {
        b.iter_custom(|iters| timed(&runtime, iters, || cache.get::<u64>("user:43")));
    });
    let users = cache.namespace("user").unwrap();
    group.bench_function("namespaced get hit", |b| {
        b.iter_custom(|iters| timed(&runtime, iters, || users.get::<u64>("42")));
    });
    group.finish();
}

fn redis(c: &mut Criterion) {
    let Some(url) = std::env::var("XCORE_TEST_REDIS_URL").ok().filter(|url| !url.is_empty()) else {
        eprintln!("tiered and redis benchmarks skipped: XCORE_TEST_REDIS_URL is not set");
        return;
    };
    let runtime = runtime();
    let mut group = c.benchmark_group("redis");
    let memory = cache(&runtime, BackendKind::Memory, None);
    let tiered = cache(&runtime, BackendKind::Tiered, Some(&url));
    let redis = cache(&runtime, BackendKind::Redis, Some(&url));
    runtime.block_on(async {
        memory.set("user:42", 42u64).await.unwrap();
        tiered.set("user:42", 42u64).await.unwrap();
        redis.set("user:42", 42u64).await.unwrap();
    });
    group.bench_function("baseline: memory get hit", |b| {
        b.iter_custom(|iters| timed(&runtime, iters, || memory.get::<u64>("user:42")));
    });
    group.bench_function("tiered get hit (local)", |b| {
        b.iter_custom(|iters| timed(&runtime, iters, || tiered.get::<u64>("user:42")));
    });
    group.measurement_time(Duration::from_secs(3)).sample_size(20);
    group.bench_function("redis get hit (round trip)", |b| {
        b.iter_custom(|iters| timed(&runtime, iters, || redis.get::<u64>("user:42")));
    });
    // Another node with the same namespace: the time from a write on `tiered` until this
    // node, which holds the old value locally, reads the new one.
    let other = cache(&runtime, BackendKind::Tiered, Some(&url));
    let mut version = 0u64;
    group.bench_function("tiered write seen by another node", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    version += 1;
                    tiered.set("seen", version - 1).await.unwrap();
                    while other.get::<u64>("seen").await.unwrap() != Some(version - 1) {
                        // Lets the subscriber task, on this same thread, take its messages.
                        tokio::task::yield_now().await;
                    }
                    let start = Instant::now();
                    tiered.set("seen", version).await.unwrap();
                    while other.get::<u64>("seen").await.unwrap() != Some(version) {
                        tokio::task::yield_now().await;
                    }
                    total += start.elapsed();
                }
                total
            })
        });
    });
    group.finish();
    runtime.block_on(async {
        tiered.delete_prefix("").await.unwrap();
        redis.delete_prefix("").await.unwrap();
        other.delete_prefix("").await.unwrap();
    });
}

criterion_group!(benches, memory, redis);
criterion_main!(benches);
