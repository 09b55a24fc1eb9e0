//! The token signing secret: from `auth.secret`, or in `dev` generated once and kept in
//! the host's data directory (mode 0600), so a fresh checkout runs as is and tokens
//! survive restarts.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use xcore_core::{Environment, Host};

use crate::config::AuthConfig;
use crate::token::MIN_SECRET_LEN;

/// Why there is no signing secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Production without `auth.secret` or key files.
    #[error(
        "production (`server.environment = \"prod\"`) needs a token signing secret: set \
         `auth.secret` (or XCORE_AUTH__SECRET) to at least 32 random bytes, for example \
         `openssl rand -base64 48`, or set `auth.private_key_file` and \
         `auth.public_key_file` to sign with Ed25519"
    )]
    Missing,
    /// The generated secret's file holds too few bytes.
    #[error(
        "the secret file {} holds fewer than {MIN_SECRET_LEN} bytes: delete it to have a new \
         one generated, or set `auth.secret`",
        .0.display()
    )]
    Short(PathBuf),
    /// The generated secret's file cannot be read or written.
    #[error("token signing secret {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

/// The file, in the data directory, holding the secret generated in `dev`.
pub const SECRET_FILE: &str = "auth-secret";

/// Random bytes in a generated secret (64 characters once encoded).
const GENERATED_BYTES: usize = 48;

/// The HS256 secret to sign access tokens with. Unused (and empty) when key files are
/// configured.
///
/// # Errors
///
/// [`SecretError::Missing`] in `prod` without a secret; in `dev` when the secret file
/// cannot be read or written, or holds too short a secret.
pub fn token_secret(auth: &AuthConfig, host: &Host) -> Result<Vec<u8>, SecretError> {
    if let Some(secret) = &auth.secret {
        return Ok(secret.as_bytes().to_vec());
    }
    if auth.uses_key_files() {
        return Ok(Vec::new());
    }
    match host.environment {
        Environment::Prod => Err(SecretError::Missing),
        Environment::Dev => dev_secret(&secret_path(host)),
    }
}

/// The secret kept at `path`, made there (mode 0600) when there is none.
fn dev_secret(path: &Path) -> Result<Vec<u8>, SecretError> {
    let failed = |source| SecretError::Io { path: path.to_path_buf(), source };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let secret = text.trim();
            if secret.len() < MIN_SECRET_LEN {
                return Err(SecretError::Short(path.to_path_buf()));
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

fn generate(path: &Path) -> Result<Vec<u8>, SecretError> {
    let failed = |source| SecretError::Io { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    let mut bytes = [0u8; GENERATED_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|error| failed(std::io::Error::other(error.to_string())))?;
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

/// A secret that lives only in memory, for commands that never issue tokens.
pub fn ephemeral_secret() -> Vec<u8> {
    let mut bytes = [0u8; GENERATED_BYTES];
    // Without randomness the secret is still a valid key; nothing is signed with it.
    let _ = getrandom::fill(&mut bytes);
    bytes.to_vec()
}

/// Where the development secret is kept.
pub fn secret_path(host: &Host) -> PathBuf {
    host.data_dir.join(SECRET_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(dir: &Path, environment: Environment) -> Host {
        Host { environment, data_dir: dir.to_path_buf(), offline: false }
    }

    #[test]
    fn dev_generates_once_with_mode_0600_and_reuses_it() {
        let dir = tempfile::tempdir().unwrap();
        let (config, host) =
            (AuthConfig::default(), host(&dir.path().join("nested"), Environment::Dev));
        let first = token_secret(&config, &host).unwrap();
        assert!(first.len() >= MIN_SECRET_LEN);
        let path = secret_path(&host);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(token_secret(&config, &host).unwrap(), first, "the same secret on every start");

        std::fs::write(&path, "short").unwrap();
        assert!(matches!(token_secret(&config, &host), Err(SecretError::Short(_))));
    }

    #[test]
    fn a_configured_secret_wins_and_prod_never_generates() {
        let dir = tempfile::tempdir().unwrap();
        let host = host(dir.path(), Environment::Prod);
        let mut config = AuthConfig::default();
        assert!(matches!(token_secret(&config, &host), Err(SecretError::Missing)));
        assert!(!secret_path(&host).exists());
        config.secret = Some("s".repeat(40));
        assert_eq!(token_secret(&config, &host).unwrap(), "s".repeat(40).into_bytes());
    }
}
