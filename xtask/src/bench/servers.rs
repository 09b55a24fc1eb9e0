//! The processes a benchmark measures: scratch directories, free ports, starting a server
//! and waiting until it answers, and the earlier builds `XCORE_BENCH_AGAINST` names.
//!
//! Processes and directories are guards dropped when their benchmark returns, so a
//! benchmark that fails halfway leaves no server running and no directory behind.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

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

/// A port nothing listens on at the moment of asking.
pub(crate) fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts this build's `xcore` in `dir` on `port`; see [`start_binary`].
pub(super) fn start_xcore(
    release: &Path,
    dir: &Path,
    port: u16,
    env: &[(&str, &str)],
) -> Result<Process> {
    start_binary(&release.join("xcore"), dir, port, env)
}

/// The variable naming other `xcore` binaries (earlier builds, separated by `:`) that
/// `bench http`, `bench instructions` and `bench hashing` measure beside this one, in the
/// same invocation.
pub(super) const AGAINST: &str = "XCORE_BENCH_AGAINST";

/// The binaries `XCORE_BENCH_AGAINST` names.
pub(super) fn against() -> Result<Vec<PathBuf>> {
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

/// The command that serves with the xcore binary `binary` in `dir` on `port`, logging
/// warnings only; its output goes where the caller says.
pub(crate) fn xcore_command(binary: &Path, dir: &Path, port: u16) -> Command {
    let mut command = Command::new(binary);
    command
        .current_dir(dir)
        .env("XCORE_SERVER__PORT", port.to_string())
        .env("XCORE_LOG__LEVEL", "warn")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    command
}

/// Starts the xcore binary `binary` in `dir` on `port`, logging warnings only, with its
/// output discarded; `env` is set last, so it may change the port or the log level.
pub(super) fn start_binary(
    binary: &Path,
    dir: &Path,
    port: u16,
    env: &[(&str, &str)],
) -> Result<Process> {
    let mut command = xcore_command(binary, dir, port);
    command.stdout(Stdio::null()).stderr(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    Ok(Process(command.spawn().context("cannot start xcore")?))
}

/// Whether `GET path` answers 200.
pub(super) fn answers_ok(addr: SocketAddr, path: &str) -> bool {
    TcpStream::connect(addr).is_ok_and(|mut stream| answers_ok_on(&mut stream, path))
}

/// Whether `GET path` on the connection `stream` answers 200.
pub(super) fn answers_ok_on(stream: &mut TcpStream, path: &str) -> bool {
    let request = format!("GET {path} HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// Polls `/health` on `addr` until it answers 200, for at most `timeout`; how long that
/// took.
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
