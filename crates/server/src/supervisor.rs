//! Stopping when the supervisor that started this process is gone.
//!
//! `cargo xtask dev` hands each server its listening socket and stops it with SIGTERM when
//! it swaps processes or is asked to stop. If the supervisor itself is killed outright
//! (SIGKILL, the out-of-memory killer), no SIGTERM comes: the server is re-parented and
//! serves on alone, holding the port, until someone finds and kills it. So a supervisor
//! names itself in `XCORE_SUPERVISOR_PID`, and the server checks every 250 ms that its
//! parent is still that process; once it is not, the server shuts down as on SIGTERM.
//!
//! Polling the parent's id is portable and needs no `unsafe`. The kernel's parent-death
//! signal (`PR_SET_PDEATHSIG`) would be immediate, but it is Linux-only and fires when the
//! *thread* that spawned the process ends, not the supervisor, so a server started from a
//! short-lived thread would be stopped for nothing. A quarter of a second is nothing next
//! to a rebuild.

use std::ffi::OsStr;
use std::os::unix::process::parent_id;
use std::time::Duration;

/// The variable a supervisor sets, on each server it starts, to its own process id.
pub const SUPERVISOR_PID: &str = "XCORE_SUPERVISOR_PID";

/// How often the parent's id is checked.
const CHECK_EVERY: Duration = Duration::from_millis(250);

/// Completes once the supervisor named by `XCORE_SUPERVISOR_PID` is no longer this
/// process's parent, after logging a warning that says so. Never completes when the
/// variable is unset (the server is not supervised) or is not a process id (the server
/// logs a warning and does not watch).
pub async fn gone() {
    let Some(value) = std::env::var_os(SUPERVISOR_PID) else {
        return std::future::pending().await;
    };
    let Some(supervisor) = process_id(&value) else {
        tracing::warn!(
            value = %value.to_string_lossy(),
            "{SUPERVISOR_PID} is not a process id: the supervisor is not watched"
        );
        return std::future::pending().await;
    };
    parent_is_not(supervisor).await;
    tracing::warn!(
        supervisor,
        parent = parent_id(),
        "the supervisor that started this server is gone: shutting down"
    );
}

/// The process id `value` names: a positive decimal number.
fn process_id(value: &OsStr) -> Option<u32> {
    value.to_str()?.parse().ok().filter(|pid| *pid > 0)
}

/// Completes once this process's parent is not `supervisor`.
async fn parent_is_not(supervisor: u32) {
    // The first tick is immediate: a supervisor that died before the server looked counts.
    let mut interval = tokio::time::interval(CHECK_EVERY);
    loop {
        interval.tick().await;
        if parent_id() != supervisor {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_positive_decimal_numbers_are_process_ids() {
        let check = |value: &str, expected: Option<u32>| {
            assert_eq!(process_id(OsStr::new(value)), expected, "{value:?}");
        };
        check("1234", Some(1234));
        check("1", Some(1));
        check("0", None);
        check("-1", None);
        check("", None);
        check(" 1234", None);
        check("1234\n", None);
        check("pid", None);
        check("4294967296", None);
    }

    #[tokio::test]
    async fn a_parent_that_is_not_the_supervisor_ends_the_watch() {
        let other = parent_id().wrapping_add(1);
        let watched = tokio::time::timeout(Duration::from_secs(10), parent_is_not(other)).await;
        assert!(watched.is_ok(), "the watch did not notice the parent is not {other}");
    }

    #[tokio::test]
    async fn the_watch_goes_on_while_the_supervisor_is_the_parent() {
        // Several checks' worth: each one finds the supervisor still there.
        let watched = tokio::time::timeout(CHECK_EVERY * 4, parent_is_not(parent_id())).await;
        assert!(watched.is_err(), "the watch ended while the supervisor was the parent");
    }
}
