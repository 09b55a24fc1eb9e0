//! Change counters, so a value read or loaded while its key changed is not kept.
//!
//! A reader that fetched a value from Redis or from a loader cannot tell whether a write
//! or a delete of the same key landed while it was in flight; if one did, keeping what it
//! fetched would resurrect an outdated value. Each key maps to one of a fixed set of
//! counters (a collision only costs a value not being kept), and a global counter covers
//! deletes by prefix and the loss of the invalidation channel.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

/// How many per-key counters there are.
const STRIPES: usize = 64;

/// The counters of one cache.
pub(crate) struct Epochs {
    all: AtomicU64,
    keys: [AtomicU64; STRIPES],
    /// Seeded at random, so a client cannot aim its writes at another key's counter.
    hasher: foldhash::fast::RandomState,
}

/// The state of the counters covering one key at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mark(u64, u64);

impl Default for Epochs {
    fn default() -> Self {
        Self {
            all: AtomicU64::new(0),
            keys: [const { AtomicU64::new(0) }; STRIPES],
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

impl Epochs {
    /// The counters covering `key` now.
    pub(crate) fn mark(&self, key: &str) -> Mark {
        Mark(self.all.load(Ordering::Acquire), self.stripe(key).load(Ordering::Acquire))
    }

    /// Whether `key` may have changed since `mark`.
    pub(crate) fn changed_since(&self, key: &str, mark: Mark) -> bool {
        self.mark(key) != mark
    }

    /// Records a write or delete of `key`.
    pub(crate) fn key_changed(&self, key: &str) {
        self.stripe(key).fetch_add(1, Ordering::AcqRel);
    }

    /// Records a change that may concern any key.
    pub(crate) fn all_changed(&self) {
        self.all.fetch_add(1, Ordering::AcqRel);
    }

    fn stripe(&self, key: &str) -> &AtomicU64 {
        let index = (self.hasher.hash_one(key) % STRIPES as u64) as usize;
        &self.keys[index]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_moves_with_its_key_and_with_everything() {
        let epochs = Epochs::default();
        let mark = epochs.mark("a");
        assert!(!epochs.changed_since("a", mark));
        epochs.key_changed("a");
        assert!(epochs.changed_since("a", mark));
        let mark = epochs.mark("a");
        epochs.all_changed();
        assert!(epochs.changed_since("a", mark));
        // Writes to other keys rarely move it: they mostly live on other counters.
        let collisions = (0..640)
            .filter(|index| {
                let mark = epochs.mark("a");
                epochs.key_changed(&format!("other-{index}"));
                epochs.changed_since("a", mark)
            })
            .count();
        assert!(collisions < 64, "{collisions} of 640 writes moved an unrelated key");
    }
}
