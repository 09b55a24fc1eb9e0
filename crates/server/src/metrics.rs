//! The Prometheus recorder behind `/metrics`.
//!
//! Any crate records through the `metrics` facade (`metrics::counter!` and friends)
//! without depending on the server; the server installs the one process-wide recorder and
//! renders it. [`requests`] records the two per-request metrics into it.

pub mod requests;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Request latency buckets in seconds, from 0.5 ms to 10 s.
const LATENCY_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The process-wide recorder's handle, installing the recorder on first use.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(install).clone()
}

fn install() -> PrometheusHandle {
    let builder = PrometheusBuilder::new();
    let matcher = Matcher::Full("http_request_duration_seconds".to_owned());
    let builder = match builder.set_buckets_for_metric(matcher, &LATENCY_BUCKETS) {
        Ok(builder) => builder,
        Err(error) => {
            tracing::warn!(%error, "request latency buckets refused; using summaries");
            PrometheusBuilder::new()
        }
    };
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    if let Err(error) = metrics::set_global_recorder(recorder) {
        tracing::warn!(%error, "another metrics recorder is installed; /metrics will be empty");
    }
    metrics::describe_gauge!("xcore_build_info", "Always 1; the labels describe the build.");
    metrics::describe_counter!(
        "http_requests_total",
        "HTTP requests answered, by method, route and status."
    );
    metrics::describe_histogram!(
        "http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time to answer HTTP requests, by method, route and status."
    );
    metrics::gauge!("xcore_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    handle
}

/// Everything `/metrics` shows, in the Prometheus text format.
pub fn render(handle: &PrometheusHandle) -> String {
    handle.render()
}
