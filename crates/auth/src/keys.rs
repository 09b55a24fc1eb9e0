//! The auth module's keys: the token signing secret (`auth.secret`) and the key that
//! seals two-factor secrets at rest (`auth.otp_secret_key`, see [`crate::otp_key`]).
//!
//! Each comes from the config, or in `dev` is generated once and kept in the host's data
//! directory (the directory mode 0700, the file 0600), so a fresh checkout runs as is and
//! tokens and two-factor secrets survive restarts. `prod` never generates one: a server
//! whose keys change on a restart would log everyone out, and lock out everyone with
//! two-factor on.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use xcore_core::files::{self, Access};
use xcore_core::{Environment, Host};

use crate::config::AuthConfig;
use crate::otp_key::{KEY_LEN, OtpKey};
use crate::token::MIN_SECRET_LEN;

/// Why there is no signing secret, or no key for two-factor secrets.
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
    /// Production without `auth.otp_secret_key`.
    #[error(
        "production (`server.environment = \"prod\"`) needs a key to encrypt two-factor \
         secrets: set `auth.otp_secret_key` (or XCORE_AUTH__OTP_SECRET_KEY) to 32 random \
         bytes in hexadecimal, for example `openssl rand -hex 32`, and keep it: the \
         secrets it encrypts cannot be read without it"
    )]
    OtpKeyMissing,
    /// The generated two-factor key's file holds no key.
    #[error(
        "the key file {} does not hold {} hexadecimal characters: restore it (two-factor \
         secrets encrypted with it cannot be read without it), or set \
         `auth.otp_secret_key` to the key they were encrypted with",
        .0.display(),
        2 * KEY_LEN
    )]
    OtpKeyFile(PathBuf),
    /// A generated key's file cannot be read or written.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

impl SecretError {
    /// The `[auth]` key to set to solve this, if setting one does.
    pub fn config_key(&self) -> Option<&'static str> {
        match self {
            Self::Missing | Self::Short(_) => Some("secret"),
            Self::OtpKeyMissing | Self::OtpKeyFile(_) => Some("otp_secret_key"),
            Self::Io { .. } => None,
        }
    }
}

/// The file, in the data directory, holding the secret generated in `dev`.
pub const SECRET_FILE: &str = "auth-secret";

/// The file, in the data directory, holding the two-factor key generated in `dev`.
pub const OTP_KEY_FILE: &str = "auth-otp-key";

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

/// The secret kept at `path`, made there when there is none.
fn dev_secret(path: &Path) -> Result<Vec<u8>, SecretError> {
    let generate = || {
        let mut bytes = [0u8; GENERATED_BYTES];
        getrandom::fill(&mut bytes).map_err(|error| std::io::Error::other(error.to_string()))?;
        Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
    };
    let (secret, generated) = kept(path, "the token signing secret", generate)?;
    if secret.len() < MIN_SECRET_LEN {
        return Err(SecretError::Short(path.to_path_buf()));
    }
    if generated {
        tracing::warn!(path = %path.display(), "generated a secret to sign access tokens, for development; set `auth.secret` in production");
    } else {
        tracing::warn!(path = %path.display(), "signing access tokens with the secret generated for development; set `auth.secret` in production");
    }
    Ok(secret.into_bytes())
}

/// The key that seals two-factor secrets: `auth.otp_secret_key`, or in `dev` the key kept
/// in the data directory.
///
/// # Errors
///
/// [`SecretError::OtpKeyMissing`] in `prod` without a key; in `dev` when the key file
/// cannot be read or written, or holds no key. A configured key that is not 64
/// hexadecimal characters is [`AuthConfig`]'s validation's to report; here it is
/// [`SecretError::OtpKeyMissing`].
pub fn otp_key(auth: &AuthConfig, host: &Host) -> Result<OtpKey, SecretError> {
    if let Some(key) = &auth.otp_secret_key {
        return OtpKey::from_hex(key).ok_or(SecretError::OtpKeyMissing);
    }
    match host.environment {
        Environment::Prod => Err(SecretError::OtpKeyMissing),
        Environment::Dev => dev_otp_key(&otp_key_path(host)),
    }
}

/// The key kept at `path`, made there when there is none.
fn dev_otp_key(path: &Path) -> Result<OtpKey, SecretError> {
    let generate = || OtpKey::generate().map(|(_, hex)| hex).map_err(std::io::Error::other);
    let (hex, generated) = kept(path, "the two-factor secrets' key", generate)?;
    let key = OtpKey::from_hex(&hex).ok_or_else(|| SecretError::OtpKeyFile(path.to_path_buf()))?;
    if generated {
        tracing::warn!(path = %path.display(), "generated a key to encrypt two-factor secrets, for development; set `auth.otp_secret_key` in production");
    }
    Ok(key)
}

/// The text kept in the file `path` (`what`, for messages), trimmed, and whether it was
/// generated now: when there is no file, `generate` makes the text, written with mode
/// 0600 into a directory created with mode 0700.
fn kept(
    path: &Path,
    what: &str,
    generate: impl Fn() -> std::io::Result<String>,
) -> Result<(String, bool), SecretError> {
    let failed = |source| SecretError::Io { path: path.to_path_buf(), source };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mode = std::fs::metadata(path).map_err(failed)?.permissions().mode();
            files::warn_if_shared(Access::of(mode), path, what);
            Ok((text.trim().to_owned(), false))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
                let access = files::private_dir(dir).map_err(failed)?;
                files::warn_if_shared(access, dir, "the data directory");
            }
            let text = generate().map_err(failed)?;
            let file =
                std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path);
            match file {
                Ok(mut file) => {
                    file.write_all(text.as_bytes())
                        .and_then(|()| file.sync_all())
                        .map_err(failed)?;
                    Ok((text, true))
                }
                // Another process made it first (two servers started at once): use theirs.
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                    kept(path, what, generate)
                }
                Err(error) => Err(failed(error)),
            }
        }
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

/// A two-factor key that lives only in memory, for commands that never read or write
/// two-factor secrets.
pub fn ephemeral_otp_key() -> OtpKey {
    let mut bytes = [0u8; KEY_LEN];
    // Without randomness the key is still a valid key; nothing is sealed with it.
    let _ = getrandom::fill(&mut bytes);
    OtpKey::from_bytes(&bytes)
}

/// Where the development secret is kept.
pub fn secret_path(host: &Host) -> PathBuf {
    host.data_dir.join(SECRET_FILE)
}

/// Where the development two-factor key is kept.
pub fn otp_key_path(host: &Host) -> PathBuf {
    host.data_dir.join(OTP_KEY_FILE)
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

    /// Hardening, point 10: the data directory xcore creates is 0700, its keys 0600.
    #[test]
    fn dev_generates_the_otp_key_once_in_a_private_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (config, host) =
            (AuthConfig::default(), host(&dir.path().join("nested"), Environment::Dev));
        let first = otp_key(&config, &host).unwrap();
        let path = otp_key_path(&host);
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&path), mode(&host.data_dir)), (0o600, 0o700));
        let sealed = first.seal(1, b"12345678901234567890").unwrap();
        let again = otp_key(&config, &host).unwrap();
        assert_eq!(again.open(1, &sealed).unwrap().secret(), b"12345678901234567890");

        std::fs::write(&path, "not a key").unwrap();
        let error = otp_key(&config, &host).unwrap_err();
        assert!(matches!(error, SecretError::OtpKeyFile(_)), "{error}");
        assert_eq!(error.config_key(), Some("otp_secret_key"));
    }

    #[test]
    fn a_configured_otp_key_wins_and_prod_never_generates_one() {
        let dir = tempfile::tempdir().unwrap();
        let host = host(dir.path(), Environment::Prod);
        let mut config = AuthConfig::default();
        assert!(matches!(otp_key(&config, &host), Err(SecretError::OtpKeyMissing)));
        assert!(!otp_key_path(&host).exists());
        config.otp_secret_key = Some("ab".repeat(KEY_LEN));
        let key = otp_key(&config, &host).unwrap();
        let expected = OtpKey::from_bytes(&[0xab; KEY_LEN]);
        let sealed = expected.seal(3, b"12345678901234567890").unwrap();
        assert_eq!(key.open(3, &sealed).unwrap().secret(), b"12345678901234567890");
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
