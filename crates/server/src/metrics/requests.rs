//! `http_requests_total` and `http_request_duration_seconds`, recorded per worker thread
//! and summed when `/metrics` is rendered.
//!
//! Every request records one count and one duration. Through the `metrics` facade that is
//! two atomic read-modify-writes on counters shared by every worker thread, whose cache
//! line then moves between cores on each request, plus a sample pushed to a shared bucket
//! that a background task drains. Here each thread owns its series: recording is a few
//! plain loads and stores to memory no other thread writes, and the renderer reads the
//! series of every thread and adds them up.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::http::Method;

use super::LATENCY_BUCKETS;

/// A route: its number (from [`route_id`]) and its label.
#[derive(Debug, Clone, Copy)]
pub struct Route<'a> {
    pub id: usize,
    pub label: &'a str,
}

/// A new route number, unique in the process: each thread keeps a route's series at its
/// number.
pub fn route_id() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// One (route, method, status) as seen by one thread. Only its thread writes it.
struct Series {
    route: Box<str>,
    method: Method,
    status: u16,
    count: AtomicU64,
    /// The sum of durations in seconds, as `f64` bits.
    sum: AtomicU64,
    /// Requests per bucket of `LATENCY_BUCKETS`, not cumulative; the last is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
}

impl Series {
    fn observe(&self, seconds: f64) {
        // One writer: a load and a store, no read-modify-write.
        let bump = |counter: &AtomicU64| {
            counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed)
        };
        bump(&self.count);
        bump(&self.buckets[LATENCY_BUCKETS.partition_point(|bound| *bound < seconds)]);
        let sum = f64::from_bits(self.sum.load(Ordering::Relaxed)) + seconds;
        self.sum.store(sum.to_bits(), Ordering::Relaxed);
    }
}

/// Every thread's series, for the renderer.
static SERIES: Mutex<Vec<Arc<Series>>> = Mutex::new(Vec::new());

thread_local! {
    /// This thread's series, by route number.
    static LOCAL: RefCell<Vec<Vec<Arc<Series>>>> = const { RefCell::new(Vec::new()) };
}

/// Records a request to `route` answered with `status` after `elapsed`.
pub fn record(route: Route<'_>, method: &Method, status: u16, elapsed: Duration) {
    LOCAL.with_borrow_mut(|local| {
        if local.len() <= route.id {
            local.resize_with(route.id + 1, Vec::new);
        }
        let entries = &mut local[route.id];
        let series = match entries.iter().find(|s| s.status == status && s.method == method) {
            Some(series) => series,
            None => {
                let series = Arc::new(Series {
                    route: route.label.into(),
                    method: method.clone(),
                    status,
                    count: AtomicU64::new(0),
                    sum: AtomicU64::new(0.0_f64.to_bits()),
                    buckets: std::array::from_fn(|_| AtomicU64::new(0)),
                });
                SERIES.lock().unwrap_or_else(PoisonError::into_inner).push(series.clone());
                entries.push(series);
                &entries[entries.len() - 1]
            }
        };
        series.observe(elapsed.as_secs_f64());
    });
}

/// Totals of one (route, method, status) over every thread.
#[derive(Default)]
struct Totals {
    count: u64,
    sum: f64,
    buckets: [u64; LATENCY_BUCKETS.len() + 1],
}

/// Both metrics in the Prometheus text format.
pub fn render() -> String {
    let mut totals: BTreeMap<(String, String, u16), Totals> = BTreeMap::new();
    for series in SERIES.lock().unwrap_or_else(PoisonError::into_inner).iter() {
        let key = (series.method.as_str().to_owned(), series.route.to_string(), series.status);
        let total = totals.entry(key).or_default();
        total.count += series.count.load(Ordering::Relaxed);
        total.sum += f64::from_bits(series.sum.load(Ordering::Relaxed));
        for (total, bucket) in total.buckets.iter_mut().zip(&series.buckets) {
            *total += bucket.load(Ordering::Relaxed);
        }
    }
    let mut out = String::new();
    let labels = |(method, route, status): &(String, String, u16)| {
        format!("method=\"{}\",route=\"{}\",status=\"{status}\"", escape(method), escape(route))
    };
    out.push_str(
        "# HELP http_requests_total HTTP requests answered, by method, route and status.\n",
    );
    out.push_str("# TYPE http_requests_total counter\n");
    for (key, total) in &totals {
        let _ = writeln!(out, "http_requests_total{{{}}} {}", labels(key), total.count);
    }
    out.push_str(
        "# HELP http_request_duration_seconds Time to answer HTTP requests, by method, route and status.\n",
    );
    out.push_str("# TYPE http_request_duration_seconds histogram\n");
    for (key, total) in &totals {
        let labels = labels(key);
        let mut cumulative = 0;
        for (bound, count) in LATENCY_BUCKETS.iter().zip(&total.buckets) {
            cumulative += count;
            let _ = writeln!(
                out,
                "http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
            total.count
        );
        let _ = writeln!(out, "http_request_duration_seconds_sum{{{labels}}} {}", total.sum);
        let _ = writeln!(out, "http_request_duration_seconds_count{{{labels}}} {}", total.count);
    }
    out
}

/// `value` as a Prometheus label value: backslash, double quote and newline escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find_map(|line| line.strip_prefix(prefix))
    }

    #[test]
    fn threads_are_summed_into_cumulative_buckets() {
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
        let text = render();
        let labels = "method=\"GET\",route=\"/test/\\\"quoted\\\"\",status=\"200\"";
        assert_eq!(line(&text, &format!("http_requests_total{{{labels}}} ")), Some("33"), "{text}");
        let bucket = |le: &str| {
            line(&text, &format!("http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} "))
        };
        assert_eq!(bucket("0.0005"), Some("30"));
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
    }
}
