//! Refresh tokens: opaque random strings, stored only as hashes.
//!
//! A refresh token is 32 random bytes in URL-safe base64. The server keeps the SHA-256 of
//! it, never the token, so a leaked table cannot be replayed; a token is found by its
//! hash. Rotation (a new token on every use) and family revocation on reuse are the
//! account store's, on top of these.

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::token::TokenError;

/// Random bytes in a refresh token.
const TOKEN_BYTES: usize = 32;

/// A new refresh token and the hash to store for it.
///
/// # Errors
///
/// [`TokenError::Issue`] when the operating system gives no random bytes.
pub fn generate() -> Result<(String, String), TokenError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(|error| TokenError::Issue(error.to_string()))?;
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash(&token);
    Ok((token, hash))
}

/// The token that succeeds `token` in its session, and its hash: the HMAC of `token`
/// under `key`, so every node computes the same successor for the same token (a client
/// that refreshes twice at once gets the same answer twice) and nobody without the key
/// can.
pub fn successor(key: &ring::hmac::Key, token: &str) -> (String, String) {
    let tag = ring::hmac::sign(key, token.as_bytes());
    let next = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref());
    let hash = hash(&next);
    (next, hash)
}

/// The stored form of `token`: its SHA-256, in hexadecimal.
pub fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_found_by_their_hash() {
        let (token, stored) = generate().unwrap();
        let (other, other_stored) = generate().unwrap();
        assert_ne!(token, other);
        assert_ne!(stored, other_stored);
        assert_eq!(token.len(), 43);
        assert_eq!(hash(&token), stored);
        assert!(!stored.contains(&token));
    }

    #[test]
    fn successors_are_the_same_for_a_token_and_key_only() {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[1; 32]);
        let other = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[2; 32]);
        let (token, _) = generate().unwrap();
        let (next, next_hash) = successor(&key, &token);
        assert_eq!(successor(&key, &token), (next.clone(), next_hash.clone()));
        assert_eq!((next.len(), hash(&next)), (43, next_hash));
        assert_ne!(successor(&other, &token).0, next);
        assert_ne!(successor(&key, &next).0, next);
    }

    #[test]
    fn the_hash_is_sha256() {
        assert_eq!(hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
