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
/// Many short rounds rather than a few long ones: the machine's speed drifts over tens of
/// seconds, and the ratio of two runs a few seconds apart is what stays steady.
const HTTP_ROUNDS: usize = 15;
const HTTP_SECONDS: u32 = 3;
const HTTP_CONNECTIONS: u32 = 64;

pub fn main(args: &[String]) -> Result<()> {
    let which = args.first().map_or("all", String::as_str);
    if which == "cache" {
        return cache();
    }
    if which == "auth-criterion" {
        return auth_criterion();
    }
    if which == "reload" {
        return reload();
    }
    let release = build_release()?;
    println!("machine: {}", machine());
    match which {
        "startup" => startup(&release),
        "memory" => memory(&release),
        "http" => http(&release),
        "instructions" => instructions(&release),
        "auth" => {
            auth_criterion()?;
            login(&release)
        }
        "all" => {
            startup(&release)?;
            memory(&release)?;
            http(&release)?;
            instructions(&release)?;
            cache()?;
            auth_criterion()?;
            login(&release)?;
            reload()
        }
        other => {
            bail!(
                "unknown benchmark `{other}`: startup, memory, http, instructions, cache, auth, \
                 reload or all"
            )
        }
    }
}

/// The cache's criterion benchmarks; the Redis ones run when `XCORE_TEST_REDIS_URL` is set.
fn cache() -> Result<()> {
    println!("machine: {}", machine());
    run(Command::new(cargo()).args(["bench", "-p", "xcore-cache", "--bench", "cache"]))
}

/// The auth crate's criterion benchmarks: `CurrentUser` per request, password hashing.
fn auth_criterion() -> Result<()> {
    println!("machine: {}", machine());
    run(Command::new(cargo()).args(["bench", "-p", "xcore-auth", "--bench", "auth"]))
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

pub(crate) fn machine() -> String {
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
pub(crate) struct Scratch(pub(crate) PathBuf);

impl Scratch {
    pub(crate) fn new(label: &str) -> Result<Self> {
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
pub(crate) struct Process(pub(crate) Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start_xcore(release: &Path, dir: &Path, port: u16, env: &[(&str, &str)]) -> Result<Process> {
    start_binary(&release.join("xcore"), dir, port, env)
}

/// The variable naming other `xcore` binaries (earlier builds, separated by `:`) that
/// `bench http` and `bench instructions` measure beside this one, in the same rounds.
const AGAINST: &str = "XCORE_BENCH_AGAINST";

/// The binaries `XCORE_BENCH_AGAINST` names.
fn against() -> Result<Vec<PathBuf>> {
    let Some(paths) = std::env::var_os(AGAINST) else { return Ok(Vec::new()) };
    std::env::split_paths(&paths)
        .map(|path| {
            if !path.is_file() {
                bail!("{AGAINST} names {}, which is not a file", path.display());
            }
            Ok(path)
        })
        .collect()
}

fn start_binary(binary: &Path, dir: &Path, port: u16, env: &[(&str, &str)]) -> Result<Process> {
    let mut command = Command::new(binary);
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
    TcpStream::connect(addr).is_ok_and(|mut stream| answers_ok_on(&mut stream, path))
}

/// Whether `GET path` on the connection `stream` answers 200.
fn answers_ok_on(stream: &mut TcpStream, path: &str) -> bool {
    let request = format!("GET {path} HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

pub(crate) fn wait_until_healthy(addr: SocketAddr, timeout: Duration) -> Result<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if answers_ok(addr, "/health") {
            return Ok(start.elapsed());
        }
        std::thread::sleep(Duration::from_micros(250));
    }
    bail!("no successful /health on {addr} within {timeout:?}")
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
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
    ensure_package("wrk", "wrk")
}

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

/// User plus system CPU time of `pid`, in clock ticks, from `/proc/<pid>/stat`.
fn cpu_ticks(pid: u32) -> Result<u64> {
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

/// Requests per second, p99 latency (ms) and requests completed of one wrk run.
fn wrk(url: &str, seconds: u32) -> Result<(f64, f64, f64)> {
    let text = wrk_output(url, seconds, HTTP_CONNECTIONS, None)?;
    parse_wrk(url, &text)
}

/// The report of one wrk run with `connections` connections, sending the requests
/// `script` (a wrk Lua script) describes, if any.
fn wrk_output(url: &str, seconds: u32, connections: u32, script: Option<&Path>) -> Result<String> {
    let mut command = Command::new("wrk");
    command.args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s"), "--latency"]);
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    let output = command.arg(url).output().context("cannot run wrk")?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The latency percentile `label` (`50%`, `99%`) of a wrk report, in ms.
fn wrk_percentile(text: &str, label: &str) -> f64 {
    text.lines()
        .find_map(|line| line.trim().strip_prefix(label))
        .map(str::trim)
        .map_or(f64::NAN, parse_wrk_duration)
}

/// Requests per second, p99 latency (ms) and requests completed of a wrk report.
fn parse_wrk(url: &str, text: &str) -> Result<(f64, f64, f64)> {
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
fn quantile(mut values: Vec<f64>, q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let Some(last) = values.len().checked_sub(1) else { return f64::NAN };
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let rank = (q * last as f64).round() as usize;
    values[rank.min(last)]
}

fn http(release: &Path) -> Result<()> {
    ensure_wrk()?;
    let scratch = Scratch::new("http")?;
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
    // Kept alive until the end of the measurements.
    let mut earlier = Vec::new();
    for (index, binary) in against()?.into_iter().enumerate() {
        for (config, env) in [("default config", &quiet_env), ("access_log = true", &logged_env)] {
            let (port, dir) = (free_port()?, scratch.0.join(format!("against-{index}-{config}")));
            std::fs::create_dir_all(&dir)?;
            let process = start_binary(&binary, &dir, port, env)?;
            let label = format!("xcore, {config}, {} ({AGAINST})", binary.display());
            variants.push((label, port, process.0.id()));
            earlier.push(process);
        }
    }
    for (_, port, _) in &variants {
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
    for ((label, _, _), rounds) in variants.iter().zip(&results) {
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
    Ok(())
}

/// Rounds of the login benchmark; each measures `/health` alone, then under login load.
const LOGIN_ROUNDS: usize = 3;
const LOGIN_SECONDS: u32 = 10;
/// Connections sending logins: many more than hashing permits, so the pool stays full.
const LOGIN_CONNECTIONS: u32 = 32;
const HEALTH_CONNECTIONS: u32 = 4;

/// The `POST /auth/login` wrk sends.
const LOGIN_SCRIPT: &str = r#"wrk.method = "POST"
wrk.body = '{"email": "bench@example.com", "password": "correct horse battery staple"}'
wrk.headers["Content-Type"] = "application/json"
"#;

/// Sends `POST path` with a JSON `body`; the status code.
fn post(addr: SocketAddr, path: &str, body: &str) -> Result<u16> {
    let mut stream = TcpStream::connect(addr)?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nhost: bench\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    let status = std::str::from_utf8(&head[9..12])?.parse()?;
    Ok(status)
}

/// Login throughput and latency with the OWASP parameters, and `/health` latency while
/// logins keep every hashing permit busy, against `/health` alone in the same round.
fn login(release: &Path) -> Result<()> {
    ensure_wrk()?;
    let scratch = Scratch::new("login")?;
    // The default limit of 10 logins a minute per address would measure the limiter.
    std::fs::write(
        scratch.0.join("xcore.toml"),
        "[middleware.rate_limit.routes]\n\"/auth/login\" = { requests = 1000000, per_secs = 1 }\n",
    )?;
    std::fs::write(scratch.0.join("login.lua"), LOGIN_SCRIPT)?;
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let _server = start_xcore(release, &scratch.0, port, &[])?;
    wait_until_healthy(addr, Duration::from_secs(10))?;
    let account = r#"{"email": "bench@example.com", "password": "correct horse battery staple"}"#;
    let status = post(addr, "/auth/register", account)?;
    if status != 201 {
        bail!("registering the benchmark account answered {status}");
    }
    let health = format!("http://{addr}/health");
    let login_url = format!("http://{addr}/auth/login");
    let script = scratch.0.join("login.lua");
    wrk_output(&login_url, 2, LOGIN_CONNECTIONS, Some(&script))?;

    let mut rows: [Vec<(f64, f64, f64)>; 3] = Default::default();
    for _ in 0..LOGIN_ROUNDS {
        let alone = wrk_output(&health, LOGIN_SECONDS - 2, HEALTH_CONNECTIONS, None)?;
        let (url, script) = (login_url.clone(), script.clone());
        let logins = std::thread::spawn(move || {
            wrk_output(&url, LOGIN_SECONDS, LOGIN_CONNECTIONS, Some(&script))
        });
        // Let the logins fill the hashing pool before measuring beside them.
        std::thread::sleep(Duration::from_secs(1));
        let loaded = wrk_output(&health, LOGIN_SECONDS - 2, HEALTH_CONNECTIONS, None)?;
        let logins = logins.join().map_err(|_| anyhow::anyhow!("the login load panicked"))??;
        for (row, (text, url)) in
            rows.iter_mut().zip([(&alone, &health), (&loaded, &health), (&logins, &login_url)])
        {
            let (rps, p99, _) = parse_wrk(url, text)?;
            row.push((rps, wrk_percentile(text, "50%"), p99));
        }
    }
    let median = |values: Vec<f64>| quantile(values, 0.5);
    println!(
        "{LOGIN_ROUNDS} rounds; in each, wrk -t1 -c{HEALTH_CONNECTIONS} on /health alone, then \
         again while wrk -t1 -c{LOGIN_CONNECTIONS} sends logins (every one succeeds and starts a \
         session); medians over rounds. Hashing permits: the default (one per core)."
    );
    println!("| measurement | requests/s | p50 latency | p99 latency |");
    println!("|---|---|---|---|");
    let labels = [
        "GET /health alone (baseline)",
        "GET /health while logins saturate the hashing pool",
        "POST /auth/login, argon2id m=19 MiB t=2 p=1",
    ];
    for (label, runs) in labels.iter().zip(rows) {
        let rps = median(runs.iter().map(|run| run.0).collect());
        let p50 = median(runs.iter().map(|run| run.1).collect());
        let p99 = median(runs.iter().map(|run| run.2).collect());
        println!("| {label} | {rps:.0} | {p50:.2} ms | {p99:.2} ms |");
    }
    Ok(())
}

/// Swaps `bench reload` makes under a steady request loop.
const SWAPS: usize = 20;
/// Client threads of the request loop.
const RELOAD_CLIENTS: usize = 4;

/// `cargo xtask dev`'s two costs: the build after a plugin changes, and the swap from the
/// new process being ready to the old one gone; and the requests lost during swaps.
fn reload() -> Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    println!("machine: {}", machine());
    crate::dev::build()?;
    let hello = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/plugins/hello/src/lib.rs");
    let mut builds = Vec::new();
    for _ in 0..3 {
        std::fs::File::options()
            .append(true)
            .open(&hello)?
            .set_modified(std::time::SystemTime::now())?;
        builds.push(crate::dev::build()?.as_secs_f64());
    }
    builds.sort_by(f64::total_cmp);

    let scratch = Scratch::new("reload")?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut supervisor = crate::dev::Supervisor::new(listener, crate::dev::binary(), Vec::new())?
        .current_dir(&scratch.0)
        .env("XCORE_LOG__LEVEL", "warn");
    supervisor.swap()?;
    let running = Arc::new(AtomicBool::new(true));
    let counters: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
    let clients: Vec<_> = (0..RELOAD_CLIENTS)
        .map(|_| {
            let (running, counters) = (running.clone(), counters.clone());
            std::thread::spawn(move || {
                while running.load(Ordering::SeqCst) {
                    let outcome = match TcpStream::connect(addr) {
                        Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => 2,
                        Err(_) => 1,
                        Ok(mut stream) => usize::from(!answers_ok_on(&mut stream, "/health")),
                    };
                    counters[outcome].fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    let mut swaps = Vec::with_capacity(SWAPS);
    for _ in 0..SWAPS {
        std::thread::sleep(Duration::from_millis(100));
        swaps.push(supervisor.swap()?.as_secs_f64() * 1000.0);
    }
    std::thread::sleep(Duration::from_millis(100));
    running.store(false, Ordering::SeqCst);
    for client in clients {
        client.join().map_err(|_| anyhow::anyhow!("a client thread panicked"))?;
    }
    supervisor.stop();
    swaps.sort_by(f64::total_cmp);
    let [ok, failed, refused] = counters.as_ref().each_ref().map(|c| c.load(Ordering::SeqCst));
    println!(
        "| build after touching the hello plugin (debug, 3 runs) | min {:.1} s | median {:.1} s | max {:.1} s |",
        builds[0], builds[1], builds[2]
    );
    println!(
        "| swap, new process ready → old one exited ({SWAPS} swaps) | min {:.1} ms | median {:.1} ms | p90 {:.1} ms | max {:.1} ms |",
        swaps[0],
        percentile(&swaps, 0.5),
        percentile(&swaps, 0.9),
        swaps[SWAPS - 1]
    );
    println!(
        "| requests during the {SWAPS} swaps ({RELOAD_CLIENTS} clients, a new connection each) | {ok} answered 200 | {failed} failed | {refused} refused |"
    );
    Ok(())
}

/// Environment variables given to a server.
type Env<'a> = &'a [(&'a str, &'a str)];

/// How long `instructions` sends requests to each server under callgrind.
const CALLGRIND_SECONDS: u32 = 6;

/// User-space instructions per `GET /plugins/hello/` under callgrind: deterministic, so it
/// decides what wall-clock timings on a shared machine cannot.
fn instructions(release: &Path) -> Result<()> {
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

/// Installs a Debian package when `command` is missing.
pub(crate) fn ensure_package(command: &str, package: &str) -> Result<()> {
    if Command::new(command).arg("--version").output().is_ok() {
        return Ok(());
    }
    eprintln!("installing {package} from Debian's packages");
    let install = || Command::new("apt-get").args(["install", "-y", "-qq", package]).status();
    if !install().is_ok_and(|status| status.success()) {
        run(Command::new("apt-get").args(["update", "-qq"]))?;
        run(Command::new("apt-get").args(["install", "-y", "-qq", package]))?;
    }
    Ok(())
}
