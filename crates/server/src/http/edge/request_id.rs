//! Request ids: the client's when it is reasonable, otherwise one made here.
//!
//! tower-http's `SetRequestId` keeps whatever the client sent, however long or strange,
//! and stores the id in an extension of its own; the edge checks the client's id and
//! keeps it in the request's `RequestContext` with the rest.

use axum::http::HeaderValue;

/// Longest client-supplied request id kept; longer or non-printable ones are replaced.
const MAX_REQUEST_ID: usize = 128;

/// Whether a client-supplied id is kept: 1 to 128 printable ASCII characters.
pub(super) fn acceptable(id: &HeaderValue) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID && id.as_bytes().iter().all(u8::is_ascii_graphic)
}

/// A new request id: a UUID version 7 (RFC 9562) written as 32 lowercase hexadecimal
/// digits: the Unix time in milliseconds (48 bits), so ids sort by when requests came, then
/// 74 random bits, so an id cannot be guessed from another, even one made just before.
///
/// The random bits come from the thread's cryptographically secure generator
/// (`rand::rng()`: ChaCha12, seeded and regularly reseeded from the operating system), so
/// an id costs a clock read and a few dozen bytes of keystream, and no system call.
pub(super) fn next() -> HeaderValue {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis());
    let id = uuid_v7(millis, rand::random());
    let mut text = [0u8; 32];
    text[..16].copy_from_slice(&hex((id >> 64) as u64));
    text[16..].copy_from_slice(&hex(id as u64));
    // One allocation, shared by every clone (a copied `Vec` would allocate again when the
    // id is first cloned).
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(text))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// The UUID version 7 made of `millis` (its low 48 bits) and 74 bits of `random`.
fn uuid_v7(millis: u128, random: u128) -> u128 {
    const TIME: u128 = 0xffff_ffff_ffff;
    const VERSION: u128 = 0x7 << 76;
    const RAND_A: u128 = 0xfff << 64;
    const VARIANT: u128 = 0b10 << 62;
    const RAND_B: u128 = (1 << 62) - 1;
    ((millis & TIME) << 80) | VERSION | (random & RAND_A) | VARIANT | (random & RAND_B)
}

/// `value` as 16 lowercase hexadecimal digits.
fn hex(value: u64) -> [u8; 16] {
    let mut digits = [0u8; 16];
    for (index, digit) in digits.iter_mut().enumerate() {
        *digit = b"0123456789abcdef"[((value >> (60 - 4 * index)) & 0xf) as usize];
    }
    digits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(id: &HeaderValue) -> u128 {
        u128::from_str_radix(id.to_str().unwrap(), 16).unwrap()
    }

    /// The 74 random bits of a version 7 UUID.
    fn random_bits(id: u128) -> u128 {
        id & ((0xfff << 64) | ((1 << 62) - 1))
    }

    #[test]
    fn request_ids_are_unique_and_well_formed() {
        let ids: Vec<HeaderValue> = (0..1000).map(|_| next()).collect();
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), 1000);
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
        for id in &ids {
            let text = id.to_str().unwrap();
            assert!(text.len() == 32 && acceptable(id), "{text}");
            assert!(text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            // Version 7, RFC 9562 variant, and the time of the request.
            assert_eq!(&text[12..13], "7", "{text}");
            assert!("89ab".contains(&text[16..17]), "{text}");
            let millis = parse(id) >> 80;
            assert!(millis <= now && now - millis < 60_000, "{text} was not made now");
        }
    }

    /// Issue "Hardening", point 13: ids were a process prefix and a counter, so one id
    /// gave away the next. Now consecutive ids share nothing predictable.
    #[test]
    fn the_next_request_id_cannot_be_guessed_from_the_last() {
        let ids: Vec<u128> = (0..1000).map(|_| parse(&next())).collect();
        let mut distances = Vec::new();
        for pair in ids.windows(2) {
            let (a, b) = (random_bits(pair[0]), random_bits(pair[1]));
            let distance = (a ^ b).count_ones();
            // Of 74 random bits, about 37 differ; fewer than 10 has a probability of
            // about 1e-11 per pair.
            assert!(distance >= 10, "{:032x} then {:032x}", pair[0], pair[1]);
            distances.push(distance);
        }
        // Not a counter with any step either.
        let steps: Vec<u128> = ids
            .windows(2)
            .map(|pair| random_bits(pair[1]).wrapping_sub(random_bits(pair[0])))
            .collect();
        assert!(steps.windows(2).all(|pair| pair[0] != pair[1]));
        let mean = f64::from(distances.iter().sum::<u32>()) / distances.len() as f64;
        assert!((33.0..41.0).contains(&mean), "mean distance {mean}");
    }

    #[test]
    fn the_layout_is_uuid_version_7() {
        let check = |millis: u128, random: u128, expected: &str| {
            assert_eq!(format!("{:032x}", uuid_v7(millis, random)), expected);
        };
        check(0, 0, "00000000000070008000000000000000");
        check(0x0190_8e8a_ab6c, u128::MAX, "01908e8aab6c7fffbfffffffffffffff");
        // Time beyond 48 bits and random bits where the time, version and variant go are
        // dropped.
        check(0x1_0000_0000_0001, u128::MAX << 76, "00000000000170008000000000000000");
    }

    #[test]
    fn client_ids_are_kept_only_when_reasonable() {
        let check = |id: &str, expected: bool| {
            assert_eq!(acceptable(&HeaderValue::from_str(id).unwrap()), expected, "{id:?}");
        };
        check("abc-123", true);
        check("", false);
        check("has space", false);
        check(&"x".repeat(129), false);
    }
}
