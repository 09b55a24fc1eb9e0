//! `cargo xtask dev` as a real process, killed outright: the server it started must not
//! outlive it.
//!
//! This is an integration test because it needs the `xtask` binary itself, which cargo
//! builds and names (`CARGO_BIN_EXE_xtask`) only for integration tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long the server may take to notice its supervisor is gone and stop. It checks every
/// 250 ms and drains in far less; the margin is for a loaded machine.
const DEADLINE: Duration = Duration::from_secs(10);

/// How long `cargo xtask dev` may take to serve. It builds the server first, which waits
/// for any other build of the same target directory: a guard against a hang, not a bound
/// on how fast it should be.
const STARTUP: Duration = Duration::from_secs(600);

/// A process named by its id and start time, so a recycled id is never taken for it.
#[derive(Debug, Clone, Copy)]
struct Process {
    pid: i32,
    started: u64,
}

/// What `/proc/<pid>/stat` says of a process: its state, its parent and when it started.
fn stat(pid: i32) -> Option<(char, i32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces and parentheses itself.
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let parent = fields.get(1)?.parse().ok()?;
    // Field 22 of proc(5); the fields here start at field 3.
    let started = fields.get(19)?.parse().ok()?;
    Some((state, parent, started))
}

impl Process {
    /// The children of `parent` now running.
    fn children_of(parent: i32) -> Vec<Self> {
        let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
        entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter_map(|pid| match stat(pid) {
                Some((_, ppid, started)) if ppid == parent => Some(Self { pid, started }),
                _ => None,
            })
            .filter(|process| process.running())
            .collect()
    }

    /// Whether it still runs: a zombie has exited, and an id with another start time is
    /// another process.
    fn running(self) -> bool {
        matches!(stat(self.pid), Some((state, _, started))
            if started == self.started && !matches!(state, 'Z' | 'X'))
    }
}

/// Kills what a failed test would leave running: the supervisor, and a server that
/// outlived it, which would otherwise serve on and hold the test's output open.
struct Cleanup {
    supervisor: Child,
    server: Option<Process>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = self.supervisor.kill();
        let _ = self.supervisor.wait();
        if let Some(server) = self.server.filter(|server| server.running()) {
            let _ = kill(Pid::from_raw(server.pid), Signal::SIGKILL);
        }
    }
}

/// `GET /health` on a new connection; whether it answered 200.
fn healthy(address: SocketAddr) -> std::io::Result<bool> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(DEADLINE))?;
    stream.write_all(b"GET /health HTTP/1.1\r\nhost: dev\r\nconnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response.starts_with("HTTP/1.1 200"))
}

/// Lines from `lines` until one holds `wanted` (returned), they end, or `timeout` passes;
/// every line read is kept in `seen`.
fn wait_for_line(
    lines: &Receiver<String>,
    wanted: &str,
    timeout: Duration,
    seen: &mut Vec<String>,
) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                seen.push(line.clone());
                if line.contains(wanted) {
                    return Some(line);
                }
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
        }
    }
}

#[test]
fn killing_dev_leaves_no_server_behind() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let config = dir.join("xcore.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nhost = \"127.0.0.1\"\nport = 0\ndata_dir = \"{data}\"\n\n\
             [database]\nurl = \"sqlite://{db}\"\n",
            data = dir.join("data").display(),
            db = dir.join("xcore.db").display(),
        ),
    )
    .unwrap();

    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command
        .args(["dev", "--", "--config"])
        .arg(&config)
        // Inside the workspace, for its `cargo build -p xcore-server`.
        .current_dir(workspace)
        // Its notify socket's directory, which a killed supervisor cannot remove.
        .env("TMPDIR", dir)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped());
    for (key, _) in std::env::vars() {
        if key.starts_with("XCORE_") {
            command.env_remove(key);
        }
    }
    let mut supervisor = command.spawn().unwrap();
    // The server writes to the same pipe: it closes only when both have exited.
    let output = supervisor.stdout.take().unwrap();
    let supervisor_pid = i32::try_from(supervisor.id()).unwrap();
    let mut cleanup = Cleanup { supervisor, server: None };
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });

    let mut seen = Vec::new();
    let serving = wait_for_line(&lines, "serving on http://", STARTUP, &mut seen)
        .unwrap_or_else(|| panic!("`cargo xtask dev` did not serve:\n{}", seen.join("\n")));
    let address: SocketAddr = serving
        .split("serving on http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|address| address.parse().ok())
        .unwrap_or_else(|| panic!("no address in {serving:?}"));
    assert!(healthy(address).unwrap(), "the server does not answer on {address}");
    let servers = Process::children_of(supervisor_pid);
    let [server] = servers[..] else {
        panic!("the supervisor should run one server, not {}", servers.len());
    };
    cleanup.server = Some(server);

    kill(Pid::from_raw(supervisor_pid), Signal::SIGKILL).unwrap();
    cleanup.supervisor.wait().unwrap();
    let start = Instant::now();
    while server.running() && start.elapsed() < DEADLINE {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !server.running(),
        "the server (pid {}) still runs {} s after its supervisor was killed",
        server.pid,
        DEADLINE.as_secs()
    );
    assert!(TcpStream::connect(address).is_err(), "{address} still accepts connections");
    // It stopped because it noticed, not by accident.
    let noticed = wait_for_line(
        &lines,
        "the supervisor that started this server is gone",
        DEADLINE,
        &mut seen,
    );
    assert!(noticed.is_some(), "the server did not say why it stopped:\n{}", seen.join("\n"));
}
