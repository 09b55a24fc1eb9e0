//! One behaviour suite run on every backend: `memory` always, `redis` and `tiered` against
//! the Redis server named by `XCORE_TEST_REDIS_URL` (skipped, with a printed reason, when it
//! is not set). Every cache gets its own Redis namespace, so tests run in parallel.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use xcore_cache::{BackendKind, Cache, CacheConfig, Error};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
    tags: Vec<String>,
}

fn user(id: u64) -> User {
    User { id, name: format!("user {id}"), tags: vec!["a".to_owned(), "b".to_owned()] }
}

fn redis_url(test: &str) -> Option<String> {
    let url = std::env::var("XCORE_TEST_REDIS_URL").ok().filter(|url| !url.is_empty());
    if url.is_none() {
        eprintln!("{test}: redis and tiered backends skipped: XCORE_TEST_REDIS_URL is not set");
    }
    url
}

/// A namespace no other test or run uses.
fn unique_namespace() -> String {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("test-{}-{nanos}-{}", std::process::id(), COUNT.fetch_add(1, Ordering::Relaxed))
}

fn config(backend: BackendKind, url: Option<&str>, namespace: &str) -> CacheConfig {
    CacheConfig {
        backend,
        url: url.map(str::to_owned),
        namespace: namespace.to_owned(),
        ..CacheConfig::default()
    }
}

/// Waits until `cache` reports itself healthy (a tiered cache has subscribed).
async fn healthy(cache: &Cache) {
    let start = Instant::now();
    loop {
        let status = cache.status().await;
        if status.healthy {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "never healthy: {status:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A cache of every backend available, each configured by `tweak`.
async fn backends(test: &str, tweak: impl Fn(&mut CacheConfig)) -> Vec<Cache> {
    let mut kinds = vec![(BackendKind::Memory, None)];
    if let Some(url) = redis_url(test) {
        kinds.push((BackendKind::Redis, Some(url.clone())));
        kinds.push((BackendKind::Tiered, Some(url)));
    }
    let mut caches = Vec::new();
    for (kind, url) in kinds {
        let mut config = config(kind, url.as_deref(), &unique_namespace());
        tweak(&mut config);
        let cache = Cache::new(&config).unwrap();
        healthy(&cache).await;
        caches.push(cache);
    }
    caches
}

/// Polls `probe` until it returns true, failing after a few seconds.
async fn eventually<F, Fut>(what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !probe().await {
        assert!(start.elapsed() < Duration::from_secs(5), "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn values_round_trip_with_their_type() {
    for cache in backends("values_round_trip_with_their_type", |_| {}).await {
        let kind = cache.backend();
        assert_eq!(cache.get::<User>("missing").await.unwrap(), None, "{kind:?}");
        cache.set("u:1", user(1)).await.unwrap();
        assert_eq!(cache.get::<User>("u:1").await.unwrap(), Some(user(1)), "{kind:?}");
        cache.set("u:1", user(2)).await.unwrap();
        assert_eq!(cache.get::<User>("u:1").await.unwrap(), Some(user(2)), "{kind:?}");
        cache.set("n", 42u64).await.unwrap();
        assert_eq!(cache.get::<u64>("n").await.unwrap(), Some(42), "{kind:?}");
        // Asking for another type is an error, never a wrong value.
        assert!(cache.get::<User>("n").await.is_err(), "{kind:?}");
        cache.delete("u:1").await.unwrap();
        assert_eq!(cache.get::<User>("u:1").await.unwrap(), None, "{kind:?}");
    }
}

#[tokio::test]
async fn namespaces_are_separate_and_cleared_whole() {
    for cache in backends("namespaces_are_separate_and_cleared_whole", |_| {}).await {
        let kind = cache.backend();
        let (users, posts) = (cache.namespace("users").unwrap(), cache.namespace("posts").unwrap());
        users.set("1", user(1)).await.unwrap();
        users.set("2", user(2)).await.unwrap();
        posts.set("1", "a post".to_owned()).await.unwrap();
        assert_eq!(users.get::<User>("1").await.unwrap(), Some(user(1)), "{kind:?}");
        assert_eq!(posts.get::<String>("1").await.unwrap().as_deref(), Some("a post"));
        users.clear().await.unwrap();
        assert_eq!(users.get::<User>("1").await.unwrap(), None, "{kind:?}");
        assert_eq!(users.get::<User>("2").await.unwrap(), None, "{kind:?}");
        assert_eq!(posts.get::<String>("1").await.unwrap().as_deref(), Some("a post"));
        cache.delete_prefix("").await.unwrap();
        assert_eq!(posts.get::<String>("1").await.unwrap(), None, "{kind:?}");
    }
}

#[tokio::test]
async fn entries_expire_after_their_ttl() {
    for cache in backends("entries_expire_after_their_ttl", |c| c.default_ttl_secs = 1).await {
        let kind = cache.backend();
        cache.set_with_ttl("short", 1u8, Duration::from_millis(200)).await.unwrap();
        cache.set("default", 2u8).await.unwrap();
        cache.set_with_ttl("long", 3u8, Duration::from_secs(60)).await.unwrap();
        assert_eq!(cache.get::<u8>("short").await.unwrap(), Some(1), "{kind:?}");
        eventually("the 200 ms entry expires", || async {
            cache.get::<u8>("short").await.unwrap().is_none()
        })
        .await;
        eventually("the default 1 s entry expires", || async {
            cache.get::<u8>("default").await.unwrap().is_none()
        })
        .await;
        assert_eq!(cache.get::<u8>("long").await.unwrap(), Some(3), "{kind:?}");
        let zero = cache.set_with_ttl("zero", 4u8, Duration::ZERO).await;
        assert!(matches!(zero, Err(Error::ZeroTtl)), "{kind:?}: {zero:?}");
        assert_eq!(cache.get::<u8>("zero").await.unwrap(), None, "{kind:?}");
    }
}

#[tokio::test]
async fn concurrent_misses_run_the_loader_once() {
    for cache in backends("concurrent_misses_run_the_loader_once", |_| {}).await {
        let runs = Arc::new(AtomicUsize::new(0));
        let callers: Vec<_> = (0..100)
            .map(|_| {
                let (cache, runs) = (cache.clone(), runs.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_insert_with("slow", || async {
                            runs.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            Ok::<_, std::io::Error>(user(7))
                        })
                        .await
                })
            })
            .collect();
        for caller in callers {
            assert_eq!(caller.await.unwrap().unwrap(), user(7));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1, "{:?}", cache.backend());
        assert_eq!(cache.get::<User>("slow").await.unwrap(), Some(user(7)));
    }
}

#[tokio::test]
async fn a_failed_load_reaches_every_waiter_and_is_not_cached() {
    for cache in backends("a_failed_load_reaches_every_waiter_and_is_not_cached", |_| {}).await {
        let kind = cache.backend();
        let runs = Arc::new(AtomicUsize::new(0));
        let callers: Vec<_> = (0..10)
            .map(|_| {
                let (cache, runs) = (cache.clone(), runs.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_insert_with::<u32, _, _, _>("flaky", || async {
                            runs.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Err(std::io::Error::other("source down"))
                        })
                        .await
                })
            })
            .collect();
        for caller in callers {
            let error = caller.await.unwrap().unwrap_err();
            assert_eq!(error.to_string(), "loading `flaky` failed: source down", "{kind:?}");
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1, "{kind:?}");
        assert_eq!(cache.get::<u32>("flaky").await.unwrap(), None, "{kind:?}");
        let loaded = cache
            .get_or_insert_with("flaky", || async {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<_, std::io::Error>(5u32)
            })
            .await
            .unwrap();
        assert_eq!((loaded, runs.load(Ordering::SeqCst)), (5, 2), "{kind:?}");
    }
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    for cache in backends("bad_input_is_refused_and_changes_nothing", |_| {}).await {
        let kind = cache.backend();
        let long = "k".repeat(xcore_cache::MAX_KEY_LEN + 1);
        assert!(matches!(cache.set("", 1u8).await, Err(Error::InvalidKey(_))), "{kind:?}");
        assert!(matches!(cache.set(&long, 1u8).await, Err(Error::InvalidKey(_))), "{kind:?}");
        assert!(matches!(cache.get::<u8>("").await, Err(Error::InvalidKey(_))), "{kind:?}");
        for name in ["", "a:b", "with space", &"n".repeat(65)] {
            assert!(matches!(cache.namespace(name), Err(Error::InvalidNamespace(_))), "{name:?}");
        }
        cache.delete_prefix("").await.unwrap();
        assert_eq!(cache.get::<u8>(&long[..xcore_cache::MAX_KEY_LEN]).await.unwrap(), None);
    }
}

/// A Redis URL that nothing listens on.
const UNREACHABLE: &str = "redis://127.0.0.1:1";

#[tokio::test]
async fn an_unreachable_redis_degrades_without_failing_reads() {
    for kind in [BackendKind::Redis, BackendKind::Tiered] {
        let cache = Cache::new(&config(kind, Some(UNREACHABLE), &unique_namespace())).unwrap();
        assert_eq!(cache.get::<u8>("k").await.unwrap(), None, "{kind:?}");
        let write = cache.set("k", 1u8).await;
        assert!(matches!(write, Err(Error::Unavailable(_))), "{kind:?}: {write:?}");
        assert!(write.unwrap_err().to_string().starts_with("the cache server is unavailable"));
        // The loaded value is still returned to the caller, just not stored.
        let loaded = cache.get_or_insert_with("k", || async { Ok::<_, std::io::Error>(9u8) }).await;
        assert_eq!(loaded.unwrap(), 9, "{kind:?}");
        assert_eq!(cache.get::<u8>("k").await.unwrap(), None, "{kind:?}");
        let status = cache.status().await;
        assert!(!status.healthy && status.detail.starts_with("degraded"), "{status:?}");
    }
}

/// Two tiered caches sharing one Redis namespace, as two nodes would, and the namespace.
async fn two_nodes(url: &str) -> (Cache, Cache, String) {
    let namespace = unique_namespace();
    let a = Cache::new(&config(BackendKind::Tiered, Some(url), &namespace)).unwrap();
    let b = Cache::new(&config(BackendKind::Tiered, Some(url), &namespace)).unwrap();
    healthy(&a).await;
    healthy(&b).await;
    (a, b, namespace)
}

/// Writes straight to Redis, as no cache would, to tell a local hit from a Redis read.
async fn write_behind_the_caches_back(url: &str, namespace_key: String, value: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let () =
        redis::cmd("SET").arg(namespace_key).arg(value).query_async(&mut connection).await.unwrap();
}

#[tokio::test]
async fn tiered_nodes_see_each_others_invalidations() {
    let Some(url) = redis_url("tiered_nodes_see_each_others_invalidations") else { return };
    let (a, b, namespace) = two_nodes(&url).await;
    // Once b holds `k` in its local tier, a write that publishes nothing goes unseen by b.
    // (b keeps what it reads only if no invalidation arrives meanwhile, such as the one of
    // a's own write: hence the retry.)
    eventually("b serves k from its local tier", || async {
        a.set("k", 1u32).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        if b.get::<u32>("k").await.unwrap() != Some(1) {
            return false;
        }
        write_behind_the_caches_back(&url, format!("{namespace}:k"), "100").await;
        b.get::<u32>("k").await.unwrap() == Some(1)
    })
    .await;
    // A write through a cache reaches b's local tier.
    a.set("k", 2u32).await.unwrap();
    eventually("b sees a's write", || async { b.get::<u32>("k").await.unwrap() == Some(2) }).await;
    a.delete("k").await.unwrap();
    eventually("b sees a's delete", || async { b.get::<u32>("k").await.unwrap().is_none() }).await;

    let (on_a, on_b) = (a.namespace("posts").unwrap(), b.namespace("posts").unwrap());
    on_a.set("1", 1u32).await.unwrap();
    assert_eq!(on_b.get::<u32>("1").await.unwrap(), Some(1));
    on_b.clear().await.unwrap();
    eventually("a sees b's clear", || async { on_a.get::<u32>("1").await.unwrap().is_none() })
        .await;
}

#[tokio::test]
async fn killed_connections_are_survived() {
    let Some(url) = redis_url("killed_connections_are_survived") else { return };
    // The caches log in as a user of their own, so killing its connections leaves the
    // other tests' alone.
    let admin = redis::Client::open(url.as_str()).unwrap();
    let mut admin = admin.get_multiplexed_async_connection().await.unwrap();
    let user = format!("xcore-kill-{}", unique_namespace());
    let () = redis::cmd("ACL")
        .arg(&["SETUSER", &user, "on", ">kill-test", "~*", "&*", "+@all"][..])
        .query_async(&mut admin)
        .await
        .unwrap();
    let user_url = url.replacen("redis://", &format!("redis://{user}:kill-test@"), 1);
    let (a, b, _) = two_nodes(&user_url).await;
    let redis =
        Cache::new(&config(BackendKind::Redis, Some(&user_url), &unique_namespace())).unwrap();
    a.set("k", 1u32).await.unwrap();
    redis.set("k", 1u32).await.unwrap();
    assert_eq!(b.get::<u32>("k").await.unwrap(), Some(1));

    let killed: usize = redis::cmd("CLIENT")
        .arg(&["KILL", "USER", &user][..])
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!(killed >= 3, "only {killed} connections killed");

    for cache in [&a, &b, &redis] {
        eventually("writes succeed again", || async { cache.set("k", 2u32).await.is_ok() }).await;
        healthy(cache).await;
    }
    eventually("b sees a's write after resubscribing", || async {
        a.set("k", 3u32).await.is_ok() && b.get::<u32>("k").await.unwrap() == Some(3)
    })
    .await;
    assert_eq!(redis.get::<u32>("k").await.unwrap(), Some(2));
    let () = redis::cmd("ACL").arg(&["DELUSER", &user][..]).query_async(&mut admin).await.unwrap();
}

#[tokio::test]
async fn a_value_loaded_across_a_write_is_returned_but_not_kept() {
    for cache in backends("a_value_loaded_across_a_write_is_returned_but_not_kept", |_| {}).await {
        let kind = cache.backend();
        let loaded = cache
            .get_or_insert_with("listing", || async {
                // Another request writes while this one loads: what it loaded may be stale.
                cache.delete("listing").await.unwrap();
                Ok::<_, std::io::Error>(1u32)
            })
            .await
            .unwrap();
        assert_eq!(loaded, 1, "{kind:?}");
        assert_eq!(cache.get::<u32>("listing").await.unwrap(), None, "{kind:?}");
        let loaded =
            cache.get_or_insert_with("listing", || async { Ok::<_, std::io::Error>(2u32) });
        assert_eq!(loaded.await.unwrap(), 2, "{kind:?}");
        assert_eq!(cache.get::<u32>("listing").await.unwrap(), Some(2), "{kind:?}");
    }
}

/// A TCP relay to Redis that can be cut (open connections dropped, new ones closed at
/// once) and restored, to play an outage without touching the shared server.
struct Relay {
    address: std::net::SocketAddr,
    up: tokio::sync::watch::Sender<bool>,
}

impl Relay {
    async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (up, _) = tokio::sync::watch::channel(true);
        let state = up.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { return };
                let mut watching = state.subscribe();
                if !*watching.borrow_and_update() {
                    continue; // dropped: the client sees the connection close
                }
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = watching.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Self { address, up }
    }

    fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}

#[tokio::test]
async fn an_outage_degrades_the_cache_until_redis_returns() {
    let Some(url) = redis_url("an_outage_degrades_the_cache_until_redis_returns") else { return };
    let upstream = url.trim_start_matches("redis://").split('/').next().unwrap().to_owned();
    let relay = Relay::start(upstream).await;
    let relayed = format!("redis://{}", relay.address);
    for kind in [BackendKind::Redis, BackendKind::Tiered] {
        let cache = Cache::new(&config(kind, Some(&relayed), &unique_namespace())).unwrap();
        healthy(&cache).await;
        cache.set("k", 1u32).await.unwrap();
        assert_eq!(cache.get::<u32>("k").await.unwrap(), Some(1), "{kind:?}");

        relay.set_up(false);
        eventually("reads miss during the outage", || async {
            cache.get::<u32>("k").await.unwrap().is_none()
        })
        .await;
        assert!(matches!(cache.set("k", 2u32).await, Err(Error::Unavailable(_))), "{kind:?}");
        assert!(!cache.status().await.healthy, "{kind:?}");

        relay.set_up(true);
        eventually("writes succeed once Redis is back", || async {
            cache.set("k", 3u32).await.is_ok()
        })
        .await;
        healthy(&cache).await;
        assert_eq!(cache.get::<u32>("k").await.unwrap(), Some(3), "{kind:?}");
    }
}

#[test]
fn redis_backends_need_a_runtime_and_memory_does_not() {
    let tiered = Cache::new(&config(BackendKind::Tiered, Some(UNREACHABLE), "outside"));
    assert!(matches!(tiered, Err(Error::NoRuntime("tiered"))), "{tiered:?}");
    assert!(Cache::new(&CacheConfig::default()).is_ok());
}

#[tokio::test]
async fn concurrent_loads_of_different_keys_are_all_kept() {
    for cache in backends("concurrent_loads_of_different_keys_are_all_kept", |_| {}).await {
        let kind = cache.backend();
        let loads: Vec<_> = (0..20u32)
            .map(|index| {
                let cache = cache.clone();
                tokio::spawn(async move {
                    cache
                        .get_or_insert_with(&format!("item:{index}"), || async move {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            Ok::<_, std::io::Error>(index)
                        })
                        .await
                })
            })
            .collect();
        for load in loads {
            load.await.unwrap().unwrap();
        }
        for index in 0..20u32 {
            let kept = cache.get::<u32>(&format!("item:{index}")).await.unwrap();
            assert_eq!(kept, Some(index), "{kind:?}: item:{index} was not kept");
        }
    }
}
