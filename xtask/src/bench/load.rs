//! Load and the numbers read from it: wrk runs and their reports, a process's CPU time
//! from `/proc`, and the quantiles the tables print.
//!
//! The HTTP and login benchmarks both read wrk's report, so its parsing lives here once.
//! CPU time comes from `/proc` so a server's cost per request can be told apart from the
//! load generator sharing its cores.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use super::ensure_package;

/// Installs wrk when it is missing.
pub(super) fn ensure_wrk() -> Result<()> {
    ensure_package("wrk", "wrk")
}

/// User plus system CPU time of `pid`, in clock ticks, from `/proc/<pid>/stat`.
pub(super) fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).context("malformed stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |index: usize| -> Result<u64> {
        fields.get(index).and_then(|value| value.parse().ok()).context("malformed stat")
    };
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    Ok(field(11)? + field(12)?)
}

/// The report of one wrk run with `connections` connections, sending the requests
/// `script` (a wrk Lua script) describes, if any.
pub(super) fn wrk_output(
    url: &str,
    seconds: u32,
    connections: u32,
    script: Option<&Path>,
) -> Result<String> {
    let mut command = Command::new("wrk");
    command.args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s"), "--latency"]);
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    let output = command.arg(url).output().context("cannot run wrk")?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The latency percentile `label` (`50%`, `99%`) of a wrk report, in ms.
pub(super) fn wrk_percentile(text: &str, label: &str) -> f64 {
    text.lines()
        .find_map(|line| line.trim().strip_prefix(label))
        .map(str::trim)
        .map_or(f64::NAN, parse_wrk_duration)
}

/// Requests per second, p99 latency (ms) and requests completed of a wrk report.
pub(super) fn parse_wrk(url: &str, text: &str) -> Result<(f64, f64, f64)> {
    let rps = text
        .lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|value| value.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk output:\n{text}"))?;
    let p99 = wrk_percentile(text, "99%");
    let requests = text
        .lines()
        .find(|line| line.contains(" requests in "))
        .and_then(|line| line.split_whitespace().next())
        .and_then(|count| count.parse().ok())
        .with_context(|| format!("no request count in wrk output:\n{text}"))?;
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        eprintln!("warning: wrk reported errors for {url}:\n{text}");
    }
    Ok((rps, p99, requests))
}

/// A wrk duration (`812.00us`, `1.20ms`, `2.00s`) in ms; NaN without a known unit.
fn parse_wrk_duration(text: &str) -> f64 {
    let (number, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (text, f64::NAN)
    };
    number.parse::<f64>().map_or(f64::NAN, |n| n * factor)
}

/// The `q` quantile of `values` (nearest rank); NaN for none.
pub(super) fn quantile(mut values: Vec<f64>, q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let Some(last) = values.len().checked_sub(1) else { return f64::NAN };
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let rank = (q * last as f64).round() as usize;
    values[rank.min(last)]
}

/// The `p` percentile of `sorted`, which must be sorted and not empty.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    // Nearest rank: the value below which p of the samples fall.
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
