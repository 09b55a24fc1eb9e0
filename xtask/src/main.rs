//! Project automation, run as `cargo xtask <task>`.
//!
//! One binary with few dependencies, so it builds in seconds on a fresh machine. Each task
//! installs what it needs (a load generator, a test runner) rather than assuming it.

// A command-line tool: printing its results is its job.
#![allow(clippy::print_stdout)]

mod bench;
mod contract;
mod dev;
mod dist;
mod new_plugin;

use std::process::Command;

use anyhow::{Context, Result, bail};

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  test [args…]          run the whole test suite (cargo nextest run --workspace [args…])
  contract [-- args…]   schemathesis (pinned, in target/contract/venv) against the debug
                        server on a fresh database: every operation of /openapi.json,
                        all checks and phases, anonymous and signed in, fixed seed;
                        fails on any 5xx or check failure ([args…] go to `st run`)
  dev [-- server args]  serve, rebuild on change, swap processes on one socket (hot reload)
  new-plugin <name>     create crates/plugins/<name>, linked into the server and tested
  dist                  a static, stripped release binary (musl), checked and timed
  bench startup         time from spawn to the first successful /health, fresh SQLite
  bench memory          resident memory of an idle server after startup
  bench http            requests/s of GET /plugins/hello/ against a bare axum handler
  bench instructions    instructions per GET /plugins/hello/ under callgrind, against bare axum
  bench cache           cache get throughput per core: memory, tiered, Redis
  bench auth            CurrentUser per request, argon2id, logins beside /health
  bench reload          dev's build and swap times, requests lost during 20 swaps
  bench hashing         resident memory after 200 registrations (argon2id threads)
  bench messaging [throughput|history]
                        messages/s and send latency (group commit on/off, SQLite and
                        PostgreSQL), history pages over 1,000,000 messages
  bench fanout          WebSocket fan-out to a group of 1,000 against Socket.IO 4 on Node:
                        sustained deliveries/s with p99 under 100 ms, CPU per delivery,
                        send-to-ack latency, memory per idle connection (not in `all`)
  bench all             all of the above but fanout

  XCORE_BENCH_AGAINST=<xcore binary> adds an earlier build to bench http, bench
  instructions and bench hashing, measured in the same run as this one.";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((task, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        bail!("no task given");
    };
    match task.as_str() {
        "test" => test(rest),
        "contract" => contract::main(rest),
        "bench" => bench::main(rest),
        "dev" => dev::main(rest),
        "dist" => dist::main(),
        "new-plugin" => match rest {
            [name] => {
                let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
                new_plugin::create(&root, name)
            }
            _ => bail!("usage: cargo xtask new-plugin <name>"),
        },
        "help" | "--help" | "-h" => {
            eprintln!("{USAGE}");
            Ok(())
        }
        other => {
            eprintln!("{USAGE}");
            bail!("unknown task `{other}`")
        }
    }
}

fn test(args: &[String]) -> Result<()> {
    ensure_cargo_tool("cargo-nextest", "nextest")?;
    run(Command::new(cargo()).args(["nextest", "run", "--workspace"]).args(args))
}

/// Where cargo puts its builds: `CARGO_TARGET_DIR`, or the workspace's `target/`.
pub fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        std::path::PathBuf::from,
    )
}

/// The cargo that runs this task.
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// Installs a cargo subcommand from crates.io when it is missing.
fn ensure_cargo_tool(package: &str, subcommand: &str) -> Result<()> {
    let present = Command::new(cargo())
        .args([subcommand, "--version"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !present {
        eprintln!("installing {package}");
        run(Command::new(cargo()).args(["install", package, "--locked"]))?;
    }
    Ok(())
}

/// Runs `command`, failing unless it exits with success.
pub fn run(command: &mut Command) -> Result<()> {
    let status = command.status().with_context(|| format!("cannot run {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}
