//! `bench hashing`: what password hashing leaves in resident memory, after a run of
//! registrations, each hashing a password with argon2id at 19 MiB.
//!
//! Memory held after the work is done is the question, so the figure is the server's
//! `VmRSS` once the last registration has answered, and again a few seconds later, beside
//! its idle size. Each earlier build `XCORE_BENCH_AGAINST` names runs the same load in
//! the same invocation, one server after the other.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::login::post;
use super::servers::{Scratch, against, free_port, start_binary, wait_until_healthy};
use super::startup::rss_kib;

/// Accounts registered, and how many registrations are in flight at once.
const ACCOUNTS: usize = 200;
const AT_ONCE: usize = 8;

/// Registration is limited to 10 an hour per address by default.
const CONFIG: &str =
    "[middleware.rate_limit.routes]\n\"/auth/register\" = { requests = 1000000, per_secs = 1 }\n";

/// One server's figures, in KiB but the rate.
struct Figures {
    idle: u64,
    after: u64,
    later: u64,
    peak: u64,
    per_second: f64,
}

/// Resident memory of this build and of each `XCORE_BENCH_AGAINST` build, idle and after
/// [`ACCOUNTS`] registrations.
pub(super) fn hashing(release: &Path) -> Result<()> {
    let mut variants = vec![("this build".to_owned(), release.join("xcore"))];
    for (index, binary) in against()?.into_iter().enumerate() {
        variants.push((format!("earlier build {} ({})", index + 1, binary.display()), binary));
    }
    let rows = variants
        .iter()
        .map(|(label, binary)| Ok((label, measure(binary)?)))
        .collect::<Result<Vec<_>>>()?;
    println!(
        "{ACCOUNTS} POST /auth/register, {AT_ONCE} at a time, argon2id m=19 MiB t=2 p=1, \
         hashing permits: the default (one per core); VmRSS of the server"
    );
    println!(
        "| build | idle | after {ACCOUNTS} registrations | 5 s later | peak | registrations/s |"
    );
    println!("|---|---|---|---|---|---|");
    let mib = |kib: u64| kib as f64 / 1024.0;
    for (label, figures) in rows {
        println!(
            "| {label} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.0} |",
            mib(figures.idle),
            mib(figures.after),
            mib(figures.later),
            mib(figures.peak),
            figures.per_second
        );
    }
    Ok(())
}

/// Starts `binary` in a new directory, registers [`ACCOUNTS`] accounts and reads its
/// resident memory before, right after and five seconds after.
fn measure(binary: &Path) -> Result<Figures> {
    let scratch = Scratch::new("hashing")?;
    std::fs::write(scratch.0.join("xcore.toml"), CONFIG)?;
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let server = start_binary(binary, &scratch.0, port, &[])?;
    wait_until_healthy(addr, Duration::from_secs(10))?;
    std::thread::sleep(Duration::from_secs(2));
    let pid = server.0.id();
    let idle = rss_kib(pid, "VmRSS:")?;
    let start = Instant::now();
    std::thread::scope(|scope| {
        let clients: Vec<_> =
            (0..AT_ONCE).map(|client| scope.spawn(move || register(addr, client))).collect();
        clients.into_iter().try_for_each(|client| {
            client.join().map_err(|_| anyhow::anyhow!("a registering client panicked"))?
        })
    })?;
    let per_second = ACCOUNTS as f64 / start.elapsed().as_secs_f64();
    let after = rss_kib(pid, "VmRSS:")?;
    std::thread::sleep(Duration::from_secs(5));
    let later = rss_kib(pid, "VmRSS:")?;
    let peak = rss_kib(pid, "VmHWM:")?;
    Ok(Figures { idle, after, later, peak, per_second })
}

/// Registers every [`AT_ONCE`]th account from `client` on, one after the other.
fn register(addr: SocketAddr, client: usize) -> Result<()> {
    for account in (client..ACCOUNTS).step_by(AT_ONCE) {
        let body = format!(
            r#"{{"email": "bench{account}@example.com", "password": "correct horse {account}"}}"#
        );
        let status = post(addr, "/auth/register", &body)?;
        if status != 201 {
            bail!("registering account {account} answered {status}");
        }
    }
    Ok(())
}
