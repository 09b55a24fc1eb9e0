//! The `advanced_logging` plugin: the original engine's extension of that name, a rotating
//! log of message events, as JSON lines.
//!
//! Each line is one event of the messaging engine (`connect`, `disconnect`, `message`,
//! `message_edited`, `message_deleted`, `group_created`, `member_added`, …, `error`), with
//! `ts` (RFC 3339, UTC, microseconds), `level` and the event's fields. Hook failures
//! (`error`) are logged at `error`, every other event at `info`. Message bodies and
//! attachments are written only at level `debug`; above it a message shows `body_chars`
//! and `has_attachment` instead: the log tells what happened, the database keeps what
//! was said.
//!
//! The file rotates as the original's (Python's `RotatingFileHandler`): when a line would
//! take it past `max_bytes`, it becomes `file.1`, `file.1` becomes `file.2`, …, up to
//! `backups` files, the oldest dropped. Files are created with mode 0600. A relative
//! `file` is under the data directory. Each node writes its own file: give nodes sharing
//! a disk different paths.
//!
//! Lines are written by one thread, off the hooks' tasks, and flushed whenever it has
//! caught up; on shutdown the plugin waits (up to 5 s) for the lines queued so far. The
//! hooks run on the engine's notification queues, so logging never delays a send; a
//! failing disk is reported in the server's log once, then again when it recovers.

mod file;
mod logger;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use xcore_core::config::{Problems, Section};
use xcore_core::{AppBuilder, Plugin, PluginError, PluginMeta, register_plugin};
use xcore_messaging::MessagingExt as _;

pub use file::{RotatingFile, backup};
pub use logger::{HOOK, Logger, Writer, level_of, line};

/// The plugin. Registered below with [`register_plugin!`]; the server links this crate
/// with `use xcore_plugin_advanced_logging as _;`.
#[derive(Debug, Clone, Copy)]
pub struct AdvancedLogging;

register_plugin!(AdvancedLogging);

/// How much is logged, as the original's `advanced_log_level` (Python's level names, in
/// any case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Every event, with message bodies and attachments.
    #[serde(alias = "DEBUG", alias = "Debug")]
    Debug,
    /// Every event, without message content.
    #[serde(alias = "INFO", alias = "Info")]
    Info,
    /// Hook failures only (no event is a warning today).
    #[serde(alias = "WARNING", alias = "Warning", alias = "warn", alias = "WARN")]
    Warning,
    /// Hook failures only.
    #[serde(alias = "ERROR", alias = "Error")]
    Error,
}

impl Level {
    /// The name written in the `level` field.
    pub fn name(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
        }
    }
}

/// `[plugins.advanced_logging]` in `xcore.toml`, or `XCORE_PLUGINS__ADVANCED_LOGGING__<KEY>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdvancedLoggingConfig {
    /// The log file, the original's `advanced_log_file`; relative paths are under the
    /// data directory (default `"messages.log"`).
    pub file: PathBuf,
    /// Size at which the file rotates, in bytes (default 2,000,000, as the original);
    /// 0 never rotates.
    pub max_bytes: u64,
    /// Rotated files kept (default 3, as the original); 0 starts the file afresh at
    /// `max_bytes`, keeping nothing older.
    pub backups: u32,
    /// `debug`, `info`, `warning` or `error`, the original's `advanced_log_level`
    /// (default `info`).
    pub level: Level,
    /// Lines waiting for the writer before hooks wait in turn (default 10,000).
    pub queue: usize,
}

impl Default for AdvancedLoggingConfig {
    fn default() -> Self {
        Self {
            file: PathBuf::from("messages.log"),
            max_bytes: 2_000_000,
            backups: 3,
            level: Level::Info,
            queue: 10_000,
        }
    }
}

/// Backups beyond this many are surely a typo.
const MAX_BACKUPS: u32 = 1000;

impl Section for AdvancedLoggingConfig {
    fn validate(&self, problems: &mut Problems) {
        let names_a_directory = self.file.as_os_str().as_encoded_bytes().ends_with(b"/");
        if names_a_directory || self.file.file_name().is_none() {
            problems.add("file", "must name a file");
        }
        if self.backups > MAX_BACKUPS {
            problems.add("backups", format!("must be at most {MAX_BACKUPS}"));
        }
        problems.check(self.queue > 0, "queue", "must be at least 1");
    }
}

impl Plugin for AdvancedLogging {
    fn meta(&self) -> PluginMeta {
        PluginMeta {
            version: env!("CARGO_PKG_VERSION"),
            description: env!("CARGO_PKG_DESCRIPTION"),
            author: "xcore developers",
            dependencies: &["messaging"],
            ..PluginMeta::new("advanced_logging")
        }
    }

    fn build(&self, app: &mut AppBuilder) -> Result<(), PluginError> {
        let config: AdvancedLoggingConfig = app.config()?;
        if app.host().offline {
            // Built to be inspected: no file is opened.
            return Ok(());
        }
        let path = app.host().data_dir.join(&config.file);
        let (logger, writer) = Logger::new(&config, path.clone());
        logger.register(app.messaging_hooks());
        app.on_startup(move || async move {
            if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
                xcore_core::files::private_dir(dir)
                    .map_err(|error| format!("creating {}: {error}", dir.display()))?;
            }
            writer.spawn().map_err(|error| format!("opening {}: {error}", path.display()))?;
            Ok(())
        });
        app.on_shutdown(move || async move { logger.flush().await });
        Ok(())
    }
}

#[cfg(test)]
mod tests;
