//! Hand-written rather than tracing-appender's non-blocking writer: with it the stack served 4.8 % fewer requests per second with `server.access_log = true` (0.80 against 0.84 of bare axum, `cargo xtask bench http`, 2026-12-01).
//!
//! Log output: coloured lines on a terminal, JSON lines when `log.format = "json"`.
//!
//! tracing-appender copies every line into a new `Vec`, sends it over a channel and wakes
//! its thread, which writes and flushes whenever it has caught up: a `write` for every few
//! lines. Here lines are appended under a lock to one 64 KiB buffer that a thread flushes
//! every 100 ms, so a busy server makes one `write` per buffer.

use std::io::{BufWriter, IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Layered, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, fmt};

use crate::config::{LogConfig, LogFormat};

mod fields;
mod request;

pub use request::{Label, request_spans};

/// The subscriber stack below the formatting layer: one of the two filters.
type Filtered = Layered<Option<EnvFilter>, Layered<Option<Targets>, Registry>>;

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The server's: standard output, where a supervisor collects it.
    Stdout,
    /// A one-shot command's, whose standard output carries its result (`xcore messaging
    /// export` writes the state file there): a log line must not land in the middle.
    Stderr,
}

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `log.level`.
///
/// Lines go to `output` through a buffer flushed every [`FLUSH_EVERY`] and when the
/// returned guard is dropped (keep it alive until exit), so a busy server makes one
/// `write` per buffer rather than one per line.
///
/// # Errors
///
/// When the filter does not parse or a subscriber is already installed.
pub fn init(config: &LogConfig, output: Output) -> anyhow::Result<FlushGuard> {
    let directives = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => directives,
        _ => config.level.clone(),
    };
    // Plain `target=level` lists (nearly all filters) use the static `Targets` filter;
    // `EnvFilter`, needed only for span and field directives, takes a lock on every span
    // entry and exit, which every request pays for.
    let (targets, env_filter) = match directives.parse::<Targets>() {
        Ok(targets) => (Some(targets), None),
        Err(_) => (None, Some(EnvFilter::try_new(&directives)?)),
    };
    let (ansi, stream): (bool, Box<dyn Write + Send>) = match output {
        Output::Stdout => (std::io::stdout().is_terminal(), Box::new(std::io::stdout())),
        Output::Stderr => (std::io::stderr().is_terminal(), Box::new(std::io::stderr())),
    };
    let buffer = Buffer(Arc::new(Mutex::new(BufWriter::with_capacity(64 * 1024, stream))));
    let writer = buffer.clone();
    let make_writer = move || writer.clone();
    request::set_request_spans(config.request_span);
    let format: Box<dyn Layer<Filtered> + Send + Sync> = match config.format {
        LogFormat::Json => {
            let lines = fmt::format().json().with_current_span(true).with_span_list(false);
            fmt::layer()
                .with_writer(make_writer)
                .json()
                .event_format(request::WithRequest::json(lines))
                .boxed()
        }
        LogFormat::Text => fmt::layer()
            .with_writer(make_writer)
            .with_ansi(ansi)
            .fmt_fields(fields::Fields)
            .event_format(request::WithRequest::text(fmt::format().with_ansi(ansi)))
            .boxed(),
    };
    tracing_subscriber::registry().with(targets).with(env_filter).with(format).try_init()?;
    let flusher = buffer.clone();
    std::thread::Builder::new().name("xcore-log-flush".to_owned()).spawn(move || {
        loop {
            std::thread::sleep(FLUSH_EVERY);
            flusher.flush_now();
        }
    })?;
    Ok(FlushGuard(buffer))
}

/// How long a log line may wait in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// The shared buffer log lines are written to.
#[derive(Clone)]
struct Buffer(Arc<Mutex<BufWriter<Box<dyn Write + Send>>>>);

impl Buffer {
    fn flush_now(&self) {
        if let Ok(mut out) = self.0.lock() {
            let _ = out.flush();
        }
    }
}

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match self.0.lock() {
            Ok(mut out) => out.write(bytes),
            Err(poisoned) => poisoned.into_inner().write(bytes),
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        // One lock per line, so lines from different threads never interleave.
        match self.0.lock() {
            Ok(mut out) => out.write_all(bytes),
            Err(poisoned) => poisoned.into_inner().write_all(bytes),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // Flushing is the flusher thread's and the guard's job: a flush per line is what
        // the buffer is there to avoid.
        Ok(())
    }
}

/// Flushes buffered log lines when dropped.
pub struct FlushGuard(Buffer);

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.0.flush_now();
    }
}

impl std::fmt::Debug for FlushGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlushGuard")
    }
}

/// What a subscriber writes, kept in memory for the formatters' tests.
#[cfg(test)]
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

#[cfg(test)]
impl Captured {
    fn text(&self) -> String {
        let bytes = self.0.lock().map(|bytes| bytes.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[cfg(test)]
impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut captured) = self.0.lock() {
            captured.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
