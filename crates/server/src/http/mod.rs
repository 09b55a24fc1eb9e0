//! The HTTP application: the server's own routes, the plugins' routes, and the middleware
//! stack every request goes through.
//!
//! Every request goes through the [`Edge`] (request id, error bodies, metrics, access log,
//! timeout, panic catching, body-size check, the caller's gate, rate limits, security
//! headers), then CORS when configured, then axum's body limit for extractors, then the
//! router. The edge finds each request's route template before routing, in a
//! [`RouteTable`] of every route the router has: metrics label requests by route template,
//! never by raw path.

mod stack;

pub use stack::{Edge, RouteTable};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::IntoResponse;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use tower::util::BoxCloneSyncService;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::openapi::OpenApi;
use utoipa::{OpenApi as _, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;
use xcore_auth::Auth;
use xcore_cache::Cache;
use xcore_core::PluginRouter;
use xcore_core::http::{ApiError, REQUEST_ID};
use xcore_db::Database;
use xcore_middleware::{Gate, MiddlewareConfig, RateLimit, RolePermissions, SecurityHeaders};

use crate::config::{Config, CorsConfig, ServerConfig};

/// Paths served by the server itself; a plugin mounted over one is a build error.
pub const RESERVED_PATHS: [&str; 6] =
    ["/health", "/ready", "/metrics", "/openapi.json", "/docs", "/auth"];

/// What the server's own handlers need.
#[derive(Clone)]
pub struct CoreState {
    pub db: Database,
    pub cache: Cache,
    pub auth: Auth,
    pub metrics: PrometheusHandle,
    /// Set once shutdown begins, so `/ready` tells load balancers to stop sending traffic.
    pub draining: Arc<AtomicBool>,
}

impl std::fmt::Debug for CoreState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreState")
            .field("db", &self.db)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(info(title = "xcore", description = "The xcore application server."))]
struct CoreDoc;

/// The complete service: server routes, `/auth`, plugin routes, docs, behind the
/// [`Edge`].
pub fn router(
    state: CoreState,
    plugins: Vec<PluginRouter>,
    plugin_doc: OpenApi,
    config: &Config,
) -> Edge {
    let gate = Gate::new(state.auth.authenticator(), RolePermissions::default());
    let stack = Stack::new(&config.server, &config.middleware, Some(gate));
    let (auth, auth_doc) = OpenApiRouter::new()
        .nest("/auth", xcore_auth::http::router(state.auth.clone()))
        .split_for_parts();
    let (core, mut doc) = OpenApiRouter::with_openapi(CoreDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(metrics))
        .with_state(state)
        .split_for_parts();
    // Each route's template, and the plugin it belongs to (log lines name it); `/auth`
    // counts as a plugin.
    let mut table = RouteTable::default();
    let core_paths = doc.paths.paths.keys().map(String::as_str).chain(SWAGGER_PATHS);
    for path in core_paths {
        table.insert(path, None);
    }
    for path in auth_doc.paths.paths.keys() {
        table.insert(path, Some("auth"));
    }
    for plugin in &plugins {
        for path in &plugin.paths {
            table.insert(path, Some(plugin.plugin));
        }
    }
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.merge(auth_doc);
    doc.merge(plugin_doc);
    let core = core.merge(SwaggerUi::new("/docs").url("/openapi.json", doc));
    let app = plugins.into_iter().fold(core.merge(auth), |app, plugin| app.merge(plugin.router));
    let not_found = |method: Method, uri: axum::http::Uri| async move {
        ApiError::not_found(format!("no route for {method} {}", uri.path()))
    };
    stack.edge(app.fallback(not_found), table)
}

/// The routes `SwaggerUi::new("/docs").url("/openapi.json", …)` adds.
const SWAGGER_PATHS: [&str; 4] = ["/docs", "/docs/", "/docs/{*rest}", "/openapi.json"];

/// What every request goes through, built once from the config.
#[derive(Debug, Clone)]
pub struct Stack {
    server: ServerConfig,
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
        Self { server: server.clone(), headers, gate, rate_limit }
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
            stack::Inner::Layered(BoxCloneSyncService::new(layers.service(app)))
        } else {
            stack::Inner::Router(app)
        };
        let settings = stack::Settings {
            timeout: Duration::from_secs(config.request_timeout_secs),
            body_limit: u64::try_from(config.body_limit_bytes).unwrap_or(u64::MAX),
            access_log: config.access_log,
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

#[derive(Serialize, ToSchema)]
struct Health {
    /// Always `ok` while the process serves requests.
    status: &'static str,
}

/// Liveness: the process is up and serving.
#[utoipa::path(get, path = "/health", tag = "core", responses((status = 200, body = Health)))]
async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[derive(Serialize, ToSchema)]
struct Readiness {
    /// `ready`, or `degraded` when an optional dependency (the cache) is unavailable: the
    /// server still answers, more slowly.
    status: &'static str,
    /// Each dependency checked, with its state.
    checks: Checks,
}

#[derive(Serialize, ToSchema)]
struct Checks {
    /// `ok`, with the backend name.
    database: String,
    /// `ok` or `degraded: <reason>`, with the backend name.
    cache: String,
}

/// How long `/ready` waits for the database: probes usually give up after a second or two.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Readiness: the server can do its work (the database answers, shutdown has not begun).
/// An unreachable cache makes the server degraded, not unready: requests fall back to
/// their sources.
#[utoipa::path(get, path = "/ready", tag = "core", responses(
    (status = 200, body = Readiness),
    (status = 503, description = "the database is unavailable or the server is shutting down"),
))]
async fn ready(State(state): State<CoreState>) -> Result<Json<Readiness>, ApiError> {
    if state.draining.load(Ordering::Relaxed) {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "shutting down"));
    }
    let database = tokio::time::timeout(READY_TIMEOUT, state.db.ping());
    let (database, cache) = tokio::join!(database, state.cache.status());
    match database.unwrap_or(Err(xcore_db::Error::AcquireTimeout(READY_TIMEOUT.as_secs()))) {
        Ok(()) => {
            let backend = serde_json::to_value(state.db.backend()).unwrap_or_default();
            let database = format!("ok ({})", backend.as_str().unwrap_or("unknown"));
            if !cache.healthy {
                tracing::warn!(detail = %cache.detail, "readiness check: cache degraded");
            }
            let status = if cache.healthy { "ready" } else { "degraded" };
            let cache = format!("{} ({})", cache.detail, cache.backend.as_str());
            Ok(Json(Readiness { status, checks: Checks { database, cache } }))
        }
        Err(error) => {
            tracing::warn!(%error, "readiness check: database unavailable");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                format!("database unavailable: {error}"),
            ))
        }
    }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "core",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics(State(state): State<CoreState>) -> impl IntoResponse {
    let (open, idle) = state.db.pool_status();
    metrics::gauge!("db_pool_connections", "state" => "open").set(open as f64);
    metrics::gauge!("db_pool_connections", "state" => "idle").set(idle as f64);
    let text = crate::metrics::render(&state.metrics);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
}
