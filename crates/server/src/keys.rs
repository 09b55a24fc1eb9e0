//! The token signing secret: from `auth.secret`, or in `dev` generated once and kept in
//! the data directory.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use xcore_auth::token::MIN_SECRET_LEN;
use xcore_core::config::ConfigError;

use crate::Error;
use crate::config::{Config, Environment};

/// The file, in the data directory, holding the secret generated in `dev`.
pub const SECRET_FILE: &str = "auth-secret";

/// Random bytes in a generated secret (64 characters once encoded).
const GENERATED_BYTES: usize = 48;

/// The HS256 secret to sign access tokens with. Unused (and empty) when key files are
/// configured.
///
/// # Errors
///
/// In `prod` without a secret (config validation reports it first); in `dev` when the
/// secret file cannot be read or written, or holds too short a secret.
pub fn token_secret(config: &Config) -> Result<Vec<u8>, Error> {
    let auth = &config.auth;
    if let Some(secret) = &auth.secret {
        return Ok(secret.as_bytes().to_vec());
    }
    if auth.uses_key_files() {
        return Ok(Vec::new());
    }
    match config.server.environment {
        Environment::Prod => Err(Error::Config(vec![ConfigError {
            key: "auth.secret".to_owned(),
            origin: None,
            message: "production needs `auth.secret` (at least 32 bytes) or key files".to_owned(),
        }])),
        Environment::Dev => dev_secret(&config.server.data_dir.join(SECRET_FILE)),
    }
}

/// The secret kept at `path`, made there (mode 0600) when there is none.
fn dev_secret(path: &Path) -> Result<Vec<u8>, Error> {
    let failed = |source| Error::Secret { path: path.to_path_buf(), source };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let secret = text.trim();
            if secret.len() < MIN_SECRET_LEN {
                return Err(short(path));
            }
            let mode = std::fs::metadata(path).map_err(failed)?.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "the token signing secret can be read by other users: chmod 600 it");
            }
            tracing::warn!(path = %path.display(), "signing access tokens with the secret generated for development; set `auth.secret` in production");
            Ok(secret.as_bytes().to_vec())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => generate(path),
        Err(error) => Err(failed(error)),
    }
}

fn generate(path: &Path) -> Result<Vec<u8>, Error> {
    let failed = |source| Error::Secret { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    let mut bytes = [0u8; GENERATED_BYTES];
    getrandom::fill(&mut bytes).map_err(|error| failed(std::io::Error::other(error)))?;
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path);
    match file {
        Ok(mut file) => {
            file.write_all(secret.as_bytes()).and_then(|()| file.sync_all()).map_err(failed)?;
            tracing::warn!(path = %path.display(), "generated a secret to sign access tokens, for development; set `auth.secret` in production");
            Ok(secret.into_bytes())
        }
        // Another process made it first (two servers started at once): use theirs.
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => dev_secret(path),
        Err(error) => Err(failed(error)),
    }
}

fn short(path: &Path) -> Error {
    Error::Config(vec![ConfigError {
        key: "auth.secret".to_owned(),
        origin: Some(path.display().to_string()),
        message: format!(
            "the secret file holds fewer than {MIN_SECRET_LEN} bytes: delete it to have a new \
             one generated, or set `auth.secret`"
        ),
    }])
}

/// A secret that lives only in memory, for commands that never issue tokens.
pub fn ephemeral_secret() -> Vec<u8> {
    let mut bytes = [0u8; GENERATED_BYTES];
    // Without randomness the secret is still a valid key; nothing is signed with it.
    let _ = getrandom::fill(&mut bytes);
    bytes.to_vec()
}

/// Where `config` keeps the development secret.
pub fn secret_path(config: &Config) -> PathBuf {
    config.server.data_dir.join(SECRET_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_generates_once_with_mode_0600_and_reuses_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.server.data_dir = dir.path().join("nested");
        let first = token_secret(&config).unwrap();
        assert!(first.len() >= MIN_SECRET_LEN);
        let path = secret_path(&config);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(token_secret(&config).unwrap(), first, "the same secret on every start");

        std::fs::write(&path, "short").unwrap();
        assert!(matches!(token_secret(&config), Err(Error::Config(_))));
    }

    #[test]
    fn a_configured_secret_wins_and_prod_never_generates() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.server.data_dir = dir.path().to_path_buf();
        config.server.environment = Environment::Prod;
        assert!(matches!(token_secret(&config), Err(Error::Config(_))));
        assert!(!secret_path(&config).exists());
        config.auth.secret = Some("s".repeat(40));
        assert_eq!(token_secret(&config).unwrap(), "s".repeat(40).into_bytes());
    }
}
