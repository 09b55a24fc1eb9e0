//! `cargo xtask bench …`: the measurements behind `BENCHMARKS.md`.
//!
//! Every benchmark builds the release binary first and runs it from a fresh scratch
//! directory, so each figure is what a user of `cargo run --release` would see. Results
//! are printed as Markdown rows; each comparison runs its baseline in the same invocation,
//! interleaved with the measured case, so both see the same machine state.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{cargo, run};

/// How many cold starts `bench startup` times.
const STARTS: usize = 30;
/// Rounds of `bench http`; each round measures every variant once.
const HTTP_ROUNDS: usize = 5;
const HTTP_SECONDS: u32 = 8;
const HTTP_CONNECTIONS: u32 = 64;

pub fn main(args: &[String]) -> Result<()> {
    let which = args.first().map_or("all", String::as_str);
    let release = build_release()?;
    println!("machine: {}", machine());
    match which {
        "startup" => startup(&release),
        "memory" => memory(&release),
        "http" => http(&release),
        "all" => {
            startup(&release)?;
            memory(&release)?;
            http(&release)
        }
        other => bail!("unknown benchmark `{other}`: startup, memory, http or all"),
    }
}

fn build_release() -> Result<PathBuf> {
    run(Command::new(cargo()).args([
        "build",
        "--release",
        "--quiet",
        "-p",
        "xcore-server",
        "--bin",
        "xcore",
        "--example",
        "bare",
    ]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"), PathBuf::from);
    Ok(target.join("release"))
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|model| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    format!("{cores} cores, {cpu}")
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(label: &str) -> Result<Self> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos();
        let dir = std::env::temp_dir().join(format!("xcore-bench-{label}-{nanos}"));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start_xcore(release: &Path, dir: &Path, port: u16, env: &[(&str, &str)]) -> Result<Process> {
    let mut command = Command::new(release.join("xcore"));
    command
        .current_dir(dir)
        .env("XCORE_SERVER__PORT", port.to_string())
        .env("XCORE_LOG__LEVEL", "warn")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    Ok(Process(command.spawn().context("cannot start xcore")?))
}

/// Whether `GET path` answers 200.
fn answers_ok(addr: SocketAddr, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else { return false };
    let request = format!("GET {path} HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

fn wait_until_healthy(addr: SocketAddr, timeout: Duration) -> Result<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if answers_ok(addr, "/health") {
            return Ok(start.elapsed());
        }
        std::thread::sleep(Duration::from_micros(250));
    }
    bail!("no successful /health on {addr} within {timeout:?}")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    // Nearest rank: the value below which p of the samples fall.
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn startup(release: &Path) -> Result<()> {
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

fn rss_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

fn memory(release: &Path) -> Result<()> {
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

fn ensure_wrk() -> Result<()> {
    if Command::new("wrk").arg("--version").output().is_ok() {
        return Ok(());
    }
    eprintln!("installing wrk from Debian's packages");
    let install = || Command::new("apt-get").args(["install", "-y", "-qq", "wrk"]).status();
    if !install().is_ok_and(|status| status.success()) {
        run(Command::new("apt-get").args(["update", "-qq"]))?;
        run(Command::new("apt-get").args(["install", "-y", "-qq", "wrk"]))?;
    }
    Ok(())
}

/// Requests per second and p99 latency (ms) of one wrk run against `url`.
fn wrk(url: &str, seconds: u32) -> Result<(f64, f64)> {
    let output = Command::new("wrk")
        .args(["-t1", &format!("-c{HTTP_CONNECTIONS}"), &format!("-d{seconds}s"), "--latency", url])
        .output()
        .context("cannot run wrk")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let rps = text
        .lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|value| value.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk output:\n{text}"))?;
    let p99 = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("99%"))
        .map(str::trim)
        .map_or(f64::NAN, parse_wrk_duration);
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        eprintln!("warning: wrk reported errors for {url}:\n{text}");
    }
    Ok((rps, p99))
}

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

fn http(release: &Path) -> Result<()> {
    ensure_wrk()?;
    let scratch = Scratch::new("http")?;
    let bare_port = free_port()?;
    let bare_addr = SocketAddr::from(([127, 0, 0, 1], bare_port));
    let _bare = Process(
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
    // Both at the default log level, so the request span exists; one writes access lines.
    let logged_env = [("XCORE_LOG__LEVEL", "info"), ("XCORE_SERVER__ACCESS_LOG", "true")];
    let _logged = start_xcore(release, &logged_dir, logged_port, &logged_env)?;
    let quiet_port = free_port()?;
    let quiet_dir = scratch.0.join("quiet");
    std::fs::create_dir_all(&quiet_dir)?;
    let quiet_env = [("XCORE_LOG__LEVEL", "info"), ("XCORE_SERVER__ACCESS_LOG", "false")];
    let _quiet = start_xcore(release, &quiet_dir, quiet_port, &quiet_env)?;

    let variants = [
        ("bare axum handler (baseline)", bare_port),
        ("xcore, full stack (default config)", quiet_port),
        ("xcore, full stack, access_log = true", logged_port),
    ];
    for (_, port) in &variants {
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
    let mut results: Vec<Vec<(f64, f64)>> = vec![Vec::new(); variants.len()];
    for _ in 0..HTTP_ROUNDS {
        for (index, (_, port)) in variants.iter().enumerate() {
            results[index]
                .push(wrk(&format!("http://127.0.0.1:{port}/plugins/hello/"), HTTP_SECONDS)?);
        }
    }
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    println!(
        "wrk -t1 -c{HTTP_CONNECTIONS} -d{HTTP_SECONDS}s, {HTTP_ROUNDS} rounds, each measuring \
         every variant in turn; medians over rounds. The ratio is the median of the per-round \
         ratios (each variant against the baseline of the same round), which cancels the \
         machine's drift between rounds."
    );
    println!("| variant | requests/s | p99 latency | ratio to baseline | per-round ratios |");
    println!("|---|---|---|---|---|");
    for ((label, _), rounds) in variants.iter().zip(&results) {
        let rps = median(rounds.iter().map(|r| r.0).collect());
        let p99 = median(rounds.iter().map(|r| r.1).collect());
        let ratios: Vec<f64> =
            rounds.iter().zip(&results[0]).map(|(run, base)| run.0 / base.0).collect();
        let shown: Vec<String> = ratios.iter().map(|ratio| format!("{ratio:.2}")).collect();
        println!(
            "| {label} | {rps:.0} | {p99:.2} ms | {:.2} | {} |",
            median(ratios.clone()),
            shown.join(", ")
        );
    }
    Ok(())
}
