//! `bench fanout`: one group's fan-out over xcore's WebSocket gateway, and over xcore's
//! Socket.IO endpoint, against Socket.IO 4 on Node, driven by the same native client
//! (`crates/bench-fanout`) in one run.
//!
//! Both servers run at once and the client alternates between the three rate by rate, so
//! each rate is measured on all under the same machine state. The two xcore variants run
//! in two xcore processes of the same build. The rates go up until a server
//! misses the target (p99 delivery latency of 100 ms or more, deliveries lost, or the rate
//! not reached); the highest rate it held is its figure. Then each gets the idle sockets
//! whose RSS growth gives the memory per connection. Server CPU time comes from `/proc`,
//! read by the client around each round, so the client's own work on the shared cores is
//! not counted.
//!
//! xcore runs with persistence as shipped (SQLite in the scratch directory) and with the
//! limits that would otherwise measure themselves lifted: the per-socket frame budget,
//! the message rate limiter, the daily quota, the login and registration rate limits, and
//! the connections per user (the idle sockets reuse the members' accounts). Registering a
//! thousand accounts with the OWASP argon2 parameters takes minutes on two cores, so the
//! run lowers them through `[auth.password]`: hashing is not what this measures.
//! The Socket.IO peer (`xtask/bench/socketio`) appends each message to a file before
//! emitting it, without fsync; it has no accounts and no authorization.
//!
//! `XCORE_BENCH_FANOUT_MEMBERS` (1000), `…_IDLE` (10000), `…_SECONDS` (10 per round) and
//! `…_RATES` (deliveries per second, comma-separated) change the scenario, for smoke runs.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::ensure_package;
use super::servers::{Process, Scratch, free_port, start_xcore, wait_until_healthy};
use crate::{cargo, run};

/// The Socket.IO peer's sources, copied into the scratch directory it is installed in.
const PACKAGE_JSON: &str = include_str!("../../bench/socketio/package.json");
const SERVER_JS: &str = include_str!("../../bench/socketio/server.js");

/// Deliveries per second tried in turn, until a server misses the target.
const RATES: &str = "5000,10000,20000,30000,40000,50000,60000,70000,80000,90000,100000,120000,140000,160000,180000,200000,220000,250000,280000,320000,360000,400000";

/// xcore's configuration for the run: see the module documentation.
const XCORE_ENV: &[(&str, &str)] = &[
    ("XCORE_AUTH__PASSWORD__MEMORY_KIB", "64"),
    ("XCORE_AUTH__PASSWORD__ITERATIONS", "1"),
    ("XCORE_AUTH__ACCESS_TTL_SECS", "86400"),
    (
        "XCORE_MIDDLEWARE__RATE_LIMIT__ROUTES",
        r#"{"/auth/login" = { enabled = false }, "/auth/register" = { enabled = false }}"#,
    ),
    ("XCORE_MESSAGING__GATEWAY__FRAMES_PER_SEC", "1000000"),
    ("XCORE_MESSAGING__GATEWAY__FRAMES_BURST", "1000000"),
    ("XCORE_MESSAGING__GATEWAY__MAX_CONNECTIONS_PER_USER", "1000000"),
    ("XCORE_PLUGINS__MESSAGE_RATE_LIMITER__PER_USER__MESSAGES", "1000000"),
    ("XCORE_PLUGINS__MESSAGE_RATE_LIMITER__PER_USER__PER_SECS", "1"),
    ("XCORE_PLUGINS__MESSAGE_RATE_LIMITER__PER_GROUP__MESSAGES", "1000000"),
    ("XCORE_PLUGINS__MESSAGE_RATE_LIMITER__PER_GROUP__PER_SECS", "1"),
    ("XCORE_PLUGINS__QUOTAS__MESSAGES_PER_DAY__MAX", "1000000000"),
    ("XCORE_PLUGINS__QUOTAS__STORED_BYTES__MAX", "1000000000000"),
];

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_owned())
}

/// Runs the comparison and prints its tables.
pub(super) fn fanout(release: &Path) -> Result<()> {
    run(Command::new(cargo()).args([
        "build",
        "--release",
        "--quiet",
        "-p",
        "xcore-bench-fanout",
        "--bin",
        "fanout",
    ]))?;
    let members = env_or("XCORE_BENCH_FANOUT_MEMBERS", "1000");
    let idle = env_or("XCORE_BENCH_FANOUT_IDLE", "10000");
    let seconds = env_or("XCORE_BENCH_FANOUT_SECONDS", "10");
    let rates = env_or("XCORE_BENCH_FANOUT_RATES", RATES);

    let scratch = Scratch::new("fanout")?;
    // One xcore process per protocol, so that neither's sockets, database or memory
    // count in the other's figures.
    let mut xcores = Vec::new();
    for name in ["xcore", "xcore-socketio"] {
        let dir = scratch.0.join(name);
        std::fs::create_dir_all(&dir)?;
        let port = free_port()?;
        let process = start_xcore(release, &dir, port, XCORE_ENV)?;
        wait_until_healthy(SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(20))?;
        xcores.push((process, port));
    }
    let [(xcore, port), (xcore_socketio, socketio_port_of_xcore)] =
        <[_; 2]>::try_from(xcores).map_err(|_| anyhow::anyhow!("two xcore processes"))?;
    let (socketio, socketio_port) = start_socketio(&scratch.0)?;

    let output = Command::new(release.join("fanout"))
        .args(["--xcore", &format!("http://127.0.0.1:{port}")])
        .args(["--xcore-pid", &xcore.0.id().to_string()])
        .args(["--xcore-socketio", &format!("http://127.0.0.1:{socketio_port_of_xcore}")])
        .args(["--xcore-socketio-pid", &xcore_socketio.0.id().to_string()])
        .args(["--socketio", &format!("http://127.0.0.1:{socketio_port}")])
        .args(["--socketio-pid", &socketio.0.id().to_string()])
        .args(["--members", &members, "--idle", &idle, "--seconds", &seconds, "--rates", &rates])
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run the fanout client")?;
    if !output.status.success() {
        bail!("the fanout client failed ({})", output.status);
    }
    let results: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("the fanout client printed something that is not JSON")?;
    print_tables(&results, &members, &seconds);
    drop(socketio);
    drop(xcore_socketio);
    drop(xcore);
    Ok(())
}

/// Installs the Socket.IO peer from the npm registry in `dir` and starts it; the process
/// and its port.
fn start_socketio(dir: &Path) -> Result<(Process, u16)> {
    ensure_package("node", "nodejs")?;
    ensure_package("npm", "npm")?;
    let dir = dir.join("socketio");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("package.json"), PACKAGE_JSON)?;
    std::fs::write(dir.join("server.js"), SERVER_JS)?;
    run(Command::new("npm")
        .args(["install", "--omit=dev", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir))?;
    let port = free_port()?;
    let child = Command::new("node")
        .arg("server.js")
        .current_dir(&dir)
        .env("PORT", port.to_string())
        .env("MESSAGES_FILE", dir.join("messages.jsonl"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start node")?;
    let process = Process(child);
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() > Duration::from_secs(20) {
            bail!("the Socket.IO peer did not listen on {port} within 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((process, port))
}

/// A latency in ms, or `lost` when too few deliveries came to have that quantile.
fn ms(value: &Value) -> String {
    value.as_f64().map_or_else(|| "lost".to_owned(), |ms| format!("{ms:.1} ms"))
}

fn print_tables(results: &[Value], members: &str, seconds: &str) {
    println!(
        "1 group of {members} members, 100-byte messages, one sender at a fixed rate, {seconds} s \
         per round; xcore (SQLite, persistence on) over its gateway protocol and over Socket.IO \
         (`/chat`), and Socket.IO 4 on Node (append to a file), alternate rate by rate. A rate \
         is held when 99.9% of deliveries arrive, at 95% of the rate or more, with p99 under \
         100 ms."
    );
    println!(
        "| server | deliveries/s asked | deliveries/s done | p50 | p99 | ack p50 | ack p99 | server CPU per delivery | held |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let rounds = results.iter().filter(|row| row["kind"] == "round");
    for row in rounds.clone() {
        let held = held(row);
        println!(
            "| {} | {:.0} | {:.0} | {} | {} | {} | {} | {:.1} µs | {} |",
            row["server"].as_str().unwrap_or("?"),
            row["rate"].as_f64().unwrap_or(f64::NAN),
            row["deliveries_per_sec"].as_f64().unwrap_or(f64::NAN),
            ms(&row["p50_ms"]),
            ms(&row["p99_ms"]),
            ms(&row["ack_p50_ms"]),
            ms(&row["ack_p99_ms"]),
            row["cpu_us_per_delivery"].as_f64().unwrap_or(f64::NAN),
            if held { "yes" } else { "no" },
        );
    }
    println!();
    println!("| server | highest rate held (deliveries/s) | its server CPU per delivery |");
    println!("|---|---|---|");
    for server in ["xcore", "xcore-socketio", "socket.io"] {
        let best =
            rounds.clone().filter(|row| row["server"] == server && held(row)).max_by(|a, b| {
                let rate = |row: &Value| row["rate"].as_f64().unwrap_or(0.0);
                rate(a).total_cmp(&rate(b))
            });
        match best {
            Some(row) => println!(
                "| {server} | {:.0} | {:.1} µs |",
                row["rate"].as_f64().unwrap_or(f64::NAN),
                row["cpu_us_per_delivery"].as_f64().unwrap_or(f64::NAN)
            ),
            None => println!("| {server} | none | |"),
        }
    }
    let idle: Vec<&Value> = results.iter().filter(|row| row["kind"] == "idle").collect();
    if !idle.is_empty() {
        println!();
        println!("| server | idle connections | RSS before | RSS after | per connection |");
        println!("|---|---|---|---|---|");
        for row in idle {
            println!(
                "| {} | {} | {:.1} MiB | {:.1} MiB | {:.1} KiB |",
                row["server"].as_str().unwrap_or("?"),
                row["connections"],
                row["rss_before_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0,
                row["rss_after_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0,
                row["bytes_per_connection"].as_f64().unwrap_or(f64::NAN) / 1024.0,
            );
        }
    }
}

/// Whether a round held its rate with p99 under 100 ms.
fn held(row: &Value) -> bool {
    row["sustained"].as_bool().unwrap_or(false)
        && row["p99_ms"].as_f64().is_some_and(|p99| p99 < 100.0)
}
