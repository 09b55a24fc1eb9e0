//! One-time passwords: HOTP (RFC 4226) and TOTP (RFC 6238).
//!
//! A [`Totp`] holds a shared secret, a hash ([`Algorithm`]: SHA-1, SHA-256 or SHA-512),
//! a code length (6 or 8 digits) and a 30-second step. [`Totp::verify`] accepts the codes
//! of the current step and of one step either side (clock drift), compares in constant
//! time, and refuses any step at or before the last one accepted, so a code works once:
//! the caller stores the step it returns and passes it back next time. [`Secret`] makes
//! random secrets and reads and writes them in base32, the form authenticator apps use;
//! [`Totp::otpauth_uri`] is what their QR codes encode.
//!
//! The crate is a library of its own: no I/O, no clock (times are passed in), no xcore
//! dependency. Its tests are the RFCs' published vectors.

mod base32;

use hmac::{Hmac, KeyInit, Mac};

/// `Result` with this crate's [`Error`] by default.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What building a generator or reading a secret can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("a one-time password has 6 or 8 digits, not {0}")]
    Digits(u32),
    #[error("a secret needs at least {min} bytes (RFC 4226), this one has {0}", min = Secret::MIN_LEN)]
    SecretTooShort(usize),
    #[error("not a base32 secret: {0}")]
    Base32(&'static str),
    #[error("the operating system gave no random bytes: {0}")]
    Random(getrandom::Error),
}

/// The HMAC hash of a generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// What authenticator apps assume when nothing is said.
    #[default]
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    /// The name used in `otpauth://` URIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
            Self::Sha512 => "SHA512",
        }
    }

    fn mac(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length, so `new_from_slice` cannot fail; an empty MAC
        // would then simply never match.
        fn run<M: Mac + KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
            match <M as KeyInit>::new_from_slice(key) {
                Ok(mut mac) => {
                    mac.update(message);
                    mac.finalize().into_bytes().to_vec()
                }
                Err(_) => Vec::new(),
            }
        }
        match self {
            Self::Sha1 => run::<Hmac<sha1::Sha1>>(key, message),
            Self::Sha256 => run::<Hmac<sha2::Sha256>>(key, message),
            Self::Sha512 => run::<Hmac<sha2::Sha512>>(key, message),
        }
    }
}

/// A shared secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// The shortest secret accepted: 128 bits (RFC 4226, section 4).
    pub const MIN_LEN: usize = 16;
    /// The length of generated secrets: 160 bits, RFC 4226's recommendation and the size
    /// of a SHA-1 block's worth of key that every authenticator app handles.
    pub const GENERATED_LEN: usize = 20;

    /// A new random secret from the operating system's generator.
    ///
    /// # Errors
    ///
    /// [`Error::Random`] when the operating system has no randomness to give.
    pub fn generate() -> Result<Self> {
        let mut bytes = vec![0; Self::GENERATED_LEN];
        getrandom::fill(&mut bytes).map_err(Error::Random)?;
        Ok(Self(bytes))
    }

    /// A secret from raw bytes.
    ///
    /// # Errors
    ///
    /// [`Error::SecretTooShort`] under [`MIN_LEN`](Self::MIN_LEN) bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < Self::MIN_LEN {
            return Err(Error::SecretTooShort(bytes.len()));
        }
        Ok(Self(bytes.to_vec()))
    }

    /// A secret from its base32 form (case, spaces and `=` padding ignored).
    ///
    /// # Errors
    ///
    /// [`Error::Base32`] for text that is not base32, [`Error::SecretTooShort`].
    pub fn from_base32(text: &str) -> Result<Self> {
        Self::from_bytes(&base32::decode(text)?)
    }

    /// The secret in base32 without padding, as authenticator apps take it.
    pub fn to_base32(&self) -> String {
        base32::encode(&self.0)
    }

    /// The raw bytes, for storage.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The HOTP value of `counter` (RFC 4226, section 5.3): the dynamically truncated HMAC,
/// reduced to `digits` decimal digits.
pub fn hotp(secret: &Secret, algorithm: Algorithm, counter: u64, digits: u32) -> u32 {
    let mac = algorithm.mac(secret.as_bytes(), &counter.to_be_bytes());
    let Some(last) = mac.last() else { return 0 };
    let offset = usize::from(last & 0x0f);
    let Some(window) = mac.get(offset..offset + 4) else { return 0 };
    let binary = u32::from_be_bytes([window[0] & 0x7f, window[1], window[2], window[3]]);
    binary % 10u32.pow(digits)
}

/// A time-based generator (RFC 6238) with a 30-second step counted from the Unix epoch.
#[derive(Debug, Clone)]
pub struct Totp {
    secret: Secret,
    algorithm: Algorithm,
    digits: u32,
}

impl Totp {
    /// Seconds per step.
    pub const STEP: u64 = 30;
    /// Steps accepted on either side of the current one, for clock drift.
    pub const SKEW: u64 = 1;

    /// A generator of `digits`-digit codes (6 or 8).
    ///
    /// # Errors
    ///
    /// [`Error::Digits`] for any other length.
    pub fn new(secret: Secret, algorithm: Algorithm, digits: u32) -> Result<Self> {
        if digits != 6 && digits != 8 {
            return Err(Error::Digits(digits));
        }
        Ok(Self { secret, algorithm, digits })
    }

    /// The step `unix_secs` falls in.
    pub fn step_at(unix_secs: u64) -> u64 {
        unix_secs / Self::STEP
    }

    /// The code of `step`, zero-padded.
    pub fn code_for_step(&self, step: u64) -> String {
        let code = hotp(&self.secret, self.algorithm, step, self.digits);
        format!("{code:0width$}", width = self.digits as usize)
    }

    /// The code at `unix_secs`.
    pub fn code_at(&self, unix_secs: u64) -> String {
        self.code_for_step(Self::step_at(unix_secs))
    }

    /// The step whose code `code` is, if it is one of the steps around `unix_secs` (the
    /// current one and [`SKEW`](Self::SKEW) either side) and later than `last_used`, the
    /// step returned by the last successful verification. Store the returned step: passing
    /// it back as `last_used` makes the same code (and any older one) fail.
    pub fn verify(&self, code: &str, unix_secs: u64, last_used: Option<u64>) -> Option<u64> {
        let code = code.trim();
        if code.len() != self.digits as usize || !code.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        let now = Self::step_at(unix_secs);
        let first = now.saturating_sub(Self::SKEW);
        // Every candidate is computed and compared, so the time taken does not say which
        // step (if any) matched.
        let mut matched = None;
        for step in first..=now.saturating_add(Self::SKEW) {
            let fresh = last_used.is_none_or(|last| step > last);
            if constant_time_eq(self.code_for_step(step).as_bytes(), code.as_bytes()) && fresh {
                matched = matched.or(Some(step));
            }
        }
        matched
    }

    /// The `otpauth://totp/…` URI authenticator apps read from a QR code: the label
    /// `issuer:account`, the secret in base32, and the parameters.
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> String {
        format!(
            "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm={}&digits={}&period={}",
            percent_encode(issuer),
            percent_encode(account),
            self.secret.to_base32(),
            percent_encode(issuer),
            self.algorithm.as_str(),
            self.digits,
            Self::STEP,
        )
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// `text` with everything but RFC 3986's unreserved characters percent-encoded.
fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(ascii: &str) -> Secret {
        Secret::from_bytes(ascii.as_bytes()).unwrap()
    }

    /// RFC 4226, appendix D: the secret "12345678901234567890", counters 0 to 9.
    #[test]
    fn hotp_matches_rfc_4226() {
        let expected =
            [755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489];
        let secret = secret("12345678901234567890");
        for (counter, code) in expected.into_iter().enumerate() {
            assert_eq!(hotp(&secret, Algorithm::Sha1, counter as u64, 6), code, "{counter}");
        }
    }

    /// RFC 6238, appendix B: 8 digits, 30 s steps, a 20-, 32- and 64-byte seed for
    /// SHA-1, SHA-256 and SHA-512.
    #[test]
    fn totp_matches_rfc_6238() {
        let seed20 = "12345678901234567890";
        let seed32 = "12345678901234567890123456789012";
        let seed64 = "1234567890123456789012345678901234567890123456789012345678901234";
        let generators = [
            Totp::new(secret(seed20), Algorithm::Sha1, 8).unwrap(),
            Totp::new(secret(seed32), Algorithm::Sha256, 8).unwrap(),
            Totp::new(secret(seed64), Algorithm::Sha512, 8).unwrap(),
        ];
        let vectors: [(u64, [&str; 3]); 6] = [
            (59, ["94287082", "46119246", "90693936"]),
            (1111111109, ["07081804", "68084774", "25091201"]),
            (1111111111, ["14050471", "67062674", "99943326"]),
            (1234567890, ["89005924", "91819424", "93441116"]),
            (2000000000, ["69279037", "90698825", "38618901"]),
            (20000000000, ["65353130", "77737706", "47863826"]),
        ];
        for (time, codes) in vectors {
            for (generator, code) in generators.iter().zip(codes) {
                assert_eq!(generator.code_at(time), code, "{time} {:?}", generator.algorithm);
            }
        }
    }

    #[test]
    fn verification_allows_one_step_of_drift_and_no_replay() {
        let totp = Totp::new(secret("12345678901234567890"), Algorithm::Sha1, 6).unwrap();
        let now = 1_111_111_111;
        let step = Totp::step_at(now);
        let current = totp.code_at(now);
        assert_eq!(totp.verify(&current, now, None), Some(step));
        // The same code again, once its step is recorded, is refused.
        assert_eq!(totp.verify(&current, now, Some(step)), None);
        // One step early or late is accepted; two are not.
        assert_eq!(totp.verify(&totp.code_for_step(step - 1), now, None), Some(step - 1));
        assert_eq!(totp.verify(&totp.code_for_step(step + 1), now, None), Some(step + 1));
        assert_eq!(totp.verify(&totp.code_for_step(step + 2), now, None), None);
        assert_eq!(totp.verify(&totp.code_for_step(step - 2), now, None), None);
        // After the next step was used, the previous one is stale too.
        assert_eq!(totp.verify(&totp.code_for_step(step - 1), now, Some(step)), None);
        for malformed in ["", "12345", "1234567", "12345a", "１２３４５６"] {
            assert_eq!(totp.verify(malformed, now, None), None, "{malformed:?}");
        }
    }

    #[test]
    fn bad_parameters_are_refused() {
        let check = |digits| Totp::new(secret("12345678901234567890"), Algorithm::Sha1, digits);
        assert!(matches!(check(7), Err(Error::Digits(7))));
        assert!(check(6).is_ok() && check(8).is_ok());
        assert!(matches!(Secret::from_bytes(b"short"), Err(Error::SecretTooShort(5))));
        assert!(matches!(Secret::from_base32("not base32!"), Err(Error::Base32(_))));
    }

    #[test]
    fn generated_secrets_are_random_and_round_trip_through_base32() {
        let (a, b) = (Secret::generate().unwrap(), Secret::generate().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.as_bytes().len(), Secret::GENERATED_LEN);
        assert_eq!(Secret::from_base32(&a.to_base32()).unwrap(), a);
        assert_eq!(format!("{a:?}"), "Secret(***)");
    }

    #[test]
    fn otpauth_uri_names_everything_an_app_needs() {
        let totp = Totp::new(secret("12345678901234567890"), Algorithm::Sha256, 6).unwrap();
        assert_eq!(
            totp.otpauth_uri("My App", "ada@example.com"),
            "otpauth://totp/My%20App:ada%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=My%20App&algorithm=SHA256&digits=6&period=30"
        );
    }
}
