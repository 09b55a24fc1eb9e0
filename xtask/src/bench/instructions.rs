//! `bench instructions`: user-space instructions per request under callgrind.
//!
//! Instruction counts do not depend on what else the machine is doing, so they settle the
//! comparisons wall-clock timings on a shared machine leave open. The earlier builds
//! `XCORE_BENCH_AGAINST` names are counted in the same run.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::ensure_package;
use super::load::ensure_wrk;
use super::servers::{AGAINST, Process, Scratch, against, answers_ok, free_port};
use crate::run;

/// Environment variables given to a server.
type Env<'a> = &'a [(&'a str, &'a str)];

/// How long `instructions` sends requests to each server under callgrind.
const CALLGRIND_SECONDS: u32 = 6;

/// User-space instructions per `GET /plugins/hello/` under callgrind: deterministic, so it
/// decides what wall-clock timings on a shared machine cannot.
pub(super) fn instructions(release: &Path) -> Result<()> {
    ensure_wrk()?;
    ensure_package("valgrind", "valgrind")?;
    let scratch = Scratch::new("instructions")?;
    let bare = release.join("examples").join("bare");
    let xcore = release.join("xcore");
    let earlier = against()?;
    let labels: Vec<String> =
        earlier.iter().map(|path| format!("{} ({AGAINST})", path.display())).collect();
    let mut variants: Vec<(&str, &Path, Env<'_>)> = vec![
        ("bare axum handler (baseline)", &bare, &[]),
        ("xcore, default config", &xcore, &[]),
        ("xcore, log.request_span = true", &xcore, &[("XCORE_LOG__REQUEST_SPAN", "true")]),
    ];
    for (path, label) in earlier.iter().zip(&labels) {
        variants.push((label, path, &[]));
    }
    println!("| server | requests | instructions per request | over the baseline |");
    println!("|---|---|---|---|");
    let mut baseline = None;
    for (index, (label, binary, env)) in variants.into_iter().enumerate() {
        let dir = scratch.0.join(format!("run-{index}"));
        std::fs::create_dir_all(&dir)?;
        let (requests, per_request) = callgrind(binary, &dir, env)?;
        let base = *baseline.get_or_insert(per_request);
        let over =
            if index == 0 { "—".to_owned() } else { format!("+{:.0}", per_request - base) };
        println!("| {label} | {requests:.0} | {per_request:.0} | {over} |");
    }
    Ok(())
}

/// Runs `binary` under callgrind, warms it up, counts the instructions of a wrk run and
/// returns the requests served and the instructions per request.
fn callgrind(binary: &Path, dir: &Path, env: &[(&str, &str)]) -> Result<(f64, f64)> {
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let out = dir.join("callgrind.out");
    let mut command = Command::new("valgrind");
    command
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(binary)
        .current_dir(dir)
        .env("XCORE_SERVER__PORT", port.to_string())
        .env("XCORE_LOG__LEVEL", "info")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if binary.ends_with("bare") {
        command.arg(addr.to_string());
    }
    for (key, value) in env {
        command.env(key, value);
    }
    let server = Process(command.spawn().context("cannot start valgrind")?);
    let start = Instant::now();
    while !answers_ok(addr, "/plugins/hello/") {
        if start.elapsed() > Duration::from_secs(60) {
            bail!("{} does not answer under valgrind", binary.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..50 {
        answers_ok(addr, "/plugins/hello/");
    }
    let pid = server.0.id().to_string();
    let control = |action: &str| {
        run(Command::new("callgrind_control")
            .args([action, pid.as_str()])
            .stdout(Stdio::null())
            .stderr(Stdio::null()))
    };
    control("-z")?;
    let output = Command::new("wrk")
        .args(["-t1", "-c4", &format!("-d{CALLGRIND_SECONDS}s")])
        .arg(format!("http://{addr}/plugins/hello/"))
        .output()
        .context("cannot run wrk")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let requests: f64 = text
        .lines()
        .find(|line| line.contains(" requests in "))
        .and_then(|line| line.split_whitespace().next())
        .and_then(|count| count.parse().ok())
        .with_context(|| format!("no request count in wrk output:\n{text}"))?;
    control("-d")?;
    drop(server);
    // The dump requested above is written next to `out`, suffixed with a part number.
    let mut totals = 0.0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default();
        if name.starts_with("callgrind.out.") {
            let dump = std::fs::read_to_string(&path)?;
            let total = dump
                .lines()
                .find_map(|line| line.strip_prefix("totals:"))
                .and_then(|value| value.trim().parse::<f64>().ok())
                .with_context(|| format!("no totals in {}", path.display()))?;
            totals += total;
        }
    }
    if totals == 0.0 {
        bail!("callgrind wrote no dump in {}", dir.display());
    }
    Ok((requests, totals / requests.max(1.0)))
}
