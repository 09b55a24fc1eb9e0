//! The server's request middleware: [`Edge`], one service in front of the whole router.
//!
//! Request ids and the request's `RequestContext`, the error-body contract, metrics, the
//! access log, the request timeout, panic catching, the body-size check, rate limits and
//! security headers are the same few steps on every request, so they run in one service with a
//! hand-written future instead of a stack of generic layers, and in front of the router
//! rather than around each of its routes: axum boxes every route once more for each
//! `Router::layer`, which costs a clone, an allocation and a boxed future per request.
//! Standing in front of the router, the edge finds the route template (for metrics, log
//! lines and rate limits) in its own [`RouteTable`], built from the same paths and matched
//! by the same `matchit` router as axum's. It inserts one `RequestContext` (request
//! id, owning plugin, peer address, gate) into the request's extensions, where extractors
//! find it on whatever task the handler runs. The future also marks the thread with the
//! request's log label while it polls, so log lines name their request (a span when
//! `log.request_span` is on); a handler that moves work to another task loses only that
//! label on its lines, never its context. Only an error response that needs its body rewritten takes a
//! boxed detour.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::HttpBody;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::future::RouteFuture;
use futures_util::future::Either;
use tower::Service;
use tower::util::BoxCloneSyncService;
use xcore_core::http::{ApiError, REQUEST_ID, error_body, needs_error_body};
use xcore_middleware::{Admission, Gate, QuotaHeaders, RateLimit, RequestContext, SecurityHeaders};

use crate::logging::Label;
use crate::metrics::requests::{self, Route};

/// Longest client-supplied request id kept; longer or non-printable ones are replaced.
const MAX_REQUEST_ID: usize = 128;

/// Settings of the edge, from `[server]`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub timeout: Duration,
    pub body_limit: u64,
    pub access_log: bool,
}

/// The route templates an application serves and the plugin owning each.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    matcher: matchit::Router<usize>,
    routes: Vec<(Box<str>, Option<&'static str>)>,
}

impl RouteTable {
    /// Adds `template` (axum's syntax: `/items/{id}`, `/files/{*rest}`), owned by `plugin`.
    /// A template already present, or one the router would refuse, is left out: axum
    /// refuses the same ones when the routes are added to it.
    pub fn insert(&mut self, template: &str, plugin: Option<&'static str>) {
        if self.matcher.insert(template, self.routes.len()).is_ok() {
            self.routes.push((template.into(), plugin));
        }
    }
}

/// What the edge knows of a route before routing.
#[derive(Debug)]
struct RouteInfo {
    /// Its number among all routes of the process (see `metrics::requests`).
    id: usize,
    /// `None` for requests no route matches.
    template: Option<Box<str>>,
    plugin: Option<&'static str>,
    /// Whether a rate limit applies to it.
    limited: bool,
}

/// The service the server runs for every request: see the module documentation.
#[derive(Clone)]
pub struct Edge {
    inner: Inner,
    conn: Arc<Conn>,
}

/// What the edge of one connection holds. It is cloned, with the edge, for every request
/// (hyper clones the service per request), so it is one `Arc` per connection: its count
/// stays on the core serving the connection instead of bouncing between cores.
struct Conn {
    shared: Arc<Shared>,
    /// The gate of this connection's requests.
    gate: Option<Gate>,
    /// The client's address, once known.
    peer: Option<SocketAddr>,
}

/// What the edge calls once it has done its part.
#[derive(Clone)]
pub(super) enum Inner {
    /// The router alone: the usual case.
    Router(Router),
    /// The router behind CORS or a body limit for extractors: tower layers whose service
    /// types cannot be named, boxed once.
    Layered(BoxCloneSyncService<Request, Response, Infallible>),
}

type InnerFuture = Either<RouteFuture<Infallible>, Finishing<Result<Response, Infallible>>>;

impl Inner {
    fn call(&mut self, request: Request) -> InnerFuture {
        match self {
            Self::Router(router) => Either::Left(router.call(request)),
            Self::Layered(service) => Either::Right(service.call(request)),
        }
    }
}

struct Shared {
    settings: Settings,
    matcher: matchit::Router<usize>,
    routes: Vec<RouteInfo>,
    unmatched: RouteInfo,
    headers: Option<SecurityHeaders>,
    rate_limit: Option<RateLimit>,
}

impl Edge {
    /// The edge in front of `inner`, whose route templates `routes` lists.
    pub(super) fn new(
        inner: Inner,
        routes: RouteTable,
        settings: Settings,
        headers: Option<SecurityHeaders>,
        gate: Option<Gate>,
        rate_limit: Option<RateLimit>,
    ) -> Self {
        let limited = |template: Option<&str>| {
            rate_limit.as_ref().is_some_and(|limits| limits.applies_to(template))
        };
        let RouteTable { matcher, routes } = routes;
        let routes: Vec<RouteInfo> = routes
            .into_iter()
            .map(|(template, plugin)| RouteInfo {
                id: requests::route_id(),
                limited: limited(Some(&template)),
                template: Some(template),
                plugin,
            })
            .collect();
        let unmatched = RouteInfo {
            id: requests::route_id(),
            template: None,
            plugin: None,
            limited: limited(None),
        };
        let shared = Shared { settings, matcher, routes, unmatched, headers, rate_limit };
        Self { inner, conn: Arc::new(Conn { shared: Arc::new(shared), gate, peer: None }) }
    }

    /// This edge for the requests of a connection from `peer`: their context carries the
    /// address, which rate limits by client address count by.
    #[must_use]
    pub fn for_peer(&self, peer: SocketAddr) -> Self {
        let conn = Conn {
            shared: self.conn.shared.clone(),
            gate: self.conn.gate.clone(),
            peer: Some(peer),
        };
        Self { inner: self.inner.clone(), conn: Arc::new(conn) }
    }

    fn route(&self, path: &str) -> (Option<usize>, &RouteInfo) {
        let shared = &*self.conn.shared;
        match shared.matcher.at(path) {
            Ok(found) => (Some(*found.value), &shared.routes[*found.value]),
            Err(_) => (None, &shared.unmatched),
        }
    }
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("settings", &self.conn.shared.settings)
            .field("routes", &self.conn.shared.routes)
            .field("gate", &self.conn.gate)
            .finish_non_exhaustive()
    }
}

impl Service<Request> for Edge {
    type Response = Response;
    type Error = Infallible;
    type Future = EdgeFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match &mut self.inner {
            // A router is always ready.
            Inner::Router(_) => Poll::Ready(Ok(())),
            Inner::Layered(service) => service.poll_ready(cx),
        }
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
        let (index, route) = self.route(request.uri().path());
        let (plugin, limited) = (route.plugin, route.limited);
        // One insert carries everything extractors need, to whatever task runs the handler.
        request.extensions_mut().insert(RequestContext {
            request_id: request_id.clone(),
            plugin,
            peer: self.conn.peer,
            gate: self.conn.gate.clone(),
        });
        let settings = &self.conn.shared.settings;
        let facts = Facts {
            start,
            request_id,
            method: request.method().clone(),
            // Only the access line needs the path; error messages name the route template.
            path: settings.access_log.then(|| request.uri().path().into()),
            route: index,
            quota: None,
        };
        // Every log line written while the request is handled names its id and, on a
        // plugin's route, the plugin: through a thread label by default, through a span when
        // `log.request_span` asks for one (see `logging::Label`).
        let (label, span) = if crate::logging::request_spans() {
            let id = facts.request_id.to_str().unwrap_or("");
            let span = match plugin {
                Some(plugin) => tracing::info_span!("request", id, plugin),
                None => tracing::info_span!("request", id),
            };
            (None, Some(span))
        } else {
            (Some(Label::new(facts.request_id.clone(), plugin)), None)
        };
        let mut future = EdgeFuture {
            state: State::Done,
            deadline: start + settings.timeout,
            sleep: None,
            label,
            span,
            conn: self.conn.clone(),
            facts: Some(facts),
        };
        // The body's size hint is its `Content-Length` when the request has one: checked
        // without looking the header up again.
        let too_large = HttpBody::size_hint(request.body()).lower() > settings.body_limit;
        if too_large {
            let refused = ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the request body exceeds {} bytes", settings.body_limit),
            );
            future.answer(refused.into_response());
            return future;
        }
        if limited && let Some(limits) = &self.conn.shared.rate_limit {
            let template = template(&self.conn.shared, index);
            match limits.admit(template, &request) {
                Admission::Unlimited => {}
                Admission::Allowed(quota) => {
                    if let Some(facts) = future.facts.as_mut() {
                        facts.quota = Some(quota);
                    }
                }
                Admission::Limited(response) => {
                    future.answer(response);
                    return future;
                }
            }
        }
        future.state = State::Running { inner: self.inner.call(request) };
        future
    }
}

fn template(shared: &Shared, index: Option<usize>) -> Option<&str> {
    index.and_then(|index| shared.routes[index].template.as_deref())
}

/// What the future needs to know about its request once the response is ready.
struct Facts {
    start: Instant,
    request_id: HeaderValue,
    method: Method,
    /// The request's path, kept only for the access line.
    path: Option<Box<str>>,
    /// The index of its route in the table, if one matched.
    route: Option<usize>,
    /// The rate-limit headers of its response, when a quota applied.
    quota: Option<QuotaHeaders>,
}

type Finishing<T = Response> = Pin<Box<dyn Future<Output = T> + Send>>;

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State {
        Running { #[pin] inner: InnerFuture },
        Finishing { finishing: Finishing },
        Done,
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Edge`].
    pub struct EdgeFuture {
        #[pin]
        state: State,
        deadline: Instant,
        // Created on the first poll that finds the handler pending: most requests are
        // answered on their first poll and never touch the timer. Boxed, because a timer
        // is large and the future is moved a few times before its first poll.
        sleep: Option<Pin<Box<tokio::time::Sleep>>>,
        // How log lines name the request: a label (the default) or a span.
        label: Option<Label>,
        span: Option<tracing::Span>,
        conn: Arc<Conn>,
        facts: Option<Facts>,
    }
}

impl EdgeFuture {
    /// Answers with `response` (the edge's own refusal) instead of calling the router.
    fn answer(&mut self, response: Response) {
        let finishing: Finishing = match &self.facts {
            Some(facts) if needs_error_body(&response) => {
                with_error_body(response, facts, &self.conn.shared)
            }
            _ => Box::pin(std::future::ready(response)),
        };
        self.state = State::Finishing { finishing };
    }
}

impl Future for EdgeFuture {
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // The label is lent to the thread for the poll and taken back after.
        let this = self.as_mut().project();
        let (label, span) = (this.label.take(), this.span.clone());
        let (polled, label) = Label::scoped(label, || match &span {
            Some(span) => span.in_scope(|| self.as_mut().poll_labelled(cx)),
            None => self.as_mut().poll_labelled(cx),
        });
        *self.project().label = label;
        polled
    }
}

impl EdgeFuture {
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
                    return Poll::Ready(Ok(finish(response, facts, &this.conn.shared)));
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
                let finishing = with_error_body(response, facts, &this.conn.shared);
                this.state.set(State::Finishing { finishing });
                continue;
            }
            this.state.set(State::Done);
            let Some(facts) = this.facts.take() else { return Poll::Ready(Ok(response)) };
            return Poll::Ready(Ok(finish(response, facts, &this.conn.shared)));
        }
    }
}

/// Gives an error response the standard body (see `xcore_core::http::error_body`).
fn with_error_body(response: Response, facts: &Facts, shared: &Shared) -> Finishing {
    let (id, method) = (facts.request_id.clone(), facts.method.clone());
    let path = template(shared, facts.route).unwrap_or("").to_owned();
    Box::pin(async move { error_body(response, id.to_str().ok(), &method, &path).await })
}

/// Adds the edge's headers and records the request in the metrics and the access log.
fn finish(mut response: Response, facts: Facts, shared: &Shared) -> Response {
    let status = response.status();
    let elapsed = facts.start.elapsed();
    let route = facts.route.map_or(&shared.unmatched, |index| &shared.routes[index]);
    let label = route.template.as_deref().unwrap_or("unmatched");
    requests::record(Route { id: route.id, label }, &facts.method, status.as_u16(), elapsed);
    if shared.settings.access_log {
        tracing::info!(
            target: "xcore::access",
            method = %facts.method,
            path = facts.path.as_deref().unwrap_or(""),
            status = status.as_u16(),
            latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            "request"
        );
    }
    let headers = response.headers_mut();
    if let Some(quota) = facts.quota {
        quota.apply(headers);
    }
    if let Some(security) = &shared.headers {
        security.apply(headers);
    }
    headers.insert(REQUEST_ID.clone(), facts.request_id);
    response
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
    // One allocation, shared by every clone (a copied `Vec` would allocate again when the
    // id is first cloned).
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(id))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
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
