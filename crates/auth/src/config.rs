//! The `[auth]` section.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use xcore_core::config::{Problems, Section};

use crate::lockout::LockoutConfig;
use crate::notifier::NotifierConfig;
use crate::otp_key::{KEY_LEN, OtpKey};
use crate::password::PasswordConfig;
use crate::token::{AccessTokens, MIN_SECRET_LEN, TokenError};

/// The `[auth]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The `iss` of access tokens, checked on every token, and the issuer shown by
    /// authenticator apps.
    pub issuer: String,
    /// The `aud` of access tokens, checked on every token.
    pub audience: String,
    /// Lifetime of an access token (default 15 minutes).
    pub access_ttl_secs: u64,
    /// Lifetime of a refresh token; each refresh issues a new one (default 30 days).
    pub refresh_ttl_secs: u64,
    /// How long a just-rotated refresh token still answers with the same successor
    /// instead of counting as reuse (default 10 s; 0 turns it off): a client refreshing
    /// twice at once keeps its session.
    pub refresh_grace_secs: u64,
    /// The HS256 signing secret, at least 32 bytes. Unset in `dev`, one is generated and
    /// kept in the data directory; `prod` refuses to start without it (or a key pair).
    pub secret: Option<String>,
    /// An Ed25519 private key (PEM) to sign with EdDSA instead of HS256; needs
    /// `public_key_file` too.
    pub private_key_file: Option<PathBuf>,
    /// The Ed25519 public key (PEM) that verifies tokens.
    pub public_key_file: Option<PathBuf>,
    /// The key that encrypts two-factor secrets at rest: 32 bytes as 64 hexadecimal
    /// characters (`openssl rand -hex 32`). Unset in `dev`, one is generated and kept in
    /// the data directory; `prod` refuses to start without it. Secrets encrypted with a
    /// key cannot be read without it.
    pub otp_secret_key: Option<String>,
    /// Lifetime of a password-reset code (default 15 minutes).
    pub reset_code_ttl_secs: u64,
    /// How often each node reads the sessions other nodes ended (default 1 s): an ended
    /// session is refused on the node that ended it at once, and on every other within
    /// this.
    pub revocation_poll_ms: u64,
    pub password: PasswordConfig,
    pub lockout: LockoutConfig,
    pub notifier: NotifierConfig,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            issuer: "xcore".to_owned(),
            audience: "xcore".to_owned(),
            access_ttl_secs: 15 * 60,
            refresh_ttl_secs: 30 * 24 * 3600,
            refresh_grace_secs: 10,
            secret: None,
            private_key_file: None,
            public_key_file: None,
            otp_secret_key: None,
            reset_code_ttl_secs: 15 * 60,
            revocation_poll_ms: 1000,
            password: PasswordConfig::default(),
            lockout: LockoutConfig::default(),
            notifier: NotifierConfig::default(),
        }
    }
}

impl AuthConfig {
    /// Whether tokens are signed with a key pair from files rather than a secret.
    pub fn uses_key_files(&self) -> bool {
        self.private_key_file.is_some() && self.public_key_file.is_some()
    }

    /// The access tokens these settings describe, signing with the key files when set and
    /// with `secret` otherwise (the configured `secret` is ignored then).
    ///
    /// # Errors
    ///
    /// [`TokenError::Key`] for unreadable key files, [`TokenError::ShortSecret`].
    pub fn access_tokens(&self, secret: &[u8]) -> Result<AccessTokens, TokenError> {
        if let (Some(private), Some(public)) = (&self.private_key_file, &self.public_key_file) {
            let read = |path: &PathBuf| {
                std::fs::read(path)
                    .map_err(|error| TokenError::Key(format!("{}: {error}", path.display())))
            };
            return AccessTokens::eddsa(
                &read(private)?,
                &read(public)?,
                &self.issuer,
                &self.audience,
                self.access_ttl_secs,
            );
        }
        AccessTokens::hs256(secret, &self.issuer, &self.audience, self.access_ttl_secs)
    }
}

impl Section for AuthConfig {
    fn validate(&self, problems: &mut Problems) {
        problems.check(!self.issuer.trim().is_empty(), "issuer", "must not be empty");
        problems.check(!self.audience.trim().is_empty(), "audience", "must not be empty");
        problems.check(self.access_ttl_secs > 0, "access_ttl_secs", "must be at least 1");
        problems.check(self.refresh_ttl_secs > 0, "refresh_ttl_secs", "must be at least 1");
        problems.check(
            self.refresh_grace_secs <= 300,
            "refresh_grace_secs",
            "must be at most 300: a rotated token should stop working soon",
        );
        problems.check(self.reset_code_ttl_secs > 0, "reset_code_ttl_secs", "must be at least 1");
        problems.check(self.revocation_poll_ms >= 10, "revocation_poll_ms", "must be at least 10");
        if let Some(secret) = &self.secret
            && secret.len() < MIN_SECRET_LEN
        {
            problems.add(
                "secret",
                format!(
                    "has {} bytes; it needs at least {MIN_SECRET_LEN} (for example the output \
                     of `openssl rand -base64 48`)",
                    secret.len()
                ),
            );
        }
        if let Some(key) = &self.otp_secret_key
            && OtpKey::from_hex(key).is_none()
        {
            problems.add(
                "otp_secret_key",
                format!(
                    "must be {} hexadecimal characters (32 bytes), for example the output of \
                     `openssl rand -hex 32`",
                    2 * KEY_LEN
                ),
            );
        }
        problems.check(
            self.private_key_file.is_some() == self.public_key_file.is_some(),
            "private_key_file",
            "`private_key_file` and `public_key_file` go together",
        );
        let password = &self.password;
        problems.check(
            password.min_length >= 8,
            "password.min_length",
            "must be at least 8 (NIST SP 800-63B)",
        );
        problems.check(
            password.max_length >= password.min_length,
            "password.max_length",
            "must be at least `password.min_length`",
        );
        problems.check(
            password.max_concurrent > 0,
            "password.max_concurrent",
            "must be at least 1",
        );
        let lockout = &self.lockout;
        problems.check(lockout.threshold > 0, "lockout.threshold", "must be at least 1");
        problems.check(
            lockout.account_threshold >= lockout.threshold,
            "lockout.account_threshold",
            "must be at least `lockout.threshold`",
        );
        problems.check(
            lockout.forget_after_secs >= lockout.max_secs,
            "lockout.forget_after_secs",
            "must be at least `lockout.max_secs`",
        );
        problems.nested("notifier", &self.notifier);
    }
}
