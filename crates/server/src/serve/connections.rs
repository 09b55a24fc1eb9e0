//! Accepting and serving connections, with the limits that keep a flood of idle or slow
//! clients from taking the server down.
//!
//! - **Idle timeout** (`server.idle_timeout_secs`): a connection with no request in
//!   progress that has started no new request for that long is closed. That covers a new
//!   connection that sends nothing, a request head sent a byte at a time, and a kept-alive
//!   connection idle between requests. Each connection has one watchdog that looks every
//!   interval (so it closes after between one and two intervals) rather than a timer armed
//!   for every request, which is what hyper's `header_read_timeout` does and what cost
//!   4.6 % of throughput (0.83 against 0.87 of bare axum, `cargo xtask bench http`).
//! - **Connection limit** (`server.max_connections`, by default the open-file limit less a
//!   reserve for the database, logs and listeners): at the limit, the oldest connection
//!   with no request in progress is closed to make room, so a fresh client is served even
//!   while idle connections fill every slot; only when every connection has a request in
//!   progress is the new one turned away.
//! - **Accept errors** (out of file descriptors, out of memory) back off exponentially up
//!   to a second instead of spinning, and are logged at most once a second.
//!
//! axum's `serve` sets no timer and no limit, so the loop is ours, over hyper's HTTP/1
//! connection (with upgrades, for WebSockets).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::http::Edge;

/// File descriptors kept back from the connection limit for everything else the process
/// opens: the listening socket, database files and connections, Redis, log output.
const RESERVED_FDS: u64 = 64;

/// The limits of [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Limits {
    /// The limits `server` asks for; an unset connection limit comes from the open-file
    /// limit.
    pub fn new(server: &crate::config::ServerConfig) -> Self {
        let max_connections = server.max_connections.unwrap_or_else(default_max_connections);
        Self {
            idle_timeout: Duration::from_secs(server.idle_timeout_secs),
            max_connections: max_connections.max(1),
        }
    }
}

/// The open-file limit less [`RESERVED_FDS`].
fn default_max_connections() -> usize {
    let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft);
    usize::try_from(soft.saturating_sub(RESERVED_FDS).max(1)).unwrap_or(usize::MAX)
}

/// One open connection, as the connection table sees it.
struct Tracked {
    /// Requests of this connection being handled now.
    in_flight: AtomicUsize,
    /// Requests this connection has started, for the idle watchdog to see progress.
    started: AtomicU64,
    /// Set when the connection is chosen to make room; its task then closes it.
    evicted: AtomicBool,
    wake: Notify,
}

/// Every open connection, oldest first.
#[derive(Default)]
struct Table {
    open: Mutex<BTreeMap<u64, Arc<Tracked>>>,
    next: AtomicU64,
    /// Woken whenever a connection closes.
    closed: Notify,
}

impl Table {
    fn len(&self) -> usize {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    fn insert(&self) -> (u64, Arc<Tracked>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let tracked = Arc::new(Tracked {
            in_flight: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            evicted: AtomicBool::new(false),
            wake: Notify::new(),
        });
        self.open.lock().unwrap_or_else(PoisonError::into_inner).insert(id, tracked.clone());
        (id, tracked)
    }

    fn remove(&self, id: u64) {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
        self.closed.notify_waiters();
    }

    /// Waits until fewer than `count` connections are open.
    async fn below(&self, count: usize) {
        loop {
            let closed = self.closed.notified();
            if self.len() < count {
                return;
            }
            closed.await;
        }
    }

    /// Closes the oldest connection with no request in progress; false if every one is
    /// busy.
    fn evict_idle(&self) -> bool {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let idle = open.values().find(|tracked| {
            tracked.in_flight.load(Ordering::Acquire) == 0
                && !tracked.evicted.swap(true, Ordering::AcqRel)
        });
        match idle {
            Some(tracked) => {
                tracked.wake.notify_one();
                true
            }
            None => false,
        }
    }

    /// Waits until no connection is open.
    async fn drained(&self) {
        self.below(1).await;
    }
}

/// Serves `listener` with `edge` until `stopping` turns true; then stops accepting at once
/// (closing the listening socket, so new connections queue for the next process), waits
/// `linger`, asks every connection to finish its request in progress and close, and
/// returns once all have.
pub async fn serve(
    listener: TcpListener,
    edge: Edge,
    limits: Limits,
    mut stopping: watch::Receiver<bool>,
    linger: Duration,
) {
    let table = Arc::new(Table::default());
    let (closing, closing_rx) = watch::channel(false);
    let mut backoff = Backoff::default();
    let mut refused = Refused::default();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stopping.wait_for(|stopping| *stopping) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                backoff.wait(&error).await;
                continue;
            }
        };
        backoff.reset();
        if table.len() >= limits.max_connections {
            if !table.evict_idle() {
                refused.note(limits.max_connections);
                continue;
            }
            // The evicted connection's socket is closed before another is opened, so the
            // process never holds more than the limit.
            table.below(limits.max_connections).await;
        }
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let (id, tracked) = table.insert();
        let task = connection(stream, peer, edge.clone(), limits, tracked, closing_rx.clone());
        let table = table.clone();
        tokio::spawn(async move {
            task.await;
            table.remove(id);
        });
    }
    drop(listener);
    tokio::time::sleep(linger).await;
    let _ = closing.send(true);
    table.drained().await;
}

/// Serves one connection until it ends, is evicted, or the server closes it gracefully.
async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    edge: Edge,
    limits: Limits,
    tracked: Arc<Tracked>,
    mut closing: watch::Receiver<bool>,
) {
    let service = Counted { edge: edge.for_peer(peer), tracked: tracked.clone() };
    let conn = hyper::server::conn::http1::Builder::new()
        // The watchdog below keeps the idle timeout; no timer per request.
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let mut graceful = false;
    let period = limits.idle_timeout;
    let mut watchdog = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let mut seen = 0;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, %peer, "connection ended with an error");
                }
                return;
            }
            () = tracked.wake.notified() => {
                tracing::debug!(%peer, "closing an idle connection to make room for a new one");
                return;
            }
            _ = closing.wait_for(|closing| *closing), if !graceful => {
                graceful = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = watchdog.tick() => {
                let started = tracked.started.load(Ordering::Relaxed);
                if started == seen && tracked.in_flight.load(Ordering::Acquire) == 0 {
                    tracing::debug!(%peer, "closing a connection idle (or slow to send a request) for too long");
                    return;
                }
                seen = started;
            }
        }
    }
}

/// The edge of one connection, counting its requests in progress.
#[derive(Clone)]
struct Counted {
    edge: Edge,
    tracked: Arc<Tracked>,
}

impl tower::Service<hyper::Request<Incoming>> for Counted {
    type Response = Response;
    type Error = Infallible;
    type Future = InFlight;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        tower::Service::<Request>::poll_ready(&mut self.edge, cx)
    }

    fn call(&mut self, request: hyper::Request<Incoming>) -> Self::Future {
        self.tracked.in_flight.fetch_add(1, Ordering::AcqRel);
        self.tracked.started.fetch_add(1, Ordering::Relaxed);
        let future = tower::Service::call(&mut self.edge, request.map(Body::new));
        InFlight { future, tracked: self.tracked.clone() }
    }
}

pin_project_lite::pin_project! {
    /// A request in progress; it stops counting when answered or dropped.
    struct InFlight {
        #[pin]
        future: crate::http::EdgeFuture,
        tracked: Arc<Tracked>,
    }

    impl PinnedDrop for InFlight {
        fn drop(this: Pin<&mut Self>) {
            this.tracked.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Future for InFlight {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().future.poll(cx)
    }
}

/// Connections turned away because every open one was busy, logged at most once a second
/// with how many, so a flood does not flood the log too.
#[derive(Default)]
struct Refused {
    since_logged: u64,
    last_logged: Option<Instant>,
}

impl Refused {
    fn note(&mut self, max_connections: usize) {
        self.since_logged += 1;
        if self.last_logged.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
            self.last_logged = Some(Instant::now());
            tracing::warn!(
                max_connections,
                refused = self.since_logged,
                "every connection has a request in progress: refusing new ones"
            );
            self.since_logged = 0;
        }
    }
}

/// How long to wait after failed accepts: from 10 ms, doubling, up to a second.
#[derive(Default)]
struct Backoff {
    failures: u32,
    last_logged: Option<Instant>,
}

impl Backoff {
    async fn wait(&mut self, error: &std::io::Error) {
        self.failures = self.failures.saturating_add(1);
        let delay = Duration::from_millis(10 << self.failures.min(7)).min(Duration::from_secs(1));
        if self.last_logged.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
            self.last_logged = Some(Instant::now());
            tracing::error!(%error, failures = self.failures, delay_ms = delay.as_millis() as u64, "cannot accept connections; backing off");
        }
        tokio::time::sleep(delay).await;
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}
