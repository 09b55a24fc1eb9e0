//! The HTTP application: the host's own routes, the plugins' routes, and the edge every
//! request goes through.
//!
//! Every request goes through the [`Edge`] (request id and context, error bodies, metrics,
//! access log, timeout, panic catching, body-size check, rate limits, security headers),
//! then CORS when configured, then axum's body limit for extractors, then the router. The
//! edge finds each request's route template before routing, in a [`RouteTable`] of every
//! route the router has: metrics label requests by route template, never by raw path.

mod edge;
mod host;
mod openapi;

pub use edge::{Edge, EdgeFuture, RouteTable};
pub use host::{HostState, OPENAPI_PATH, host_routes};

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, header};
use metrics_exporter_prometheus::PrometheusHandle;
use tower::util::BoxCloneSyncService;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::OpenApi as _;
use xcore_core::App;
use xcore_core::http::{ApiError, REQUEST_ID};
use xcore_middleware::{Gate, MiddlewareConfig, RateLimit, SecurityHeaders};

use crate::config::{Config, CorsConfig, ServerConfig};

#[derive(utoipa::OpenApi)]
#[openapi(info(title = "xcore", description = "The xcore application server."))]
struct CoreDoc;

/// The complete service: the host's routes and every plugin's, behind the [`Edge`]. It
/// takes the routes, probes and scrape callbacks out of `app`; the caller keeps the hooks.
pub fn router(
    app: &mut App,
    config: &Config,
    metrics: PrometheusHandle,
    draining: Arc<AtomicBool>,
) -> Edge {
    let gate = app.extensions.get::<Gate>().cloned();
    let stack = Stack::new(&config.server, &config.middleware, gate);
    let host = host_routes();
    let mut doc = CoreDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.merge(host.openapi().clone());
    doc.merge(std::mem::take(&mut app.openapi));
    openapi::complete(&mut doc, stack.rate_limit.as_ref());
    let state = HostState {
        metrics,
        draining,
        probes: std::mem::take(&mut app.probes).into(),
        scrapes: std::mem::take(&mut app.scrapes).into(),
        openapi: serde_json::to_vec(&doc).unwrap_or_default().into(),
        docs: Arc::new(utoipa_swagger_ui::Config::from(OPENAPI_PATH)),
    };
    let (router, paths, _) = host.with_state(state).mount("");
    // Each route's template, and the plugin it belongs to (log lines name it).
    let mut table = RouteTable::default();
    for path in &paths {
        table.insert(path, None);
    }
    let plugins = std::mem::take(&mut app.routers);
    for plugin in &plugins {
        for path in &plugin.paths {
            table.insert(path, Some(plugin.plugin));
        }
    }
    let router = plugins.into_iter().fold(router, |all, plugin| all.merge(plugin.router));
    let not_found = |method: Method, uri: axum::http::Uri| async move {
        ApiError::not_found(format!("no route for {method} {}", uri.path()))
    };
    stack.edge(router.fallback(not_found), table)
}

/// What every request goes through, built once from the config.
#[derive(Debug, Clone)]
pub struct Stack {
    server: ServerConfig,
    client_ip_header: Option<axum::http::HeaderName>,
    headers: SecurityHeaders,
    gate: Option<Gate>,
    /// One for the whole application, so limits hold across every plugin's routes.
    rate_limit: Option<RateLimit>,
}

impl Stack {
    /// The stack `server` and `middleware` describe; `gate` authenticates callers for the
    /// routes that ask who they are.
    pub fn new(server: &ServerConfig, middleware: &MiddlewareConfig, gate: Option<Gate>) -> Self {
        let headers = SecurityHeaders::new(&middleware.security_headers);
        let rate_limit = RateLimit::from_config(&middleware.rate_limit);
        let client_ip_header = middleware.rate_limit.client_ip_header_name();
        Self { server: server.clone(), client_ip_header, headers, gate, rate_limit }
    }

    /// `app` behind the [`Edge`]; `routes` lists its route templates.
    ///
    /// The security headers are added by the edge, so the responses it makes itself (408,
    /// 413, 429, a caught panic's 500) get them too; the rate limit is checked after the
    /// gate is in place, so it can count by user. CORS and a body limit other than axum's
    /// stand between the edge and the router.
    pub fn edge(&self, app: Router, routes: RouteTable) -> Edge {
        let config = &self.server;
        // axum's extractors already stop at 2 MiB; the layer is only needed for another limit.
        let body_limit = (config.body_limit_bytes != AXUM_BODY_LIMIT)
            .then(|| DefaultBodyLimit::max(config.body_limit_bytes));
        let cors = cors(&config.cors);
        let inner = if body_limit.is_some() || cors.is_some() {
            let layers = tower::ServiceBuilder::new().option_layer(cors).option_layer(body_limit);
            edge::Inner::Layered(BoxCloneSyncService::new(layers.service(app)))
        } else {
            edge::Inner::Router(app)
        };
        let settings = edge::Settings {
            timeout: Duration::from_secs(config.request_timeout_secs),
            body_limit: u64::try_from(config.body_limit_bytes).unwrap_or(u64::MAX),
            access_log: config.access_log,
            client_ip_header: self.client_ip_header.clone(),
        };
        let headers = (!self.headers.is_empty()).then(|| self.headers.clone());
        Edge::new(inner, routes, settings, headers, self.gate.clone(), self.rate_limit.clone())
    }
}

/// The body limit axum's extractors apply when no `DefaultBodyLimit` says otherwise.
const AXUM_BODY_LIMIT: usize = 2 * 1024 * 1024;

fn cors(config: &CorsConfig) -> Option<CorsLayer> {
    if config.allowed_origins.is_empty() {
        return None;
    }
    let origin = if config.allowed_origins.iter().any(|origin| origin == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            config.allowed_origins.iter().filter_map(|origin| HeaderValue::from_str(origin).ok()),
        )
    };
    let methods: Vec<Method> = config
        .allowed_methods
        .iter()
        .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
        .collect();
    let headers: Vec<header::HeaderName> = config
        .allowed_headers
        .iter()
        .filter_map(|h| header::HeaderName::from_bytes(h.as_bytes()).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(origin)
            .allow_methods(methods)
            .allow_headers(headers)
            .allow_credentials(config.allow_credentials)
            .expose_headers([REQUEST_ID.clone()])
            .max_age(Duration::from_secs(config.max_age_secs)),
    )
}
