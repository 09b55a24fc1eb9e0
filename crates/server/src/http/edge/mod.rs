//! [`Edge`]: the one service in front of the whole router, which every request goes
//! through.
//!
//! It gives the request its id and its `RequestContext` (id, owning plugin, peer address,
//! gate: one extension, read by extractors on whatever task the handler runs), checks the
//! body size and the rate limits, reads JSON bodies to refuse any that is not an object
//! (see `json`), and when the response is ready records the metrics and
//! the access line, renders error bodies with the request id and adds the security
//! headers. Its future also times the request out and catches a handler's panic (see
//! `future` for why those are not tower-http's layers).
//!
//! It stands in front of the router rather than around each route: axum boxes every route
//! once more for each `Router::layer`, a clone, an allocation and a boxed future per
//! request. So it finds the route template (for metrics, log lines and rate limits) in its
//! own [`RouteTable`], built from the paths the application mounts and matched by the same
//! `matchit` router as axum's. Its future marks the thread with the request's log label
//! while it polls (a span when `log.request_span` is on); a handler that moves work to
//! another task loses only that label on its lines, never its context.

mod future;
mod json;
mod request_id;
mod routes;

pub use future::EdgeFuture;
pub use routes::RouteTable;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::HttpBody;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::future::Either;
use tower::Service;
use tower::util::BoxCloneSyncService;
use xcore_core::http::{ApiError, REQUEST_ID};
use xcore_middleware::{Admission, Gate, RateLimit, RequestContext, SecurityHeaders};

use crate::logging::Label;
use future::Facts;
use routes::Routes;

/// Settings of the edge, from `[server]`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub timeout: Duration,
    pub body_limit: u64,
    pub access_log: bool,
    /// Behind a reverse proxy, the header it reports the client's address in.
    pub client_ip_header: Option<axum::http::HeaderName>,
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

impl Inner {
    fn call(&mut self, request: Request) -> future::InnerFuture {
        match self {
            Self::Router(router) => Either::Left(router.call(request)),
            Self::Layered(service) => Either::Right(service.call(request)),
        }
    }
}

struct Shared {
    settings: Settings,
    routes: Routes,
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
        let routes = Routes::new(routes, rate_limit.as_ref());
        let shared = Shared { settings, routes, headers, rate_limit };
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
        let start = std::time::Instant::now();
        let request_id = match request.headers().get(&REQUEST_ID) {
            Some(id) if request_id::acceptable(id) => id.clone(),
            _ => {
                let id = request_id::next();
                request.headers_mut().insert(REQUEST_ID.clone(), id.clone());
                id
            }
        };
        let shared = &*self.conn.shared;
        let (index, route) = shared.routes.find(request.uri().path());
        let (plugin, limited) = (route.plugin, route.limited);
        // One insert carries everything extractors need, to whatever task runs the handler.
        let settings = &shared.settings;
        let client = match &settings.client_ip_header {
            Some(name) => xcore_middleware::forwarded_client(request.headers(), name),
            None => self.conn.peer.map(|peer| peer.ip()),
        };
        request.extensions_mut().insert(RequestContext {
            request_id: request_id.clone(),
            plugin,
            peer: self.conn.peer,
            client,
            gate: self.conn.gate.clone(),
        });
        let facts = Facts {
            start,
            request_id,
            method: request.method().clone(),
            // Only the access line needs the path; error messages name the route template.
            path: settings.access_log.then(|| request.uri().path().into()),
            route: index,
            quota: None,
        };
        let deadline = start + settings.timeout;
        let mut future = EdgeFuture::new(label(&facts, plugin), self.conn.clone(), facts, deadline);
        // The body's size hint is its `Content-Length` when the request has one: checked
        // without looking the header up again.
        if HttpBody::size_hint(request.body()).lower() > settings.body_limit {
            let refused = ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the request body exceeds {} bytes", settings.body_limit),
            );
            future.answer(refused.into_response());
            return future;
        }
        if limited && let Some(limits) = &shared.rate_limit {
            let template = shared.routes.get(index).template.as_deref();
            match limits.admit(template, &request) {
                Admission::Unlimited => {}
                Admission::Allowed(quota) => future.set_quota(quota),
                Admission::Limited(response) => {
                    future.answer(response);
                    return future;
                }
            }
        }
        if json::declares_json(&request) {
            // Read the body first: a JSON body must be an object (see `json`).
            let mut inner = self.inner.clone();
            let limit = usize::try_from(settings.body_limit).unwrap_or(usize::MAX);
            future.run(Either::Right(Box::pin(async move {
                match json::objects_only(request, limit).await {
                    Ok(request) => inner.call(request).await,
                    Err(refused) => Ok(refused),
                }
            })));
            return future;
        }
        future.run(self.inner.call(request));
        future
    }
}

/// How log lines name the request: a label lent to the thread while the request is
/// polled (the default), or a span when `log.request_span` asks for one (see
/// `logging::Label`).
fn label(facts: &Facts, plugin: Option<&'static str>) -> future::Marker {
    if crate::logging::request_spans() {
        let id = facts.request_id.to_str().unwrap_or("");
        let span = match plugin {
            Some(plugin) => tracing::info_span!("request", id, plugin),
            None => tracing::info_span!("request", id),
        };
        future::Marker::Span(span)
    } else {
        future::Marker::Label(Some(Label::new(facts.request_id.clone(), plugin)))
    }
}
