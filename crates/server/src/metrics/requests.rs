//! `http_requests_total` and `http_request_duration_seconds`, through the `metrics` facade
//! into the Prometheus exporter.
//!
//! Every label comes from a closed set, so no request can add series at will: the route
//! template (or `unmatched`), the method when it is one of HTTP's standard ones (`other`
//! otherwise) and the status code. Each thread looks a (route, method, status) up in the
//! recorder once and keeps the handles, so a request pays a counter and a histogram update
//! and no label formatting or registry lookup.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::Method;
use metrics::{Counter, Histogram};

/// A route: its number (from [`route_id`]) and its label.
#[derive(Debug, Clone, Copy)]
pub struct Route<'a> {
    pub id: usize,
    pub label: &'a str,
}

/// A new route number, unique in the process: each thread keeps a route's handles at its
/// number.
pub fn route_id() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// One (method, status) of a route, as this thread recorded it.
struct Handles {
    method: &'static str,
    status: u16,
    count: Counter,
    duration: Histogram,
}

thread_local! {
    /// This thread's handles, by route number.
    static LOCAL: RefCell<Vec<Vec<Handles>>> = const { RefCell::new(Vec::new()) };
}

/// Records a request to `route` answered with `status` after `elapsed`.
pub fn record(route: Route<'_>, method: &Method, status: u16, elapsed: Duration) {
    let method = method_label(method);
    LOCAL.with_borrow_mut(|local| {
        if local.len() <= route.id {
            local.resize_with(route.id + 1, Vec::new);
        }
        let entries = &mut local[route.id];
        let index = match entries.iter().position(|h| h.status == status && h.method == method) {
            Some(index) => index,
            None => {
                let labels = [
                    ("method", method.to_owned()),
                    ("route", route.label.to_owned()),
                    ("status", status.to_string()),
                ];
                entries.push(Handles {
                    method,
                    status,
                    count: metrics::counter!("http_requests_total", &labels),
                    duration: metrics::histogram!("http_request_duration_seconds", &labels),
                });
                entries.len() - 1
            }
        };
        let handles = &entries[index];
        handles.count.increment(1);
        handles.duration.record(elapsed.as_secs_f64());
    });
}

/// The method's label: its name for HTTP's standard methods, `other` for anything a client
/// made up (each made-up name would otherwise be a series of its own).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find_map(|line| line.strip_prefix(prefix))
    }

    #[test]
    fn threads_are_summed_into_cumulative_buckets() {
        let handle = crate::metrics::handle();
        let route = Route { id: route_id(), label: "/test/\"quoted\"" };
        let fast = Duration::from_micros(300);
        let slow = Duration::from_millis(30);
        let threads: Vec<_> = (0..3)
            .map(|_| {
                std::thread::spawn(move || {
                    for _ in 0..10 {
                        record(route, &Method::GET, 200, fast);
                    }
                    record(route, &Method::GET, 200, slow);
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        record(route, &Method::POST, 404, fast);
        let made_up = Method::from_bytes(b"XAAAA").unwrap();
        record(route, &made_up, 405, fast);
        record(route, &Method::from_bytes(b"XBBBB").unwrap(), 405, fast);
        handle.run_upkeep();
        let text = crate::metrics::render(&handle);
        let labels = "method=\"GET\",route=\"/test/\\\"quoted\\\"\",status=\"200\"";
        assert_eq!(line(&text, &format!("http_requests_total{{{labels}}} ")), Some("33"), "{text}");
        let bucket = |le: &str| {
            line(&text, &format!("http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} "))
        };
        assert_eq!(bucket("0.0005"), Some("30"), "{text}");
        assert_eq!(bucket("0.025"), Some("30"));
        assert_eq!(bucket("0.05"), Some("33"));
        assert_eq!(bucket("+Inf"), Some("33"));
        let sum: f64 = line(&text, &format!("http_request_duration_seconds_sum{{{labels}}} "))
            .unwrap()
            .parse()
            .unwrap();
        assert!((sum - (30.0 * 0.0003 + 3.0 * 0.03)).abs() < 1e-9, "{sum}");
        let post = "method=\"POST\",route=\"/test/\\\"quoted\\\"\",status=\"404\"";
        assert_eq!(line(&text, &format!("http_requests_total{{{post}}} ")), Some("1"));
        // Regression (issue "Hardening"): made-up methods share one label.
        let other = "method=\"other\",route=\"/test/\\\"quoted\\\"\",status=\"405\"";
        assert_eq!(line(&text, &format!("http_requests_total{{{other}}} ")), Some("2"), "{text}");
        assert!(!text.contains("XAAAA"), "{text}");
    }
}
