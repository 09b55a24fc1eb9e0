//! Base32 (RFC 4648, section 6), the alphabet authenticator apps use for secrets.

use crate::{Error, Result};

const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// `bytes` in base32, without padding.
pub(crate) fn encode(bytes: &[u8]) -> String {
    let mut encoded = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u16, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u16::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            encoded.push(char::from(ALPHABET[usize::from((buffer >> bits) & 0x1f)]));
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        encoded.push(char::from(ALPHABET[usize::from((buffer << (5 - bits)) & 0x1f)]));
    }
    encoded
}

/// The bytes `text` encodes; letters in either case, spaces and trailing `=` are accepted.
pub(crate) fn decode(text: &str) -> Result<Vec<u8>> {
    let symbols = text.trim_end_matches(['=', ' ']);
    let mut bytes = Vec::with_capacity(symbols.len() * 5 / 8);
    let (mut buffer, mut bits) = (0u16, 0u32);
    for ch in symbols.chars().filter(|ch| *ch != ' ') {
        let value = match ch.to_ascii_uppercase() {
            letter @ 'A'..='Z' => letter as u16 - u16::from(b'A'),
            digit @ '2'..='7' => digit as u16 - u16::from(b'2') + 26,
            _ => return Err(Error::Base32("only A-Z and 2-7 are base32 letters")),
        };
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            bytes.push(((buffer >> bits) & 0xff) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    // What is left must be padding bits: fewer than a byte, all zero.
    if buffer != 0 {
        return Err(Error::Base32("trailing bits are not zero"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4648, section 10 (padding left out, as authenticator apps write it).
    #[test]
    fn rfc_4648_vectors() {
        let vectors = [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(encode(plain.as_bytes()), encoded, "{plain:?}");
            assert_eq!(decode(encoded).unwrap(), plain.as_bytes(), "{encoded:?}");
        }
        assert_eq!(decode("mzxw 6ytb oi======").unwrap(), b"foobar");
    }

    #[test]
    fn malformed_text_is_refused() {
        assert!(decode("MZXW1").is_err());
        assert!(decode("MZ=XW").is_err());
        assert!(decode("MY").is_ok());
        // Non-zero bits past the last byte: not what any encoder writes.
        assert!(decode("MZ").is_err());
    }
}
