//! Two-factor secrets encrypted at rest.
//!
//! Whoever holds an account's TOTP secret can make its codes, so the secret never reaches
//! the database in clear: it is sealed with ChaCha20-Poly1305 under [`OtpKey`], the 32
//! bytes of `auth.otp_secret_key` (or, in `dev`, of a key generated into the data
//! directory; see [`crate::keys`]). The stored form is
//!
//! ```text
//! version (1 byte, 1) | nonce (12 bytes, random) | ciphertext | tag (16 bytes)
//! ```
//!
//! and the associated data binds it to its row (a fixed label, the version and the
//! account id), so a sealed secret copied into another account does not open there.
//!
//! Before secrets were sealed, the column held the raw secret: 20 bytes, the length of
//! every secret xcore generates, and shorter than any sealed form. Such a value is read as
//! [`Opened::Plain`]; the auth module re-seals these at startup and on their next use.
//! Anything else that does not open is an error naming the account and the likely cause,
//! never a wrong code.
//!
//! The AEAD comes from `ring`, which the SMTP client's TLS already builds in.

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

/// Bytes of an [`OtpKey`].
pub const KEY_LEN: usize = 32;

/// The version byte of the sealed form.
const VERSION: u8 = 1;

/// Bytes of the authentication tag.
const TAG_LEN: usize = 16;

/// The length of the secrets stored in clear before sealing.
pub const PLAIN_LEN: usize = xcore_otp::Secret::GENERATED_LEN;

/// Bound into every sealed secret, so no other use of the key can produce one.
const LABEL: &[u8] = b"xcore auth_users.otp_secret";

/// What sealing or opening a two-factor secret can fail with.
#[derive(Debug, thiserror::Error)]
pub enum OtpKeyError {
    /// The value is sealed but does not open: another key, or another row.
    #[error(
        "the two-factor secret of account {account} does not decrypt with `auth.otp_secret_key`: \
         the key is not the one the secret was sealed with (restore that key), or the value was \
         copied from another account"
    )]
    WrongKey { account: i64 },
    /// The value is neither sealed nor a secret stored in clear.
    #[error(
        "the two-factor secret of account {account} is stored in no known form ({len} bytes, \
         first byte {first:#04x}): turn two-factor off for this account and set it up again"
    )]
    Unknown { account: i64, len: usize, first: u8 },
    /// Past ChaCha20's limit of 256 GiB a message, which no secret comes near.
    #[error("the two-factor secret of account {account} is too long to seal")]
    TooLong { account: i64 },
    /// No random nonce.
    #[error("the operating system gave no random bytes: {0}")]
    Random(getrandom::Error),
}

/// A two-factor secret read from the store.
#[derive(Clone, PartialEq, Eq)]
pub enum Opened {
    /// It was sealed, as every secret is since sealing began.
    Sealed(Vec<u8>),
    /// It was stored in clear, before sealing began: it should be sealed now.
    Plain(Vec<u8>),
}

impl Opened {
    /// The secret.
    pub fn secret(&self) -> &[u8] {
        match self {
            Self::Sealed(secret) | Self::Plain(secret) => secret,
        }
    }
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sealed(_) => "Opened::Sealed(***)",
            Self::Plain(_) => "Opened::Plain(***)",
        })
    }
}

/// The key two-factor secrets are sealed with. Clones share nothing mutable.
#[derive(Clone)]
pub struct OtpKey {
    key: std::sync::Arc<LessSafeKey>,
    /// HMAC-SHA256 under the same bytes, from which keys for other purposes are derived.
    derivation: std::sync::Arc<ring::hmac::Key>,
}

impl std::fmt::Debug for OtpKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OtpKey(***)")
    }
}

impl OtpKey {
    /// The key of these bytes.
    ///
    /// # Panics
    ///
    /// Never: ChaCha20-Poly1305 takes any 32 bytes, and `bytes` has 32.
    #[allow(clippy::expect_used)]
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Self {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, bytes)
            .expect("ChaCha20-Poly1305 takes any 32-byte key");
        let derivation = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, bytes);
        Self {
            key: std::sync::Arc::new(LessSafeKey::new(unbound)),
            derivation: std::sync::Arc::new(derivation),
        }
    }

    /// An HMAC-SHA256 key for `purpose`, derived from this one (HKDF-style: the HMAC of
    /// the purpose), so one configured secret serves several uses that never share a key.
    pub fn derive(&self, purpose: &str) -> ring::hmac::Key {
        let derived = ring::hmac::sign(&self.derivation, purpose.as_bytes());
        ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.as_ref())
    }

    /// The key written as 64 hexadecimal characters (surrounding whitespace ignored), as
    /// `openssl rand -hex 32` prints one; `None` for anything else.
    pub fn from_hex(text: &str) -> Option<Self> {
        decode_hex(text.trim()).map(|bytes| Self::from_bytes(&bytes))
    }

    /// A new random key, and its hexadecimal form for keeping.
    ///
    /// # Errors
    ///
    /// [`OtpKeyError::Random`].
    pub fn generate() -> Result<(Self, String), OtpKeyError> {
        let mut bytes = [0u8; KEY_LEN];
        getrandom::fill(&mut bytes).map_err(OtpKeyError::Random)?;
        Ok((Self::from_bytes(&bytes), encode_hex(&bytes)))
    }

    /// `secret`, the two-factor secret of `account`, in its sealed form.
    ///
    /// # Errors
    ///
    /// [`OtpKeyError::Random`] when there is no nonce, [`OtpKeyError::TooLong`].
    pub fn seal(&self, account: i64, secret: &[u8]) -> Result<Vec<u8>, OtpKeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(OtpKeyError::Random)?;
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + secret.len() + TAG_LEN);
        sealed.push(VERSION);
        sealed.extend_from_slice(&nonce);
        let mut body = secret.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated_data(account)),
                &mut body,
            )
            .map_err(|_| OtpKeyError::TooLong { account })?;
        sealed.extend_from_slice(&body);
        Ok(sealed)
    }

    /// The two-factor secret of `account` from its `stored` form: sealed, or in clear
    /// from before sealing began.
    ///
    /// # Errors
    ///
    /// [`OtpKeyError::WrongKey`] when a sealed value does not open with this key for this
    /// account, [`OtpKeyError::Unknown`] when the value is in no known form.
    pub fn open(&self, account: i64, stored: &[u8]) -> Result<Opened, OtpKeyError> {
        if stored.len() == PLAIN_LEN {
            return Ok(Opened::Plain(stored.to_vec()));
        }
        let unknown = || OtpKeyError::Unknown {
            account,
            len: stored.len(),
            first: stored.first().copied().unwrap_or(0),
        };
        let Some((&VERSION, rest)) = stored.split_first() else { return Err(unknown()) };
        if rest.len() <= NONCE_LEN + TAG_LEN {
            return Err(unknown());
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| unknown())?;
        let mut body = body.to_vec();
        let secret = self
            .key
            .open_in_place(nonce, Aad::from(associated_data(account)), &mut body)
            .map_err(|_| OtpKeyError::WrongKey { account })?;
        Ok(Opened::Sealed(secret.to_vec()))
    }
}

/// What a sealed secret is bound to: its purpose, its format version and its row.
fn associated_data(account: i64) -> [u8; LABEL.len() + 1 + 8] {
    let mut data = [0u8; LABEL.len() + 1 + 8];
    data[..LABEL.len()].copy_from_slice(LABEL);
    data[LABEL.len()] = VERSION;
    data[LABEL.len() + 1..].copy_from_slice(&account.to_be_bytes());
    data
}

fn decode_hex(text: &str) -> Option<[u8; KEY_LEN]> {
    let digits = text.as_bytes();
    if digits.len() != 2 * KEY_LEN {
        return None;
    }
    let mut bytes = [0u8; KEY_LEN];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        // `from_str_radix` would take a sign: `+f` is not two digits.
        if !pair.bytes().all(|digit| digit.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(bytes)
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(fill: u8) -> OtpKey {
        OtpKey::from_bytes(&[fill; KEY_LEN])
    }

    const SECRET: &[u8; PLAIN_LEN] = b"12345678901234567890";

    #[test]
    fn seals_and_opens() {
        let sealed = key(1).seal(7, SECRET).unwrap();
        assert_eq!(sealed.len(), 1 + NONCE_LEN + PLAIN_LEN + TAG_LEN);
        assert_eq!(sealed[0], VERSION);
        assert!(!sealed.windows(4).any(|w| SECRET.windows(4).any(|s| s == w)), "no clear text");
        assert_eq!(key(1).open(7, &sealed).unwrap(), Opened::Sealed(SECRET.to_vec()));
        assert_ne!(key(1).seal(7, SECRET).unwrap(), sealed, "a fresh nonce each time");
    }

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_its_account() {
        let sealed = key(1).seal(7, SECRET).unwrap();
        assert!(matches!(key(2).open(7, &sealed), Err(OtpKeyError::WrongKey { account: 7 })));
        assert!(matches!(key(1).open(8, &sealed), Err(OtpKeyError::WrongKey { account: 8 })));
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(matches!(key(1).open(7, &altered), Err(OtpKeyError::WrongKey { .. })));
        let message = key(2).open(7, &sealed).unwrap_err().to_string();
        assert!(message.contains("account 7") && message.contains("auth.otp_secret_key"));
    }

    #[test]
    fn secrets_stored_in_clear_are_read_as_such() {
        assert_eq!(key(1).open(7, SECRET).unwrap(), Opened::Plain(SECRET.to_vec()));
        assert_eq!(key(2).open(9, SECRET).unwrap().secret(), SECRET, "no key needed");
    }

    #[test]
    fn values_in_no_known_form_are_errors() {
        let check = |stored: &[u8]| {
            assert!(
                matches!(key(1).open(7, stored), Err(OtpKeyError::Unknown { account: 7, .. })),
                "{stored:?}"
            );
        };
        check(b"");
        check(&[VERSION; 29]);
        check(&[2; 49]);
        check(b"a secret of thirty-two bytes....");
    }

    #[test]
    fn keys_are_64_hexadecimal_characters() {
        let (generated, hex) = OtpKey::generate().unwrap();
        assert_eq!(hex.len(), 64);
        let sealed = generated.seal(1, SECRET).unwrap();
        let again = OtpKey::from_hex(&format!(" {} \n", hex.to_uppercase())).unwrap();
        assert_eq!(again.open(1, &sealed).unwrap().secret(), SECRET);
        for bad in ["", "00", &"0".repeat(63), &"0".repeat(65), &"g".repeat(64), &"é".repeat(32)] {
            assert!(OtpKey::from_hex(bad).is_none(), "{bad}");
        }
        assert_eq!(encode_hex(&[0, 0xab, 0x10]), "00ab10");
    }
}
