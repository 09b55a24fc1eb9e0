//! The second half of `bench auth`: login throughput with the OWASP hashing
//! parameters, and what saturated hashing does to `/health` beside it.
//!
//! Hashing runs on a bounded pool of permits, so the question is not only how many logins
//! a second the server manages but whether the rest of it stays responsive meanwhile.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};

use super::load::{ensure_wrk, parse_wrk, quantile, wrk_output, wrk_percentile};
use super::servers::{Scratch, free_port, start_xcore, wait_until_healthy};

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
pub(crate) fn post(addr: SocketAddr, path: &str, body: &str) -> Result<u16> {
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
pub(super) fn login(release: &Path) -> Result<()> {
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
