//! Access tokens: short-lived JWTs with a pinned algorithm.
//!
//! A token carries `sub` (the account), `sid` (the session it belongs to, so revoking a
//! session can be checked), `iat`, `nbf`, `exp`, `iss`, `aud`, `jti` and the account's
//! roles. Verification accepts only the one algorithm the server is configured with
//! (HS256 with a secret of at least 32 bytes, or EdDSA with a key pair), so neither
//! `alg: none` nor a token signed with another algorithm gets through, and it checks the
//! issuer, the audience, expiry and not-before with no leeway.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The shortest HS256 secret accepted, in bytes (the size of the hash).
pub const MIN_SECRET_LEN: usize = 32;

/// What an access token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The account's id.
    pub sub: String,
    /// The session's id.
    pub sid: String,
    /// Issued at, in seconds since the Unix epoch.
    pub iat: u64,
    /// Not valid before, in seconds since the Unix epoch.
    pub nbf: u64,
    /// Expires at, in seconds since the Unix epoch.
    pub exp: u64,
    pub iss: String,
    pub aud: String,
    /// This token's unique id.
    pub jti: String,
    /// The account's roles when the token was issued.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// Why a token or a key is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token has expired: the client should refresh it (`token_expired`).
    #[error("the access token has expired")]
    Expired,
    /// Anything else wrong with the token (`invalid_token`); the reason is for the log,
    /// not for the client.
    #[error("invalid access token: {0}")]
    Invalid(String),
    /// An HS256 secret shorter than [`MIN_SECRET_LEN`].
    #[error("the token secret has {0} bytes; it needs at least {MIN_SECRET_LEN}")]
    ShortSecret(usize),
    /// A key that cannot be read.
    #[error("unusable token key: {0}")]
    Key(String),
    /// Signing failed, or the system gave no random bytes for the token id.
    #[error("cannot issue a token: {0}")]
    Issue(String),
}

impl TokenError {
    /// The error code the HTTP layer answers with.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Expired => "token_expired",
            _ => "invalid_token",
        }
    }
}

/// Issues and verifies access tokens.
#[derive(Clone)]
pub struct AccessTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    algorithm: Algorithm,
    issuer: String,
    audience: String,
    ttl_secs: u64,
}

impl std::fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokens")
            .field("algorithm", &self.algorithm)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

impl AccessTokens {
    /// Tokens signed with HMAC-SHA256 and `secret`, valid `ttl_secs` seconds.
    ///
    /// # Errors
    ///
    /// [`TokenError::ShortSecret`] under [`MIN_SECRET_LEN`] bytes.
    pub fn hs256(
        secret: &[u8],
        issuer: &str,
        audience: &str,
        ttl_secs: u64,
    ) -> Result<Self, TokenError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(TokenError::ShortSecret(secret.len()));
        }
        let keys = (EncodingKey::from_secret(secret), DecodingKey::from_secret(secret));
        Ok(Self::with(keys, Algorithm::HS256, issuer, audience, ttl_secs))
    }

    /// Tokens signed with Ed25519: `private_pem` signs, `public_pem` verifies.
    ///
    /// # Errors
    ///
    /// [`TokenError::Key`] when either key is not an Ed25519 key in PEM.
    pub fn eddsa(
        private_pem: &[u8],
        public_pem: &[u8],
        issuer: &str,
        audience: &str,
        ttl_secs: u64,
    ) -> Result<Self, TokenError> {
        let key_error = |error: jsonwebtoken::errors::Error| TokenError::Key(error.to_string());
        let encoding = EncodingKey::from_ed_pem(private_pem).map_err(key_error)?;
        let decoding = DecodingKey::from_ed_pem(public_pem).map_err(key_error)?;
        Ok(Self::with((encoding, decoding), Algorithm::EdDSA, issuer, audience, ttl_secs))
    }

    fn with(
        (encoding, decoding): (EncodingKey, DecodingKey),
        algorithm: Algorithm,
        issuer: &str,
        audience: &str,
        ttl_secs: u64,
    ) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.algorithms = vec![algorithm];
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        Self {
            encoding,
            decoding,
            validation,
            algorithm,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl_secs,
        }
    }

    /// A token for account `subject` in session `session`, issued at `now` (seconds since
    /// the Unix epoch), and its claims.
    ///
    /// # Errors
    ///
    /// [`TokenError::Issue`] when signing fails or no random id can be made.
    pub fn issue(
        &self,
        subject: &str,
        session: &str,
        roles: &[String],
        now: u64,
    ) -> Result<(String, Claims), TokenError> {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|error| TokenError::Issue(error.to_string()))?;
        let claims = Claims {
            sub: subject.to_owned(),
            sid: session.to_owned(),
            iat: now,
            nbf: now,
            exp: now.saturating_add(self.ttl_secs),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            jti: id.iter().map(|byte| format!("{byte:02x}")).collect(),
            roles: roles.to_vec(),
        };
        let token = jsonwebtoken::encode(&Header::new(self.algorithm), &claims, &self.encoding)
            .map_err(|error| TokenError::Issue(error.to_string()))?;
        Ok((token, claims))
    }

    /// The claims of `token` if it is genuine, current, and for this issuer and audience.
    ///
    /// # Errors
    ///
    /// [`TokenError::Expired`] for an expired token, [`TokenError::Invalid`] for anything
    /// else.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(error) => Err(match error.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::Invalid("not valid yet".to_owned()),
                ErrorKind::InvalidIssuer => TokenError::Invalid("wrong issuer".to_owned()),
                ErrorKind::InvalidAudience => TokenError::Invalid("wrong audience".to_owned()),
                ErrorKind::InvalidSignature => TokenError::Invalid("bad signature".to_owned()),
                ErrorKind::InvalidAlgorithm => TokenError::Invalid("wrong algorithm".to_owned()),
                _ => TokenError::Invalid(error.to_string()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs())
    }

    fn tokens() -> AccessTokens {
        AccessTokens::hs256(SECRET, "xcore", "xcore-api", 900).unwrap()
    }

    fn invalid(result: Result<Claims, TokenError>) -> String {
        match result {
            Err(TokenError::Invalid(reason)) => reason,
            other => panic!("expected an invalid token, got {other:?}"),
        }
    }

    #[test]
    fn issued_tokens_verify_with_every_claim() {
        let tokens = tokens();
        let now = now();
        let (token, issued) = tokens.issue("42", "s1", &["admin".to_owned()], now).unwrap();
        let claims = tokens.verify(&token).unwrap();
        assert_eq!(claims, issued);
        assert_eq!((claims.iat, claims.nbf, claims.exp), (now, now, now + 900));
        assert_eq!((claims.iss.as_str(), claims.aud.as_str()), ("xcore", "xcore-api"));
        assert_eq!(claims.jti.len(), 32);
        let (_, other) = tokens.issue("42", "s1", &[], now).unwrap();
        assert_ne!(claims.jti, other.jti);
    }

    #[test]
    fn expired_and_future_tokens_are_refused() {
        let tokens = tokens();
        let (expired, _) = tokens.issue("42", "s1", &[], now() - 901).unwrap();
        assert_eq!(tokens.verify(&expired), Err(TokenError::Expired));
        assert_eq!(TokenError::Expired.code(), "token_expired");
        let (future, _) = tokens.issue("42", "s1", &[], now() + 60).unwrap();
        assert_eq!(invalid(tokens.verify(&future)), "not valid yet");
    }

    #[test]
    fn other_issuers_audiences_and_keys_are_refused() {
        let tokens = tokens();
        let stranger = AccessTokens::hs256(SECRET, "someone-else", "xcore-api", 900).unwrap();
        let (token, _) = stranger.issue("42", "s1", &[], now()).unwrap();
        assert_eq!(invalid(tokens.verify(&token)), "wrong issuer");
        let elsewhere = AccessTokens::hs256(SECRET, "xcore", "other-api", 900).unwrap();
        let (token, _) = elsewhere.issue("42", "s1", &[], now()).unwrap();
        assert_eq!(invalid(tokens.verify(&token)), "wrong audience");
        let forger = AccessTokens::hs256(&[7; 32], "xcore", "xcore-api", 900).unwrap();
        let (token, _) = forger.issue("42", "s1", &[], now()).unwrap();
        assert_eq!(invalid(tokens.verify(&token)), "bad signature");
        assert_eq!(TokenError::Invalid(String::new()).code(), "invalid_token");
    }

    /// A token of `header` and `claims`, with `signature` as its third part.
    fn forged(header: &str, claims: &Claims, signature: &str) -> String {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let claims = serde_json::to_string(claims).unwrap();
        format!("{}.{}.{signature}", engine.encode(header), engine.encode(claims))
    }

    #[test]
    fn unsigned_and_other_algorithm_tokens_are_refused() {
        let tokens = tokens();
        let (token, claims) = tokens.issue("42", "s1", &[], now()).unwrap();
        assert!(tokens.verify(&token).is_ok());
        let none = forged(r#"{"alg":"none","typ":"JWT"}"#, &claims, "");
        assert!(matches!(tokens.verify(&none), Err(TokenError::Invalid(_))));
        let signature = token.rsplit('.').next().unwrap();
        let other = forged(r#"{"alg":"HS512","typ":"JWT"}"#, &claims, signature);
        assert!(matches!(tokens.verify(&other), Err(TokenError::Invalid(_))));
        assert!(matches!(tokens.verify("not.a.token"), Err(TokenError::Invalid(_))));
    }

    /// A key pair made for these tests only (`openssl genpkey -algorithm ed25519`).
    const ED_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJtF4EAA7tluUDJoIT2YactNxwnmLnz9w9rlKba3n1Co
-----END PRIVATE KEY-----
";
    const ED_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAbGpW6x75Tsl00+auyifjFmVNe52STdPsz8t63+e9tXE=
-----END PUBLIC KEY-----
";

    #[test]
    fn key_files_in_the_config_sign_with_eddsa() {
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = (dir.path().join("ed25519.pem"), dir.path().join("ed25519.pub"));
        std::fs::write(&private, ED_PRIVATE).unwrap();
        std::fs::write(&public, ED_PUBLIC).unwrap();
        let config = crate::AuthConfig {
            private_key_file: Some(private),
            public_key_file: Some(public.clone()),
            ..crate::AuthConfig::default()
        };
        assert!(xcore_core::config::problems(&config).is_empty() && config.uses_key_files());
        // The secret is not used when key files are configured.
        let tokens = config.access_tokens(b"").unwrap();
        let (token, _) = tokens.issue("1", "s", &[], now()).unwrap();
        assert_eq!(jsonwebtoken::decode_header(&token).unwrap().alg, Algorithm::EdDSA);
        assert_eq!(tokens.verify(&token).unwrap().sub, "1");

        std::fs::remove_file(&public).unwrap();
        let missing = config.access_tokens(b"").unwrap_err();
        assert!(matches!(&missing, TokenError::Key(message) if message.contains("ed25519.pub")));
        let half = crate::AuthConfig { public_key_file: None, ..config };
        assert_eq!(xcore_core::config::problems(&half)[0].0, "private_key_file");
    }

    #[test]
    fn eddsa_tokens_verify_and_hs256_ones_do_not() {
        let eddsa = AccessTokens::eddsa(
            ED_PRIVATE.as_bytes(),
            ED_PUBLIC.as_bytes(),
            "xcore",
            "xcore-api",
            900,
        )
        .unwrap();
        let (token, claims) = eddsa.issue("42", "s1", &[], now()).unwrap();
        assert_eq!(eddsa.verify(&token).unwrap(), claims);
        // A token signed with HMAC (here keyed with the public key, the classic confusion)
        // is refused by an EdDSA verifier.
        let confused = AccessTokens::hs256(ED_PUBLIC.as_bytes(), "xcore", "xcore-api", 900);
        let (token, _) = confused.unwrap().issue("42", "s1", &[], now()).unwrap();
        assert!(matches!(eddsa.verify(&token), Err(TokenError::Invalid(_))));
        let broken = AccessTokens::eddsa(b"not a key", ED_PUBLIC.as_bytes(), "x", "y", 1);
        assert!(matches!(broken, Err(TokenError::Key(_))));
    }

    #[test]
    fn short_secrets_are_refused() {
        let short = AccessTokens::hs256(b"too short", "xcore", "xcore-api", 900);
        assert!(matches!(short, Err(TokenError::ShortSecret(9))));
    }
}
