//! `cargo xtask bench …`: the measurements behind `BENCHMARKS.md`.
//!
//! Every benchmark builds the release binary first and runs it from a fresh scratch
//! directory, so each figure is what a user of `cargo run --release` would see. Results
//! are printed as Markdown rows; each comparison runs its baseline in the same invocation,
//! interleaved with the measured case, so both see the same machine state.
//!
//! The module is cut by concern, so each benchmark reads top to bottom in one file and
//! the plumbing they share is written once. `servers` starts and stops the processes under
//! test; `load` runs wrk and reads its reports, CPU times and quantiles; `startup` (with
//! `memory`), `http`, `instructions`, `criterion`, `login`, `hashing`, `reload`,
//! `messaging` and `fanout` each hold one benchmark. This file dispatches by name and holds what every benchmark needs before it
//! starts: the release build, the machine line and the tools it installs.

mod criterion;
mod fanout;
mod hashing;
mod http;
mod instructions;
mod load;
mod login;
mod messaging;
mod reload;
mod servers;
mod startup;

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Result, bail};

use crate::{cargo, run};

// `cargo xtask dist` checks and times its binary with these helpers, and `cargo xtask
// contract` starts its server and registers its account with them.
pub(crate) use load::percentile;
pub(crate) use login::post;
pub(crate) use servers::{Process, Scratch, free_port, wait_until_healthy, xcore_command};

use criterion::{auth_criterion, cache};
use fanout::fanout;
use hashing::hashing;
use http::http;
use instructions::instructions;
use login::login;
use messaging::messaging;
use reload::reload;
use startup::{memory, startup};

/// Runs the benchmark the first argument names, or all of them without one.
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
    if which == "messaging" {
        return messaging(args.get(1).map(String::as_str));
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
        "hashing" => hashing(&release),
        "fanout" => fanout(&release),
        "all" => {
            startup(&release)?;
            memory(&release)?;
            http(&release)?;
            instructions(&release)?;
            cache()?;
            auth_criterion()?;
            login(&release)?;
            hashing(&release)?;
            reload()?;
            messaging(None)
        }
        other => {
            bail!(
                "unknown benchmark `{other}`: startup, memory, http, instructions, cache, auth, \
                 hashing, reload, messaging, fanout or all"
            )
        }
    }
}

/// Builds the release `xcore` and the bare baseline; the directory holding them.
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
    Ok(crate::target_dir().join("release"))
}

/// The core count and CPU model, printed above the results so that figures from
/// different machines are not compared by mistake.
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
