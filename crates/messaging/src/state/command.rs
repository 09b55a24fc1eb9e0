//! `xcore messaging export [FILE]` and `xcore messaging import FILE`.
//!
//! Both first apply the messaging tables' pending migrations, as the server does when it
//! starts, so they work on a database the server has never opened. An export goes to
//! standard output, or to FILE through a temporary file in the same directory, renamed
//! over FILE only once complete and synced: a failed export leaves no half file, and the
//! file is created readable by its owner only (it holds every message).

use std::fs::{File, OpenOptions};
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use xcore_core::HookError;
use xcore_core::files::{self, Access};

use crate::Engine;

const USAGE: &str = "usage: xcore messaging export [FILE] | xcore messaging import FILE";

/// Runs `xcore messaging` with `args`, the words after `messaging`.
// A command-line command: printing its result is its job.
#[allow(clippy::print_stdout, clippy::print_stderr)]
pub(crate) async fn run(engine: Engine, args: Vec<String>) -> Result<(), HookError> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["export"] => {
            engine.migrate().await?;
            let mut out = BufWriter::new(std::io::stdout());
            let report = engine.export_state(&mut out).await?;
            // Standard output carries the file: the report goes to standard error.
            eprintln!("exported {report}");
            warn_shared(&report.shared_group_names);
        }
        ["export", path] => {
            engine.migrate().await?;
            let report = export_to(&engine, Path::new(path)).await?;
            println!("exported {report} to {path}");
            warn_shared(&report.shared_group_names);
        }
        ["import", path] => {
            let text = std::fs::read_to_string(path)
                .map_err(|error| format!("cannot read {path}: {error}"))?;
            engine.migrate().await?;
            let report = engine
                .import_state(&text)
                .await
                .map_err(|error| format!("{path}: {error}; nothing was imported"))?;
            println!("imported {path}{}", if report.changed() { "" } else { ": nothing new" });
            for line in report.to_string().lines() {
                println!("  {line}");
            }
        }
        _ => return Err(format!("{USAGE}; got {args:?}").into()),
    }
    Ok(())
}

#[allow(clippy::print_stderr)]
fn warn_shared(names: &[String]) {
    if !names.is_empty() {
        eprintln!(
            "warning: several groups share each of these names, and an import matches groups \
             by name, so this file will not import until all but one of each are renamed: {}",
            names.join(", ")
        );
    }
}

/// Exports to `path` through a temporary file renamed over it once complete.
async fn export_to(engine: &Engine, path: &Path) -> Result<crate::ExportReport, HookError> {
    let (temporary, file) = temporary_next_to(path)?;
    let guard = Remove(Some(temporary.clone()));
    let mut out = BufWriter::new(file);
    let report = engine.export_state(&mut out).await?;
    let file = out.into_inner().map_err(|error| error.into_error())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path).map_err(|error| {
        format!("cannot rename {} to {}: {error}", temporary.display(), path.display())
    })?;
    guard.disarm();
    // Make the rename itself durable.
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(report)
}

/// A new file, open to its owner only, in `path`'s directory: its path and the file.
fn temporary_next_to(path: &Path) -> Result<(PathBuf, File), HookError> {
    let name = path
        .file_name()
        .ok_or_else(|| format!("{} does not name a file", path.display()))?
        .to_string_lossy();
    for attempt in 0..100 {
        let temporary =
            path.with_file_name(format!(".{name}.{}.{attempt}.tmp", std::process::id()));
        let access = files::private_file(&temporary)
            .map_err(|error| format!("cannot create {}: {error}", temporary.display()))?;
        // One left by an export that was killed is not ours to reuse.
        if access == Access::Created {
            let file = OpenOptions::new().write(true).open(&temporary)?;
            return Ok((temporary, file));
        }
    }
    Err(format!("cannot create a temporary file next to {}", path.display()).into())
}

/// Removes a file when dropped, unless disarmed.
struct Remove(Option<PathBuf>);

impl Remove {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for Remove {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}
