//! Request ids: the client's when it is reasonable, otherwise one made here.
//!
//! tower-http's `SetRequestId` keeps whatever the client sent, however long or strange,
//! and stores the id in an extension of its own; the edge checks the client's id and
//! keeps it in the request's `RequestContext` with the rest.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::HeaderValue;

/// Longest client-supplied request id kept; longer or non-printable ones are replaced.
const MAX_REQUEST_ID: usize = 128;

/// Whether a client-supplied id is kept: 1 to 128 printable ASCII characters.
pub(super) fn acceptable(id: &HeaderValue) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID && id.as_bytes().iter().all(u8::is_ascii_graphic)
}

/// A new request id: 16 hex digits unique to this process run, then a 16-digit counter.
/// Unique across nodes and restarts without a system call per request.
pub(super) fn next() -> HeaderValue {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static PREFIX: std::sync::OnceLock<[u8; 16]> = std::sync::OnceLock::new();
    let prefix = PREFIX.get_or_init(|| {
        use std::hash::BuildHasher;
        // `RandomState` is seeded from the operating system's randomness once per process.
        let seed = std::collections::hash_map::RandomState::new().hash_one((
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_nanos()),
            std::process::id(),
        ));
        hex(seed)
    });
    let mut id = [0u8; 32];
    id[..16].copy_from_slice(prefix);
    id[16..].copy_from_slice(&hex(COUNTER.fetch_add(1, Ordering::Relaxed)));
    // One allocation, shared by every clone (a copied `Vec` would allocate again when the
    // id is first cloned).
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(id))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
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

    #[test]
    fn request_ids_are_unique_and_well_formed() {
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| next()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| id.len() == 32 && acceptable(id)));
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
