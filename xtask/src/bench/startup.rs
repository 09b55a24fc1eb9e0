//! `bench startup` and `bench memory`: what a freshly started server costs, in time to
//! its first successful `/health` and in resident memory (read here for `bench hashing`
//! too).
//!
//! Each start gets a new scratch directory, so every run creates its SQLite database from
//! nothing, as a first `cargo run` does.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::load::percentile;
use super::servers::{Scratch, answers_ok, free_port, start_xcore, wait_until_healthy};

/// How many cold starts `bench startup` times.
const STARTS: usize = 30;

/// Times [`STARTS`] cold starts, each to its first successful `/health`.
pub(super) fn startup(release: &Path) -> Result<()> {
    let mut samples = Vec::with_capacity(STARTS);
    for _ in 0..STARTS {
        let scratch = Scratch::new("startup")?;
        let port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let start = Instant::now();
        let server = start_xcore(release, &scratch.0, port, &[])?;
        wait_until_healthy(addr, Duration::from_secs(10))?;
        samples.push(start.elapsed().as_secs_f64() * 1000.0);
        drop(server);
    }
    samples.sort_by(f64::total_cmp);
    println!(
        "| startup to first successful /health, fresh SQLite ({STARTS} runs) | min {:.1} ms | median {:.1} ms | p90 {:.1} ms | max {:.1} ms |",
        samples[0],
        percentile(&samples, 0.5),
        percentile(&samples, 0.9),
        samples[samples.len() - 1],
    );
    Ok(())
}

/// The `field` (`VmRSS:`, `VmHWM:`) of `/proc/<pid>/status`, in KiB.
pub(super) fn rss_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// Resident memory when idle after startup, after 1,000 requests, and at its peak.
pub(super) fn memory(release: &Path) -> Result<()> {
    let scratch = Scratch::new("memory")?;
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let server = start_xcore(release, &scratch.0, port, &[])?;
    wait_until_healthy(addr, Duration::from_secs(10))?;
    std::thread::sleep(Duration::from_secs(2));
    let pid = server.0.id();
    let idle = rss_kib(pid, "VmRSS:")?;
    for _ in 0..1000 {
        answers_ok(addr, "/plugins/hello/");
    }
    std::thread::sleep(Duration::from_secs(1));
    let after = rss_kib(pid, "VmRSS:")?;
    let peak = rss_kib(pid, "VmHWM:")?;
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "| resident memory | idle after startup {:.1} MiB | after 1,000 requests {:.1} MiB | peak {:.1} MiB |",
        mib(idle),
        mib(after),
        mib(peak)
    );
    Ok(())
}
