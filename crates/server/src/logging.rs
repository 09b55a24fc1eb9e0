//! Log output: coloured lines on a terminal, JSON lines when `log.format = "json"`.
//!
//! Lines are handed to tracing-appender's non-blocking writer, whose thread writes them to
//! standard output through a buffer flushed whenever it has caught up, so a busy server
//! makes one `write` per batch rather than one per line and no request waits on the
//! terminal. It is not lossy: when the queue is full, loggers wait rather than drop lines.

#[cfg(test)]
use std::io::Write;
use std::io::{BufWriter, IsTerminal};
#[cfg(test)]
use std::sync::{Arc, Mutex};

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
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

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `log.level`.
///
/// Keep the returned guard alive until exit: dropping it writes out the lines still queued.
///
/// # Errors
///
/// When the filter does not parse or a subscriber is already installed.
pub fn init(config: &LogConfig) -> anyhow::Result<WorkerGuard> {
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
    let ansi = std::io::stdout().is_terminal();
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("xcore-log")
        .finish(BufWriter::with_capacity(64 * 1024, std::io::stdout()));
    request::set_request_spans(config.request_span);
    let format: Box<dyn Layer<Filtered> + Send + Sync> = match config.format {
        LogFormat::Json => {
            let lines = fmt::format().json().with_current_span(true).with_span_list(false);
            fmt::layer()
                .with_writer(writer)
                .json()
                .event_format(request::WithRequest::json(lines))
                .boxed()
        }
        LogFormat::Text => fmt::layer()
            .with_writer(writer)
            .with_ansi(ansi)
            .fmt_fields(fields::Fields)
            .event_format(request::WithRequest::text(fmt::format().with_ansi(ansi)))
            .boxed(),
    };
    tracing_subscriber::registry().with(targets).with(env_filter).with(format).try_init()?;
    Ok(guard)
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
