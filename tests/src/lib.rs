//! Helpers for end-to-end tests: build the real `xcore` binary, run it on a random port
//! in a scratch directory, and talk HTTP/1.1 to it over a plain socket.

pub mod ws;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The workspace root.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new("."))
}

/// The `xcore` binary, built (debug profile) on first use.
///
/// # Panics
///
/// When the build fails: every end-to-end test needs the binary.
#[allow(clippy::panic)]
pub fn xcore_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "xcore-server", "--bin", "xcore"])
            .current_dir(workspace_root())
            .status();
        if !status.is_ok_and(|status| status.success()) {
            panic!("building the xcore binary failed");
        }
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| workspace_root().join("target"), PathBuf::from);
        target.join("debug").join("xcore")
    })
}

/// A command running the `xcore` binary in `dir` with no inherited `XCORE_*` settings
/// except the test-service URLs.
pub fn xcore(dir: &Path) -> Command {
    let mut command = Command::new(xcore_binary());
    command.current_dir(dir);
    clean_env(&mut command);
    command
}

/// Removes the inherited `XCORE_*` settings (but the test-service URLs) and `RUST_LOG`.
fn clean_env(command: &mut Command) {
    for (key, _) in std::env::vars() {
        if key.starts_with("XCORE_") && !key.starts_with("XCORE_TEST_") {
            command.env_remove(key);
        }
    }
    command.env_remove("RUST_LOG");
}

/// A running server, killed when dropped.
#[derive(Debug)]
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    output: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `xcore serve` on a free port in a new scratch directory with `env` set,
    /// and waits until it logs its address.
    ///
    /// # Panics
    ///
    /// When the server does not start within 30 s.
    pub fn start(env: &[(&str, &str)]) -> Self {
        Self::start_with(env, |_| {})
    }

    /// As [`start`](Self::start), letting `configure` adjust the command first.
    ///
    /// # Panics
    ///
    /// When the server does not start within 30 s.
    #[allow(clippy::panic, clippy::expect_used)]
    pub fn start_with(env: &[(&str, &str)], configure: impl FnOnce(&mut Command)) -> Self {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let mut command = xcore(dir.path());
        configure(&mut command);
        Self::launch(command, dir, env)
    }

    /// As [`start`](Self::start), with `config` written to `xcore.toml` in the scratch
    /// directory first.
    ///
    /// # Panics
    ///
    /// When the file cannot be written or the server does not start within 30 s.
    #[allow(clippy::expect_used)]
    pub fn start_with_config(config: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("a scratch directory");
        std::fs::write(dir.path().join("xcore.toml"), config).expect("xcore.toml is written");
        let command = xcore(dir.path());
        Self::launch(command, dir, env)
    }

    /// As [`start`](Self::start), with the server's open-file limit set to `nofile` (by
    /// `ulimit -n` in a shell that then runs the server).
    ///
    /// # Panics
    ///
    /// When the server does not start within 30 s.
    #[allow(clippy::expect_used)]
    pub fn start_with_file_limit(env: &[(&str, &str)], nofile: u64) -> Self {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let mut command = Command::new("sh");
        command
            .args(["-c", "ulimit -n \"$0\" && exec \"$1\""])
            .arg(nofile.to_string())
            .arg(xcore_binary())
            .current_dir(dir.path());
        clean_env(&mut command);
        Self::launch(command, dir, env)
    }

    #[allow(clippy::panic, clippy::expect_used)]
    fn launch(mut command: Command, dir: tempfile::TempDir, env: &[(&str, &str)]) -> Self {
        command
            .env("XCORE_SERVER__PORT", "0")
            .env("XCORE_SERVER__SHUTDOWN_GRACE_SECS", "10")
            .env("XCORE_SERVER__ACCESS_LOG", "true");
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the xcore binary starts");
        let output = Arc::new(Mutex::new(Vec::new()));
        let (lines, addresses) = channel();
        for stream in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
            child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let output = output.clone();
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(addr) = line.split("listening on http://").nth(1) {
                        let addr: String = addr
                            .chars()
                            .take_while(|c| {
                                c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']')
                            })
                            .collect();
                        let _ = lines.send(addr);
                    }
                    output.lock().map(|mut out| out.push(line)).ok();
                }
            });
        }
        let addr = wait_for_address(&addresses, &output);
        Self { child, addr, dir, output }
    }

    /// Everything the server printed so far.
    pub fn output(&self) -> String {
        self.output.lock().map(|out| out.join("\n")).unwrap_or_default()
    }

    /// The server process's resident memory (`VmRSS` in `/proc/<pid>/status`), in KiB.
    ///
    /// # Panics
    ///
    /// When the process has no status file, as when it has exited.
    #[allow(clippy::panic)]
    pub fn resident_kib(&self) -> u64 {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS in {path}:\n{status}"))
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(0));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

#[allow(clippy::panic)]
fn wait_for_address(addresses: &Receiver<String>, output: &Mutex<Vec<String>>) -> SocketAddr {
    match addresses.recv_timeout(Duration::from_secs(30)) {
        Ok(addr) => addr.parse().unwrap_or_else(|_| panic!("bad address in log: {addr}")),
        Err(_) => panic!(
            "the server did not log its address within 30 s:\n{}",
            output.lock().map(|out| out.join("\n")).unwrap_or_default()
        ),
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The body as JSON (`null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Sends one request on a new connection (`Connection: close`) and reads the response.
///
/// # Errors
///
/// Any socket error, or a response that does not parse.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<Response> {
    request_with(addr, method, path, &[], body)
}

/// As [`request`], with `Authorization: Bearer <token>` when a token is given.
///
/// # Errors
///
/// Any socket error, or a response that does not parse.
pub fn request_as(
    addr: SocketAddr,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<Response> {
    let bearer = token.map(|token| format!("Bearer {token}"));
    let headers: Vec<(&str, &str)> =
        bearer.as_deref().map(|bearer| ("authorization", bearer)).into_iter().collect();
    request_with(addr, method, path, &headers, body)
}

/// As [`request`], with extra `headers`.
///
/// # Errors
///
/// Any socket error, or a response that does not parse.
pub fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.unwrap_or("");
    let extra: String =
        headers.iter().map(|(name, value)| format!("{name}: {value}\r\n")).collect();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n{extra}\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )?;
    read_response(&mut stream)
}

/// Registers an account for `email` on the server at `addr` and signs in: its access
/// token.
///
/// # Panics
///
/// When registering or signing in fails.
#[allow(clippy::unwrap_used, clippy::panic)]
pub fn sign_in(addr: SocketAddr, email: &str) -> String {
    let credentials = format!(r#"{{"email": "{email}", "password": "correct horse battery"}}"#);
    let created = request(addr, "POST", "/auth/register", Some(&credentials)).unwrap();
    assert_eq!(created.status, 201, "{}", created.body);
    let login = request(addr, "POST", "/auth/login", Some(&credentials)).unwrap();
    assert_eq!(login.status, 200, "{}", login.body);
    match login.json()["access_token"].as_str() {
        Some(token) => token.to_owned(),
        None => panic!("no access token: {}", login.body),
    }
}

/// Reads a whole `Connection: close` response from `stream`.
///
/// # Errors
///
/// Any socket error, or a response that does not parse.
pub fn read_response(stream: &mut TcpStream) -> std::io::Result<Response> {
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed response");
    let (head, body) = raw.split_once("\r\n\r\n").ok_or_else(bad)?;
    let mut lines = head.lines();
    let status = lines.next().and_then(|line| line.split(' ').nth(1)).and_then(|s| s.parse().ok());
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Response { status: status.ok_or_else(bad)?, headers, body: body.to_owned() })
}
