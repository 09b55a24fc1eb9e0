//! Directories and files only the server's own user may open.
//!
//! The data directory and what xcore keeps in it (the SQLite database, generated secrets)
//! hold credentials, so xcore creates directories with mode 0700 and files with mode 0600.
//! The mode is set explicitly after creation, so the process's umask changes nothing.
//! What already exists is left as it is, since the operator who made it may have a reason
//! (a backup group, say): the caller is told, and warns with [`warn_if_shared`].

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

/// Mode of the directories xcore creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the files xcore creates.
pub const FILE_MODE: u32 = 0o600;

/// Who can open a directory or file that [`private_dir`] or [`private_file`] looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// It did not exist and was created, open to its owner only.
    Created,
    /// It existed, open to its owner only.
    Private,
    /// It existed and its group or other users have some access: the permission bits.
    Shared(u32),
}

impl Access {
    /// The access of an existing directory or file of mode `mode`.
    pub fn of(mode: u32) -> Self {
        if mode & 0o077 == 0 { Self::Private } else { Self::Shared(mode & 0o777) }
    }
}

/// Makes sure the directory `dir` exists: when it does not, creates it and any missing
/// parent with mode 0700.
///
/// # Errors
///
/// The error of reading `dir`'s metadata, of creating it or of setting its mode; an
/// [`io::ErrorKind::AlreadyExists`] error when `dir` is a file.
pub fn private_dir(dir: &Path) -> io::Result<Access> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(Access::of(meta.permissions().mode())),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a directory", dir.display()),
        )),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            // `recursive` also tolerates another process creating it at the same time.
            DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)?;
            std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))?;
            Ok(Access::Created)
        }
        Err(error) => Err(error),
    }
}

/// Makes sure the file `path` exists: when it does not, creates it empty with mode 0600.
/// Its directory must exist.
///
/// # Errors
///
/// The error of creating the file, of setting its mode or of reading its metadata.
pub fn private_file(path: &Path) -> io::Result<Access> {
    match OpenOptions::new().write(true).create_new(true).mode(FILE_MODE).open(path) {
        Ok(file) => {
            file.set_permissions(Permissions::from_mode(FILE_MODE))?;
            Ok(Access::Created)
        }
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            Ok(Access::of(std::fs::metadata(path)?.permissions().mode()))
        }
        Err(error) => Err(error),
    }
}

/// Logs a warning when `access` says that `path`, holding `what` (`"the data
/// directory"`), is open to other users, with the command that closes it.
pub fn warn_if_shared(access: Access, path: &Path, what: &str) {
    if let Access::Shared(mode) = access {
        let fix = if path.is_dir() { "chmod 700" } else { "chmod 600" };
        tracing::warn!(
            path = %path.display(),
            mode = format!("{mode:o}"),
            "{what} can be read by other users: {fix} it"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_directories_0700_and_files_0600() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        assert_eq!(private_dir(&dir).unwrap(), Access::Created);
        assert_eq!((mode(&root.path().join("a")), mode(&dir)), (0o700, 0o700));
        assert_eq!(private_dir(&dir).unwrap(), Access::Private);

        let file = dir.join("f");
        assert_eq!(private_file(&file).unwrap(), Access::Created);
        assert_eq!(mode(&file), 0o600);
        assert_eq!(private_file(&file).unwrap(), Access::Private);
        assert!(private_dir(&file).is_err(), "a file is not a directory");
    }

    #[test]
    fn what_exists_is_reported_and_left_alone() {
        let root = tempfile::tempdir().unwrap();
        std::fs::set_permissions(root.path(), Permissions::from_mode(0o755)).unwrap();
        assert_eq!(private_dir(root.path()).unwrap(), Access::Shared(0o755));
        let file = root.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        std::fs::set_permissions(&file, Permissions::from_mode(0o640)).unwrap();
        assert_eq!(private_file(&file).unwrap(), Access::Shared(0o640));
        assert_eq!((mode(root.path()), mode(&file)), (0o755, 0o640));
        assert_eq!(std::fs::read(&file).unwrap(), b"x", "an existing file is not truncated");
    }
}
