//! `cargo xtask dist`: one static, stripped binary with migrations and web assets inside.
//!
//! It targets `x86_64-unknown-linux-musl`, installing the target (rustup) and `musl-gcc`
//! (Debian's `musl-tools`, for the C in bundled SQLite and ring) when they are missing. If
//! either cannot be installed it falls back to glibc with `crt-static`, and says so. The
//! result is checked to be static, started from an empty directory, and timed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::bench::{Process, Scratch, ensure_package, free_port, percentile, wait_until_healthy};
use crate::{cargo, run};

const MUSL: &str = "x86_64-unknown-linux-musl";
const GNU: &str = "x86_64-unknown-linux-gnu";
/// Cold starts timed from the empty directory.
const STARTS: usize = 10;

/// Whether the musl target and its C compiler are available, installing them if needed.
fn musl_available() -> bool {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).lines().any(|t| t == MUSL));
    if !installed {
        eprintln!("installing the {MUSL} target");
        let added = Command::new("rustup").args(["target", "add", MUSL]).status();
        if !added.is_ok_and(|status| status.success()) {
            return false;
        }
    }
    ensure_package("musl-gcc", "musl-tools").is_ok()
        && Command::new("musl-gcc").arg("--version").output().is_ok()
}

/// Builds the binary; its path and the target it was built for.
fn build() -> Result<(PathBuf, &'static str)> {
    let (target, static_glibc) = if musl_available() {
        (MUSL, false)
    } else {
        eprintln!(
            "warning: the musl target or musl-gcc is not available: building a static glibc \
             binary instead (it still needs nothing beside it, but glibc's name lookups load \
             shared libraries at run time)"
        );
        (GNU, true)
    };
    let mut command = Command::new(cargo());
    command.args([
        "build",
        "--profile",
        "dist",
        "--target",
        target,
        "-p",
        "xcore-server",
        "--bin",
        "xcore",
    ]);
    if static_glibc {
        command.env("RUSTFLAGS", "-C target-feature=+crt-static");
    } else {
        command.env("CC_x86_64_unknown_linux_musl", "musl-gcc");
    }
    run(&mut command)?;
    let binary = crate::target_dir().join(target).join("dist").join("xcore");
    Ok((binary.canonicalize().unwrap_or(binary), target))
}

/// Whether the ELF file at `path` is statically linked: no program interpreter and no
/// needed shared library.
fn is_static(path: &Path) -> Result<bool> {
    let output = Command::new("ldd").arg(path).output().context("cannot run ldd")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(text.contains("not a dynamic executable") || text.contains("statically linked"))
}

pub fn main() -> Result<()> {
    let (binary, target) = build()?;
    if !is_static(&binary)? {
        bail!("{} is not statically linked", binary.display());
    }
    let size = std::fs::metadata(&binary)?.len();
    println!(
        "{}: static ({target}), stripped, {:.1} MiB",
        binary.display(),
        size as f64 / (1024.0 * 1024.0)
    );

    // From an empty directory, with nothing beside the binary.
    let mut samples = Vec::with_capacity(STARTS);
    for _ in 0..STARTS {
        let scratch = Scratch::new("dist")?;
        let copy = scratch.0.join("xcore");
        std::fs::copy(&binary, &copy)?;
        let port = free_port()?;
        let start = Instant::now();
        let server = Process(
            Command::new(&copy)
                .current_dir(&scratch.0)
                .env_clear()
                .env("XCORE_SERVER__PORT", port.to_string())
                .env("XCORE_LOG__LEVEL", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("cannot start the static binary")?,
        );
        wait_until_healthy(SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(10))?;
        samples.push(start.elapsed().as_secs_f64() * 1000.0);
        drop(server);
    }
    samples.sort_by(f64::total_cmp);
    println!(
        "| static binary | {:.1} MiB | startup to first /health from an empty directory ({STARTS} runs): min {:.1} ms, median {:.1} ms, max {:.1} ms |",
        size as f64 / (1024.0 * 1024.0),
        samples[0],
        percentile(&samples, 0.5),
        samples[STARTS - 1]
    );
    Ok(())
}
