//! The host's own routes: `/health`, `/ready`, `/metrics`, the OpenAPI document and the
//! docs page.
//!
//! They are a [`Routes`] like any plugin's, so their paths are known before the
//! application is built (plugins cannot mount over them) and the edge's route table comes
//! from what is actually mounted. `/ready` asks every module's readiness probe;
//! `/metrics` runs every module's scrape callback before rendering.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use bytes::Bytes;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::routes;
use xcore_core::http::ApiError;
use xcore_core::{Probe, Routes, Scrape};

/// What the host's handlers need.
#[derive(Clone)]
pub struct HostState {
    pub metrics: PrometheusHandle,
    /// Set once shutdown begins, so `/ready` tells load balancers to stop sending traffic.
    pub draining: Arc<AtomicBool>,
    pub probes: Arc<[Probe]>,
    pub scrapes: Arc<[Scrape]>,
    /// The OpenAPI document, serialized once.
    pub openapi: Bytes,
    pub docs: Arc<utoipa_swagger_ui::Config<'static>>,
}

impl std::fmt::Debug for HostState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostState").field("probes", &self.probes).finish_non_exhaustive()
    }
}

/// Where the OpenAPI document is served, and the docs page that reads it.
pub const OPENAPI_PATH: &str = "/openapi.json";

/// The host's routes, waiting for their state.
pub fn host_routes() -> Routes<HostState> {
    Routes::new()
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(metrics))
        .route(OPENAPI_PATH, get(openapi))
        .route("/docs", get(|| async { Redirect::permanent("/docs/") }))
        .route("/docs/", get(docs_index))
        .route("/docs/{*rest}", get(docs_file))
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
    /// Each dependency checked (`database`, `cache`, …): `ok (<backend>)`, or
    /// `degraded: <reason>` for an optional one that fails.
    checks: BTreeMap<String, String>,
}

/// How long `/ready` waits for a probe: load balancers usually give up after a second or
/// two.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Readiness: the server can do its work (every essential dependency answers, shutdown
/// has not begun). A failing optional dependency makes the server degraded, not unready.
#[utoipa::path(get, path = "/ready", tag = "core", responses(
    (status = 200, body = Readiness),
    (status = 503, description = "an essential dependency is unavailable or the server is shutting down"),
))]
async fn ready(State(state): State<HostState>) -> Result<Json<Readiness>, ApiError> {
    if state.draining.load(Ordering::Relaxed) {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "shutting down"));
    }
    let results = futures_util::future::join_all(state.probes.iter().map(|probe| async move {
        let result = tokio::time::timeout(READY_TIMEOUT, probe.check())
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {} s", READY_TIMEOUT.as_secs())));
        (probe, result)
    }))
    .await;
    let mut checks = BTreeMap::new();
    let mut degraded = false;
    for (probe, result) in results {
        let line = match result {
            Ok(detail) => format!("ok ({detail})"),
            Err(problem) if probe.essential => {
                tracing::warn!(check = probe.name, %problem, "readiness check: unavailable");
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not_ready",
                    format!("{} unavailable: {problem}", probe.name),
                ));
            }
            Err(problem) => {
                tracing::warn!(check = probe.name, %problem, "readiness check: degraded");
                degraded = true;
                format!("degraded: {problem}")
            }
        };
        checks.insert(probe.name.to_owned(), line);
    }
    let status = if degraded { "degraded" } else { "ready" };
    Ok(Json(Readiness { status, checks }))
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "core",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics(State(state): State<HostState>) -> impl IntoResponse {
    for scrape in state.scrapes.iter() {
        scrape.run();
    }
    let text = crate::metrics::render(&state.metrics);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
}

async fn openapi(State(state): State<HostState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], state.openapi)
}

async fn docs_index(State(state): State<HostState>) -> Response {
    docs(&state, "")
}

async fn docs_file(State(state): State<HostState>, Path(rest): Path<String>) -> Response {
    docs(&state, &rest)
}

/// A file of the Swagger UI embedded in the binary.
fn docs(state: &HostState, path: &str) -> Response {
    match utoipa_swagger_ui::serve(path, state.docs.clone()) {
        Ok(Some(file)) => {
            let mut response =
                ([(header::CONTENT_TYPE, file.content_type)], file.bytes.into_owned())
                    .into_response();
            if file.gzpipped {
                response
                    .headers_mut()
                    .insert(header::CONTENT_ENCODING, header::HeaderValue::from_static("gzip"));
            }
            response
        }
        Ok(None) => ApiError::not_found(format!("no file /docs/{path}")).into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot serve the docs page");
            ApiError::internal().into_response()
        }
    }
}
