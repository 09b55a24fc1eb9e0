//! `cargo xtask dev`: rebuild on change and swap server processes on one listening socket.
//!
//! The socket is bound once, here, and every server process inherits it (`LISTEN_FDS`, as
//! systemfd and listenfd do; the socket is the child's descriptor 0, named by
//! `LISTEN_FDS_FIRST_FD`), so the port never closes. A new process tells this supervisor it
//! serves with `READY=1` on `NOTIFY_SOCKET` (sd_notify, as under systemd's `Type=notify`);
//! only then does the old one get SIGTERM, stop accepting and drain. Connections waiting in
//! the socket's queue are accepted by whichever process is serving: none is refused. Each
//! process is also told this supervisor's id (`XCORE_SUPERVISOR_PID`) and stops on its own
//! once it has another parent, so killing the supervisor outright leaves no server behind.

use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::cargo;

/// How long a new server may take to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an old server may take to drain before it is killed.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs server processes one after another on one listening socket.
pub struct Supervisor {
    listener: TcpListener,
    binary: PathBuf,
    args: Vec<String>,
    notify: UnixDatagram,
    notify_path: PathBuf,
    envs: Vec<(String, String)>,
    dir: Option<PathBuf>,
    current: Option<Child>,
    /// Kept for the socket's file; removed on drop.
    _dir: Scratch,
}

/// A directory removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Supervisor {
    /// A supervisor serving on `listener` with processes of `binary` run with `args`.
    ///
    /// # Errors
    ///
    /// When the notification socket cannot be made.
    pub fn new(listener: TcpListener, binary: PathBuf, args: Vec<String>) -> Result<Self> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos();
        let dir = std::env::temp_dir().join(format!("xcore-dev-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let notify_path = dir.join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path).context("cannot bind the notify socket")?;
        notify.set_read_timeout(Some(Duration::from_millis(50)))?;
        Ok(Self {
            listener,
            binary,
            args,
            notify,
            notify_path,
            envs: Vec::new(),
            dir: None,
            current: None,
            _dir: Scratch(dir),
        })
    }

    /// Sets an environment variable for every server process (`dev` passes its own
    /// environment on; tests and benchmarks set what they need).
    #[must_use]
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Runs the server processes in `dir` instead of the current directory.
    #[must_use]
    pub fn current_dir(mut self, dir: &Path) -> Self {
        self.dir = Some(dir.to_path_buf());
        self
    }

    /// The server binary it runs.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The address being served.
    ///
    /// # Errors
    ///
    /// When the socket cannot report it.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Starts a new server process and, once it is ready, stops the previous one; returns
    /// the swap time (new process ready → old one gone). If the new process exits or is
    /// not ready in time, it is stopped and the previous one keeps serving.
    ///
    /// # Errors
    ///
    /// Why the new process did not become ready.
    pub fn swap(&mut self) -> Result<Duration> {
        // Anything still queued (a late `STOPPING=1`) is not about the new process.
        let mut buffer = [0u8; 256];
        self.notify.set_nonblocking(true)?;
        while self.notify.recv(&mut buffer).is_ok() {}
        self.notify.set_nonblocking(false)?;

        let socket = self.listener.try_clone().context("cannot share the listening socket")?;
        let mut command = Command::new(&self.binary);
        if let Some(dir) = &self.dir {
            command.current_dir(dir);
        }
        let mut child = command
            .args(&self.args)
            .envs(self.envs.iter().map(|(key, value)| (key, value)))
            .env("LISTEN_FDS", "1")
            .env("LISTEN_FDS_FIRST_FD", "0")
            .env_remove("LISTEN_PID")
            .env("NOTIFY_SOCKET", &self.notify_path)
            // The server stops once its parent is no longer this process: killed outright,
            // a supervisor cannot send it SIGTERM.
            .env("XCORE_SUPERVISOR_PID", std::process::id().to_string())
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(socket)))
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        if let Err(error) = self.wait_ready(&mut child, &mut buffer) {
            stop(&mut child);
            return Err(error);
        }
        let ready = Instant::now();
        if let Some(mut old) = self.current.replace(child) {
            stop(&mut old);
        }
        Ok(ready.elapsed())
    }

    fn wait_ready(&self, child: &mut Child, buffer: &mut [u8]) -> Result<()> {
        let start = Instant::now();
        loop {
            match self.notify.recv(buffer) {
                Ok(len) if buffer[..len].split(|b| *b == b'\n').any(|line| line == b"READY=1") => {
                    return Ok(());
                }
                Ok(_) => {}
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(error) => return Err(error).context("cannot read the notify socket"),
            }
            if let Some(status) = child.try_wait()? {
                bail!("the new server exited before it was ready ({status})");
            }
            if start.elapsed() > READY_TIMEOUT {
                bail!("the new server was not ready within {} s", READY_TIMEOUT.as_secs());
            }
        }
    }

    /// Stops the current server, letting it drain.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.current.take() {
            stop(&mut child);
        }
    }

    /// Whether the current server has exited on its own; its status if so.
    ///
    /// # Errors
    ///
    /// When its state cannot be read.
    pub fn exited(&mut self) -> Result<Option<std::process::ExitStatus>> {
        match &mut self.current {
            Some(child) => Ok(child.try_wait()?),
            None => Ok(None),
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends SIGTERM to `child` and waits for it to drain and exit; kills it if it takes too long.
fn stop(child: &mut Child) {
    let Ok(pid) = i32::try_from(child.id()) else { return };
    if kill(Pid::from_raw(pid), Signal::SIGTERM).is_err() {
        let _ = child.wait();
        return;
    }
    let start = Instant::now();
    while start.elapsed() < DRAIN_TIMEOUT {
        if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    eprintln!("the old server did not stop within {} s: killing it", DRAIN_TIMEOUT.as_secs());
    let _ = child.kill();
    let _ = child.wait();
}

/// Whether a change to `path` (relative to the workspace) calls for a rebuild: sources and
/// manifests, not build output, version control or editors' temporary files.
pub fn relevant(path: &Path) -> bool {
    let ignored_dir = path.components().any(|part| {
        matches!(part.as_os_str().to_str(), Some("target" | ".git" | "node_modules" | "data"))
    });
    let Some(name) = path.file_name().and_then(|name| name.to_str()) else { return false };
    let scratch = name.starts_with(".#")
        || name.starts_with('#')
        || name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".swx")
        || name.ends_with(".tmp")
        || name == "4913";
    !ignored_dir && !scratch
}

/// When `path` was last written, if it exists.
fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|meta| meta.modified()).ok()
}

/// Whether `path` is a server config file (`xcore.toml` and the like, not a manifest).
fn is_config(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "toml")
        && path.file_name().is_some_and(|name| name != "Cargo.toml")
        && !path.starts_with("crates")
        && !path.starts_with(".cargo")
}

/// How long the workspace must be quiet after a change before the rebuild starts.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// The first source `event` changed (relative to `root`), if it is a change at all: files
/// created, written, touched, renamed or removed, not merely opened or read (cargo reads
/// every manifest and source when it builds).
fn changed_source(root: &Path, event: notify::Result<notify::Event>) -> Option<PathBuf> {
    use notify::EventKind;
    let event = event.ok()?;
    if !matches!(event.kind, EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)) {
        return None;
    }
    event
        .paths
        .iter()
        .filter_map(|path| path.strip_prefix(root).ok())
        .find(|path| relevant(path))
        .map(Path::to_path_buf)
}

/// Builds the server; the time it took.
pub fn build() -> Result<Duration> {
    let start = Instant::now();
    let status = Command::new(cargo())
        .args(["build", "-p", "xcore-server", "--bin", "xcore"])
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("the build failed");
    }
    Ok(start.elapsed())
}

/// The server binary `build` makes.
pub fn binary() -> PathBuf {
    crate::target_dir().join("debug").join("xcore")
}

/// The address the server's own configuration gives, read with `xcore config show` so
/// `--config`, `xcore.toml` and `XCORE_SERVER__*` count as they would for the server.
fn configured_address(binary: &Path, args: &[String]) -> Result<String> {
    let output = Command::new(binary)
        .args(args)
        .args(["config", "show"])
        .output()
        .context("cannot run `xcore config show`")?;
    if !output.status.success() {
        bail!("{}", String::from_utf8_lossy(&output.stderr).trim());
    }
    let shown: toml::Table = toml::from_str(&String::from_utf8_lossy(&output.stdout))
        .context("cannot read `xcore config show`")?;
    let server = shown.get("server").and_then(toml::Value::as_table).context("no [server]")?;
    let host = server.get("host").and_then(toml::Value::as_str).unwrap_or("127.0.0.1");
    let port = server.get("port").and_then(toml::Value::as_integer).unwrap_or(8080);
    Ok(format!("{host}:{port}"))
}

/// `cargo xtask dev [-- <server args>]`.
pub fn main(args: &[String]) -> Result<()> {
    let server_args: Vec<String> = args.iter().skip_while(|arg| *arg == "--").cloned().collect();
    let stopping = Arc::new(AtomicBool::new(false));
    let flag = stopping.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("cannot handle Ctrl-C")?;

    let took = build()?;
    let binary = binary();
    let address = configured_address(&binary, &server_args)?;
    let listener =
        TcpListener::bind(&address).with_context(|| format!("cannot listen on {address}"))?;
    let mut supervisor = Supervisor::new(listener, binary, server_args)?;
    supervisor.swap().context("the server did not start")?;
    println!(
        "xcore dev: serving on http://{} (built in {:.1} s); watching for changes",
        supervisor.local_addr()?,
        took.as_secs_f64()
    );

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize()?;
    let (events, changes) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(events)?;
    notify::Watcher::watch(&mut watcher, &root, notify::RecursiveMode::Recursive)?;

    while !stopping.load(Ordering::SeqCst) {
        if let Some(status) = supervisor.exited()? {
            eprintln!("xcore dev: the server exited ({status}); waiting for a change to restart");
        }
        let Ok(event) = changes.recv_timeout(Duration::from_millis(200)) else { continue };
        let Some(changed) = changed_source(&root, event) else { continue };
        // Debounce: an editor's save or a `git checkout` is many events; wait for quiet.
        while let Ok(more) = changes.recv_timeout(DEBOUNCE) {
            drop(more);
        }
        println!("xcore dev: {} changed; rebuilding", changed.display());
        let before = modified(supervisor.binary());
        match build() {
            Err(_) => eprintln!("xcore dev: build failed; the previous server keeps serving"),
            // A config file is read at startup: it needs a new process, not a new binary.
            Ok(_) if modified(supervisor.binary()) == before && !is_config(&changed) => {
                println!("xcore dev: the binary is unchanged; nothing to reload");
            }
            Ok(took) => match supervisor.swap() {
                Ok(swap) => println!(
                    "xcore dev: reloaded (build {:.1} s, swap {} ms)",
                    took.as_secs_f64(),
                    swap.as_millis()
                ),
                Err(error) => {
                    eprintln!(
                        "xcore dev: the new server was not started: {error:#}; the previous one keeps serving"
                    );
                }
            },
        }
    }
    println!("xcore dev: stopping");
    supervisor.stop();
    Ok(())
}

#[cfg(test)]
mod tests;
