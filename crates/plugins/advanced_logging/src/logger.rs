//! The log writer: events become JSON lines on the hooks' side, and one thread appends
//! them to the rotating file, flushing whenever it has caught up.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};
use xcore_messaging::{Event, EventKind, HookError, HookSet};

use crate::file::RotatingFile;
use crate::{AdvancedLoggingConfig, Level};

/// The name the hooks are registered under.
pub const HOOK: &str = "advanced_logging";

/// How long [`Logger::flush`] waits for the writer.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

enum Command {
    Line(String),
    Flush(oneshot::Sender<()>),
}

/// What hooks hand lines to. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Logger {
    tx: mpsc::Sender<Command>,
    level: Level,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Line(line) => f.debug_tuple("Line").field(line).finish(),
            Self::Flush(_) => f.write_str("Flush"),
        }
    }
}

/// The writing side, not started yet: [`Writer::spawn`] opens the file.
#[derive(Debug)]
pub struct Writer {
    rx: mpsc::Receiver<Command>,
    path: PathBuf,
    max_bytes: u64,
    backups: u32,
}

impl Logger {
    /// A logger for `config`, writing to `path` once its [`Writer`] is spawned. Up to
    /// `config.queue` lines wait for the writer; beyond that, hooks wait (in their own
    /// queue, never delaying a send).
    pub fn new(config: &AdvancedLoggingConfig, path: PathBuf) -> (Self, Writer) {
        let (tx, rx) = mpsc::channel(config.queue);
        let writer = Writer { rx, path, max_bytes: config.max_bytes, backups: config.backups };
        (Self { tx, level: config.level }, writer)
    }

    /// Registers a notification hook, named [`HOOK`], for every event at or above the
    /// configured level.
    pub fn register(&self, hooks: &mut HookSet) {
        for kind in EventKind::ALL {
            if level_of(kind) < self.level {
                continue;
            }
            let logger = self.clone();
            hooks.on(kind, HOOK, move |event, _| {
                let logger = logger.clone();
                async move { logger.log(&event).await }
            });
        }
    }

    /// Queues `event`'s line.
    ///
    /// # Errors
    ///
    /// When the writer has stopped.
    pub async fn log(&self, event: &Event) -> Result<(), HookError> {
        let Some(line) = line(event, self.level) else { return Ok(()) };
        self.tx.send(Command::Line(line)).await.map_err(|_| "the log writer has stopped")?;
        Ok(())
    }

    /// Waits until every line queued before this call is in the file.
    ///
    /// # Errors
    ///
    /// When the writer has stopped or did not catch up within five seconds.
    pub async fn flush(&self) -> Result<(), HookError> {
        let (done, wait) = oneshot::channel();
        self.tx.send(Command::Flush(done)).await.map_err(|_| "the log writer has stopped")?;
        match tokio::time::timeout(FLUSH_TIMEOUT, wait).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err("the log writer has stopped".into()),
            Err(_) => Err("the log writer did not catch up within 5 s".into()),
        }
    }
}

impl Writer {
    /// Opens the file (creating it with mode 0600) and starts the writing thread, which
    /// ends once every [`Logger`] is dropped.
    ///
    /// # Errors
    ///
    /// The error of opening the file or of starting the thread.
    pub fn spawn(self) -> std::io::Result<()> {
        let Self { rx, path, max_bytes, backups } = self;
        let file = RotatingFile::open(&path, max_bytes, backups)?;
        std::thread::Builder::new().name("advanced-logging".into()).spawn(move || run(file, rx))?;
        Ok(())
    }
}

/// Writes lines as they come, flushing each time the queue is empty.
fn run(mut file: RotatingFile, mut rx: mpsc::Receiver<Command>) {
    let mut failing = false;
    let mut waiting = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        let mut next = Some(first);
        while let Some(command) = next {
            match command {
                Command::Line(line) => {
                    let written = file.write_line(&line);
                    report(&mut failing, &file, written);
                }
                Command::Flush(done) => waiting.push(done),
            }
            next = rx.try_recv().ok();
        }
        let flushed = file.flush();
        report(&mut failing, &file, flushed);
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
    let _ = file.flush();
}

/// Logs the first failure of a streak, and the recovery.
fn report(failing: &mut bool, file: &RotatingFile, result: std::io::Result<()>) {
    match result {
        Err(error) if !*failing => {
            *failing = true;
            tracing::error!(file = %file.path().display(), %error, "advanced_logging: writing failed; lines are lost until it recovers");
        }
        Ok(()) if *failing => {
            *failing = false;
            tracing::info!(file = %file.path().display(), "advanced_logging: writing again");
        }
        _ => {}
    }
}

/// The level an event is logged at: hook failures are errors, the rest information.
pub fn level_of(kind: EventKind) -> Level {
    match kind {
        EventKind::Error => Level::Error,
        _ => Level::Info,
    }
}

/// `event` as a JSON line, or `None` below `level`. Below `debug`, message bodies and
/// attachments are left out (their length in characters stays): the log is for what
/// happened, and the messages are in the database.
pub fn line(event: &Event, level: Level) -> Option<String> {
    let event_level = level_of(event.kind());
    if event_level < level {
        return None;
    }
    let Ok(Value::Object(fields)) = serde_json::to_value(event) else { return None };
    let mut record = Map::new();
    record.insert("ts".into(), Value::String(timestamp()));
    record.insert("level".into(), Value::String(event_level.name().into()));
    for (key, mut value) in fields {
        if level > Level::Debug && matches!(key.as_str(), "message" | "previous") {
            strip_content(&mut value);
        }
        record.insert(key, value);
    }
    serde_json::to_string(&Value::Object(record)).ok()
}

/// Replaces a message's body and attachment with the body's length.
fn strip_content(message: &mut Value) {
    let Value::Object(message) = message else { return };
    if let Some(Value::String(body)) = message.remove("body") {
        message.insert("body_chars".into(), Value::from(body.chars().count()));
    }
    if let Some(attachment) = message.remove("attachment") {
        message.insert("has_attachment".into(), Value::Bool(!attachment.is_null()));
    }
}

fn timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
