//! `bench http`: requests per second of `GET /plugins/hello/` through xcore's full stack
//! against a bare axum handler, with each server's CPU time per request.
//!
//! Every variant runs at once on its own port and the rounds interleave them, so a drift
//! in the machine's speed touches every variant alike.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::load::{cpu_ticks, ensure_wrk, parse_wrk, quantile, wrk_output};
use super::servers::{
    AGAINST, Process, Scratch, against, answers_ok, free_port, start_binary, start_xcore,
};

/// Rounds of `bench http`; each round measures every variant once.
/// Many short rounds rather than a few long ones: the machine's speed drifts over tens of
/// seconds, and the ratio of two runs a few seconds apart is what stays steady.
const HTTP_ROUNDS: usize = 15;
const HTTP_SECONDS: u32 = 3;
const HTTP_CONNECTIONS: u32 = 64;

/// One wrk run: requests per second, p99 latency (ms) and requests completed.
struct Run {
    rps: f64,
    p99_ms: f64,
    /// Server CPU time (user + system) per request, in microseconds.
    cpu_us: f64,
}

/// Runs wrk against `url` and measures the CPU time process `pid` spent meanwhile.
fn measure(url: &str, seconds: u32, pid: u32) -> Result<Run> {
    let before = cpu_ticks(pid)?;
    let (rps, p99_ms, requests) = wrk(url, seconds)?;
    let ticks = cpu_ticks(pid)? - before;
    // Kernel clock ticks are 10 ms (USER_HZ = 100 on Linux).
    let cpu_us = ticks as f64 * 10_000.0 / requests.max(1.0);
    Ok(Run { rps, p99_ms, cpu_us })
}

/// Requests per second, p99 latency (ms) and requests completed of one wrk run.
fn wrk(url: &str, seconds: u32) -> Result<(f64, f64, f64)> {
    let text = wrk_output(url, seconds, HTTP_CONNECTIONS, None)?;
    parse_wrk(url, &text)
}

/// A server under measurement: its label in the table, its port and its process id.
type Variant = (String, u16, u32);

/// Measures every variant in interleaved rounds and prints the table.
pub(super) fn http(release: &Path) -> Result<()> {
    ensure_wrk()?;
    let scratch = Scratch::new("http")?;
    // Kept alive until the end of the measurements.
    let (variants, _servers) = start_variants(release, &scratch)?;
    warm_up(&variants)?;
    let results = measure_rounds(&variants)?;
    print_table(&variants, &results);
    Ok(())
}

/// Starts the bare baseline, xcore in each configuration, and each earlier build
/// `XCORE_BENCH_AGAINST` names; the variants in table order, and their processes.
fn start_variants(release: &Path, scratch: &Scratch) -> Result<(Vec<Variant>, Vec<Process>)> {
    let bare_port = free_port()?;
    let bare_addr = SocketAddr::from(([127, 0, 0, 1], bare_port));
    let bare = Process(
        Command::new(release.join("examples").join("bare"))
            .arg(bare_addr.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start the bare baseline")?,
    );
    let logged_port = free_port()?;
    let logged_dir = scratch.0.join("logged");
    std::fs::create_dir_all(&logged_dir)?;
    // All at the default log level; one writes access lines, one opens a span per request.
    let logged_env = [("XCORE_LOG__LEVEL", "info"), ("XCORE_SERVER__ACCESS_LOG", "true")];
    let logged = start_xcore(release, &logged_dir, logged_port, &logged_env)?;
    let quiet_port = free_port()?;
    let quiet_dir = scratch.0.join("quiet");
    std::fs::create_dir_all(&quiet_dir)?;
    let quiet_env = [("XCORE_LOG__LEVEL", "info"), ("XCORE_SERVER__ACCESS_LOG", "false")];
    let quiet = start_xcore(release, &quiet_dir, quiet_port, &quiet_env)?;

    let spanned_port = free_port()?;
    let spanned_dir = scratch.0.join("spanned");
    std::fs::create_dir_all(&spanned_dir)?;
    let spanned_env = [("XCORE_LOG__LEVEL", "info"), ("XCORE_LOG__REQUEST_SPAN", "true")];
    let spanned = start_xcore(release, &spanned_dir, spanned_port, &spanned_env)?;

    let mut variants = vec![
        ("bare axum handler (baseline)".to_owned(), bare_port, bare.0.id()),
        ("xcore, full stack (default config)".to_owned(), quiet_port, quiet.0.id()),
        ("xcore, full stack, access_log = true".to_owned(), logged_port, logged.0.id()),
        ("xcore, full stack, log.request_span = true".to_owned(), spanned_port, spanned.0.id()),
    ];
    let mut processes = vec![bare, logged, quiet, spanned];
    for (index, binary) in against()?.into_iter().enumerate() {
        for (config, env) in [("default config", &quiet_env), ("access_log = true", &logged_env)] {
            let (port, dir) = (free_port()?, scratch.0.join(format!("against-{index}-{config}")));
            std::fs::create_dir_all(&dir)?;
            let process = start_binary(&binary, &dir, port, env)?;
            let label = format!("xcore, {config}, {} ({AGAINST})", binary.display());
            variants.push((label, port, process.0.id()));
            processes.push(process);
        }
    }
    Ok((variants, processes))
}

/// Waits until every variant answers, then loads each for two seconds before any is
/// measured.
fn warm_up(variants: &[Variant]) -> Result<()> {
    for (_, port, _) in variants {
        let addr = SocketAddr::from(([127, 0, 0, 1], *port));
        let start = Instant::now();
        while !answers_ok(addr, "/plugins/hello/") {
            if start.elapsed() > Duration::from_secs(10) {
                bail!("{addr} does not answer /plugins/hello/");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        wrk(&format!("http://{addr}/plugins/hello/"), 2)?;
    }
    Ok(())
}

/// The runs of each variant, one per round, in the order of `variants`.
fn measure_rounds(variants: &[Variant]) -> Result<Vec<Vec<Run>>> {
    let mut results: Vec<Vec<Run>> = variants.iter().map(|_| Vec::new()).collect();
    for round in 0..HTTP_ROUNDS {
        // Each round starts with another variant, so no variant always runs first or last.
        for offset in 0..variants.len() {
            let index = (round + offset) % variants.len();
            let (_, port, pid) = variants[index].clone();
            let url = format!("http://127.0.0.1:{port}/plugins/hello/");
            results[index].push(measure(&url, HTTP_SECONDS, pid)?);
        }
    }
    Ok(results)
}

/// Prints how the runs were made and one row per variant, set against the baseline's
/// runs (the first variant's) of the same rounds.
fn print_table(variants: &[Variant], results: &[Vec<Run>]) {
    println!(
        "wrk -t1 -c{HTTP_CONNECTIONS} -d{HTTP_SECONDS}s, {HTTP_ROUNDS} rounds, each measuring \
         every variant in turn (starting with a different one each round); medians over \
         rounds. Ratios are medians of per-round ratios against the baseline of the same \
         round, with their interquartile range. CPU is the server's user + system time per \
         request; its ratio (baseline CPU / variant CPU) is the throughput ratio the two \
         would have with the same CPU, unaffected by the load generator sharing the cores."
    );
    println!(
        "| variant | requests/s | p99 latency | throughput ratio (IQR) | rounds ≥ 0.85 | CPU per request | CPU ratio |"
    );
    println!("|---|---|---|---|---|---|---|");
    for ((label, _, _), rounds) in variants.iter().zip(results) {
        let rps = quantile(rounds.iter().map(|r| r.rps).collect(), 0.5);
        let p99 = quantile(rounds.iter().map(|r| r.p99_ms).collect(), 0.5);
        let cpu = quantile(rounds.iter().map(|r| r.cpu_us).collect(), 0.5);
        let ratios: Vec<f64> =
            rounds.iter().zip(&results[0]).map(|(run, base)| run.rps / base.rps).collect();
        let cpu_ratio = quantile(
            rounds.iter().zip(&results[0]).map(|(run, base)| base.cpu_us / run.cpu_us).collect(),
            0.5,
        );
        let over = ratios.iter().filter(|ratio| **ratio >= 0.85).count();
        println!(
            "| {label} | {rps:.0} | {p99:.2} ms | {:.2} ({:.2}–{:.2}) | {over}/{} | {cpu:.1} µs | {cpu_ratio:.2} |",
            quantile(ratios.clone(), 0.5),
            quantile(ratios.clone(), 0.25),
            quantile(ratios.clone(), 0.75),
            ratios.len(),
        );
    }
}
