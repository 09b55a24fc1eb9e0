//! Lockout after repeated failed logins, with exponential back-off.
//!
//! After [`LockoutConfig::threshold`] consecutive failures an account is locked for
//! [`LockoutConfig::base_secs`]; each further failure doubles the lock, up to
//! [`LockoutConfig::max_secs`]. A successful login resets the count. The lock is keyed by
//! account, not by client address, so spreading guesses over many addresses does not help;
//! the price, that anyone can lock an account for a while, is bounded by the cap.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The lockout section of the auth config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LockoutConfig {
    /// Consecutive failures before the first lock.
    pub threshold: u32,
    /// Length of the first lock.
    pub base_secs: u64,
    /// Longest lock.
    pub max_secs: u64,
}

impl Default for LockoutConfig {
    fn default() -> Self {
        Self { threshold: 10, base_secs: 1, max_secs: 15 * 60 }
    }
}

impl LockoutConfig {
    /// How long an account is locked once it has `failures` consecutive failures: nothing
    /// below the threshold, then the base length doubling with each failure, capped.
    pub fn lock_for(&self, failures: u32) -> Option<Duration> {
        let beyond = failures.checked_sub(self.threshold)?;
        let factor = 1u64.checked_shl(beyond).unwrap_or(u64::MAX);
        let secs = self.base_secs.saturating_mul(factor).min(self.max_secs);
        Some(Duration::from_secs(secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_start_at_the_threshold_double_and_cap() {
        let config = LockoutConfig::default();
        let check = |failures, expected: Option<u64>| {
            assert_eq!(config.lock_for(failures), expected.map(Duration::from_secs), "{failures}");
        };
        check(0, None);
        check(9, None);
        check(10, Some(1));
        check(11, Some(2));
        check(12, Some(4));
        check(19, Some(512));
        check(20, Some(900));
        check(200, Some(900));
        check(u32::MAX, Some(900));
    }
}
