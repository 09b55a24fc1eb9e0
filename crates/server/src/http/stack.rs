//! The server's request middleware, as one tower layer.
//!
//! Request ids, the error-body contract, metrics, the access log, the request timeout,
//! panic catching and the body-size check are the same few steps on every request, so
//! they run in one service with a hand-written future instead of a stack of generic
//! layers: no boxing and no per-layer clones. The future also marks the thread with the
//! request's label while it polls, so log lines name their request (a span when
//! `log.request_span` is on). Only an error response that needs its body rewritten takes a
//! boxed detour.

use std::cell::RefCell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};
use xcore_core::http::{ApiError, REQUEST_ID, error_body, needs_error_body};

use crate::logging::Label;

/// Longest client-supplied request id kept; longer or non-printable ones are replaced.
const MAX_REQUEST_ID: usize = 128;

/// Settings of the core middleware, from `[server]`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub timeout: Duration,
    pub body_limit: u64,
    pub access_log: bool,
    /// The plugin owning the routes this instance wraps, named on the request's log lines.
    pub plugin: Option<&'static str>,
}

/// The layer applying [`CoreService`] to every route.
#[derive(Debug, Clone)]
pub struct CoreLayer {
    settings: Arc<Settings>,
}

impl CoreLayer {
    pub fn new(settings: Settings) -> Self {
        Self { settings: Arc::new(settings) }
    }
}

impl<S> Layer<S> for CoreLayer {
    type Service = CoreService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CoreService { inner, settings: self.settings.clone() }
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct CoreService<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S> Service<Request> for CoreService<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = CoreFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let start = Instant::now();
        let request_id = match request.headers().get(&REQUEST_ID) {
            Some(id) if acceptable_id(id) => id.clone(),
            _ => {
                let id = next_request_id();
                request.headers_mut().insert(REQUEST_ID.clone(), id.clone());
                id
            }
        };
        let facts = Facts {
            start,
            request_id,
            method: request.method().clone(),
            // Only the access line needs the path; error messages name the route template.
            path: self.settings.access_log.then(|| request.uri().path().into()),
            route: request.extensions().get::<MatchedPath>().cloned(),
            access_log: self.settings.access_log,
        };
        // Every log line written while the request is handled names its id and, on a
        // plugin's route, the plugin: through a thread label by default, through a span when
        // `log.request_span` asks for one (see `logging::Label`).
        let plugin = self.settings.plugin;
        let marker = if crate::logging::request_spans() {
            let id = facts.request_id.to_str().unwrap_or("");
            Marker::Span(match plugin {
                Some(plugin) => tracing::info_span!("request", id, plugin),
                None => tracing::info_span!("request", id),
            })
        } else {
            Marker::Label(Label::new(facts.request_id.clone(), plugin))
        };
        let too_large = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|length| length.to_str().ok()?.parse::<u64>().ok())
            .is_some_and(|length| length > self.settings.body_limit);
        let state = if too_large {
            let refused = ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the request body exceeds {} bytes", self.settings.body_limit),
            )
            .into_response();
            State::Finishing { finishing: with_error_body(refused, &facts) }
        } else {
            State::Running { inner: self.inner.call(request) }
        };
        CoreFuture {
            state,
            deadline: start + self.settings.timeout,
            sleep: None,
            marker,
            facts: Some(facts),
        }
    }
}

/// How the request's log lines name it (see `logging::Label`).
#[derive(Clone)]
enum Marker {
    Label(Label),
    Span(tracing::Span),
}

/// What the future needs to know about its request once the response is ready.
struct Facts {
    start: Instant,
    request_id: HeaderValue,
    method: Method,
    /// The request's path, kept only for the access line.
    path: Option<Box<str>>,
    route: Option<MatchedPath>,
    access_log: bool,
}

type Finishing = Pin<Box<dyn Future<Output = Response> + Send>>;

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F> {
        Running { #[pin] inner: F },
        Finishing { finishing: Finishing },
        Done,
    }
}

pin_project_lite::pin_project! {
    /// The future of [`CoreService`].
    pub struct CoreFuture<F> {
        #[pin]
        state: State<F>,
        deadline: Instant,
        // Created on the first poll that finds the handler pending: most requests are
        // answered on their first poll and never touch the timer. Boxed, because a timer
        // is large and the future is moved a few times before its first poll.
        sleep: Option<Pin<Box<tokio::time::Sleep>>>,
        marker: Marker,
        facts: Option<Facts>,
    }
}

impl<F> Future for CoreFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.marker.clone() {
            Marker::Label(label) => label.scope(|| self.as_mut().poll_labelled(cx)),
            Marker::Span(span) => span.in_scope(|| self.as_mut().poll_labelled(cx)),
        }
    }
}

impl<F> CoreFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    /// [`Future::poll`], with the request's marker in place.
    fn poll_labelled(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Response, Infallible>> {
        let mut this = self.project();
        loop {
            let response = match this.state.as_mut().project() {
                StateProj::Running { inner } => {
                    let polled = catch_unwind(AssertUnwindSafe(|| inner.poll(cx)));
                    match polled {
                        Ok(Poll::Ready(Ok(response))) => response,
                        Ok(Poll::Pending) => {
                            let deadline = tokio::time::Instant::from_std(*this.deadline);
                            let sleep = this.sleep.get_or_insert_with(|| {
                                Box::pin(tokio::time::sleep_until(deadline))
                            });
                            ready!(sleep.as_mut().poll(cx));
                            ApiError::new(
                                StatusCode::REQUEST_TIMEOUT,
                                "request_timeout",
                                "the request took too long",
                            )
                            .into_response()
                        }
                        Err(panic) => {
                            tracing::error!(panic = %panic_message(&*panic), "a request handler panicked");
                            ApiError::internal().into_response()
                        }
                    }
                }
                StateProj::Finishing { finishing } => {
                    let response = ready!(finishing.as_mut().poll(cx));
                    this.state.set(State::Done);
                    let Some(facts) = this.facts.take() else {
                        return Poll::Ready(Ok(response));
                    };
                    return Poll::Ready(Ok(finish(response, facts)));
                }
                StateProj::Done => {
                    // Polled again after completion: nothing sensible to return but a 500.
                    return Poll::Ready(Ok(ApiError::internal().into_response()));
                }
            };
            // The handler (or the timeout, or the panic) has answered: rewrite the body if
            // it is an error that needs it, then account for the request.
            if needs_error_body(&response) {
                let Some(facts) = this.facts.as_ref() else {
                    return Poll::Ready(Ok(response));
                };
                this.state.set(State::Finishing { finishing: with_error_body(response, facts) });
                continue;
            }
            this.state.set(State::Done);
            let Some(facts) = this.facts.take() else { return Poll::Ready(Ok(response)) };
            return Poll::Ready(Ok(finish(response, facts)));
        }
    }
}

/// Gives an error response the standard body (see `xcore_core::http::error_body`).
fn with_error_body(response: Response, facts: &Facts) -> Finishing {
    let (id, method) = (facts.request_id.clone(), facts.method.clone());
    let path = facts.route.as_ref().map_or("", MatchedPath::as_str).to_owned();
    Box::pin(async move { error_body(response, id.to_str().ok(), &method, &path).await })
}

/// Echoes the request id and records the request in the metrics and the access log.
fn finish(mut response: Response, facts: Facts) -> Response {
    let status = response.status();
    let elapsed = facts.start.elapsed();
    record(
        &facts.method,
        facts.route.as_ref().map_or("unmatched", MatchedPath::as_str),
        status,
        elapsed,
    );
    if facts.access_log {
        tracing::info!(
            target: "xcore::access",
            method = %facts.method,
            path = facts.path.as_deref().unwrap_or(""),
            status = status.as_u16(),
            latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            "request"
        );
    }
    response.headers_mut().insert(REQUEST_ID.clone(), facts.request_id);
    response
}

/// Metric handles of one (route, method, status), registered on first use.
struct Handles {
    requests: metrics::Counter,
    duration: metrics::Histogram,
}

/// Per route template, the handles of each (method, status) seen.
type HandleCache = HashMap<String, Vec<(Method, u16, Handles)>, BuildHasherDefault<Fnv>>;

/// FNV-1a: route templates are short, trusted strings, for which SipHash's protection
/// against chosen keys costs more than the lookup it protects.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for byte in bytes {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
}

thread_local! {
    /// Each worker thread keeps its own handles, so recording takes no lock and builds no
    /// label set once a (route, method, status) has been seen.
    static HANDLES: RefCell<HandleCache> = RefCell::new(HashMap::default());
}

fn record(method: &Method, route: &str, status: StatusCode, elapsed: Duration) {
    let code = status.as_u16();
    HANDLES.with_borrow_mut(|handles| {
        let entries = match handles.get_mut(route) {
            Some(entries) => entries,
            None => handles.entry(route.to_owned()).or_default(),
        };
        let position = entries.iter().position(|(m, s, _)| m == method && *s == code);
        let position = position.unwrap_or_else(|| {
            let labels = [
                ("method", method.as_str().to_owned()),
                ("route", route.to_owned()),
                ("status", code.to_string()),
            ];
            let created = Handles {
                requests: metrics::counter!("http_requests_total", &labels),
                duration: metrics::histogram!("http_request_duration_seconds", &labels),
            };
            entries.push((method.clone(), code, created));
            entries.len() - 1
        });
        let (_, _, handles) = &entries[position];
        handles.requests.increment(1);
        handles.duration.record(elapsed.as_secs_f64());
    });
}

fn acceptable_id(id: &HeaderValue) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID && id.as_bytes().iter().all(u8::is_ascii_graphic)
}

/// A new request id: 16 hex digits unique to this process run, then a 16-digit counter.
/// Unique across nodes and restarts without a system call per request.
fn next_request_id() -> HeaderValue {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static PREFIX: std::sync::OnceLock<[u8; 16]> = std::sync::OnceLock::new();
    let prefix = PREFIX.get_or_init(|| {
        use std::hash::BuildHasher;
        // `RandomState` is seeded from the operating system's randomness once per process.
        let seed = std::collections::hash_map::RandomState::new().hash_one((
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_nanos()),
            std::process::id(),
        ));
        hex(seed)
    });
    let mut id = [0u8; 32];
    id[..16].copy_from_slice(prefix);
    id[16..].copy_from_slice(&hex(COUNTER.fetch_add(1, Ordering::Relaxed)));
    HeaderValue::from_bytes(&id).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// `value` as 16 lowercase hexadecimal digits.
fn hex(value: u64) -> [u8; 16] {
    let mut digits = [0u8; 16];
    for (index, digit) in digits.iter_mut().enumerate() {
        *digit = b"0123456789abcdef"[((value >> (60 - 4 * index)) & 0xf) as usize];
    }
    digits
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_unique_and_well_formed() {
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| next_request_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| id.len() == 32 && acceptable_id(id)));
    }

    #[test]
    fn client_ids_are_kept_only_when_reasonable() {
        let check = |id: &str, expected: bool| {
            assert_eq!(acceptable_id(&HeaderValue::from_str(id).unwrap()), expected, "{id:?}");
        };
        check("abc-123", true);
        check("", false);
        check("has space", false);
        check(&"x".repeat(129), false);
    }
}
