//! Resident memory of the real binary under password hashing (issue "Hardening", point 7:
//! every blocking-pool thread that had run argon2id kept its 19 MiB in the allocator, and
//! the release build grew from 17 MB to 271 MB after about 60 registrations).

#![allow(clippy::unwrap_used)]

use xcore_tests::{Server, request};

/// Accounts registered, and how many requests are in flight at once.
const ACCOUNTS: usize = 200;
const AT_ONCE: usize = 8;
/// How much the resident memory may grow from the idle server's: the one hashing thread
/// keeps its 19 MiB (see below), a second one would not fit. A bound on the growth rather
/// than on the total, which every module and plugin linked in raises a little.
const GROWTH_LIMIT_KIB: u64 = 32 * 1024;

/// Registration is limited to 10 an hour per address by default; this test is about what
/// hashing leaves behind, not about the limiter.
const REGISTRATIONS_UNLIMITED: &str = "[middleware.rate_limit.routes]\n\
    \"/auth/register\" = { requests = 1000000, per_secs = 1 }\n";

#[test]
fn registrations_leave_resident_memory_bounded() {
    // One hash at once, whatever cores this machine has: each permit's thread keeps its
    // 19 MiB, so two would leave no room under the bound (`cargo xtask bench hashing`
    // measures the release build with two). This debug build idles at about 45 MiB, the
    // release build at 17 MiB.
    let env =
        [("XCORE_AUTH__PASSWORD__MAX_CONCURRENT", "1"), ("XCORE_SERVER__ACCESS_LOG", "false")];
    let server = Server::start_with_config(REGISTRATIONS_UNLIMITED, &env);
    let idle = server.resident_kib();
    std::thread::scope(|scope| {
        for client in 0..AT_ONCE {
            let addr = server.addr;
            scope.spawn(move || {
                for account in (client..ACCOUNTS).step_by(AT_ONCE) {
                    let body = format!(
                        r#"{{"email": "user{account}@example.com", "password": "pw-{account}-7c1e9a"}}"#
                    );
                    let created = request(addr, "POST", "/auth/register", Some(&body)).unwrap();
                    assert_eq!(created.status, 201, "account {account}: {}", created.body);
                }
            });
        }
    });
    let resident = server.resident_kib();
    assert!(
        resident.saturating_sub(idle) < GROWTH_LIMIT_KIB,
        "{:.1} MiB resident after {ACCOUNTS} registrations, {:.1} MiB idle: grown by more \
         than {} MiB",
        resident as f64 / 1024.0,
        idle as f64 / 1024.0,
        GROWTH_LIMIT_KIB / 1024
    );
}
