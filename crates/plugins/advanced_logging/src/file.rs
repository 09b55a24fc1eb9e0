//! A log file that rotates by size, as Python's `RotatingFileHandler` does (the original
//! engine's): when a line would take `file` past `max_bytes`, `file.{backups-1}` becomes
//! `file.{backups}` (the oldest is dropped), …, `file` becomes `file.1`, and a fresh
//! `file` is started.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use xcore_core::files::FILE_MODE;

/// The log file being written, with its size.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    backups: u32,
    out: BufWriter<File>,
    size: u64,
}

impl RotatingFile {
    /// Opens `path` for appending, creating it with mode 0600 (log lines hold user data).
    /// `max_bytes` of 0 never rotates; `backups` of 0 starts the file afresh at the limit
    /// and keeps no older lines.
    ///
    /// # Errors
    ///
    /// The error of opening or creating the file.
    pub fn open(path: &Path, max_bytes: u64, backups: u32) -> io::Result<Self> {
        let (out, size) = append(path)?;
        Ok(Self { path: path.to_owned(), max_bytes, backups, out, size })
    }

    /// Appends `line` and a newline, rotating first when it would not fit. A line longer
    /// than `max_bytes` on its own goes whole into a fresh file.
    ///
    /// # Errors
    ///
    /// The error of writing or rotating; the line may then be lost, never half-written
    /// into a rotated file.
    pub fn write_line(&mut self, line: &str) -> io::Result<()> {
        let len = line.len() as u64 + 1;
        if self.max_bytes > 0 && self.size > 0 && self.size + len > self.max_bytes {
            self.rotate()?;
        }
        self.out.write_all(line.as_bytes())?;
        self.out.write_all(b"\n")?;
        self.size += len;
        Ok(())
    }

    /// Writes what is buffered to the file.
    ///
    /// # Errors
    ///
    /// The error of writing.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The path of the current file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.out.flush()?;
        if self.backups == 0 {
            let file = OpenOptions::new().write(true).truncate(true).open(&self.path)?;
            self.out = BufWriter::new(file);
            self.size = 0;
            return Ok(());
        }
        for n in (1..self.backups).rev() {
            let from = backup(&self.path, n);
            if from.exists() {
                std::fs::rename(&from, backup(&self.path, n + 1))?;
            }
        }
        std::fs::rename(&self.path, backup(&self.path, 1))?;
        (self.out, self.size) = append(&self.path)?;
        Ok(())
    }
}

/// `path` with `.n` appended: the `n`th backup.
pub fn backup(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Opens `path` for appending (mode 0600 if created) and returns it with its size.
fn append(path: &Path) -> io::Result<(BufWriter<File>, u64)> {
    let file = OpenOptions::new().append(true).create(true).mode(FILE_MODE).open(path)?;
    let size = file.metadata()?.len();
    Ok((BufWriter::with_capacity(64 * 1024, file), size))
}
