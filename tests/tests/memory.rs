//! Resident memory of the real binary under password hashing (issue "Hardening", point 7:
//! every blocking-pool thread that had run argon2id kept its 19 MiB in the allocator, and
//! the release build grew from 17 MB to 271 MB after about 60 registrations).

#![allow(clippy::unwrap_used)]

use xcore_tests::{Server, request};

/// Accounts registered, and how many requests are in flight at once.
const ACCOUNTS: usize = 200;
const AT_ONCE: usize = 8;
/// The bound the resident memory must stay under afterwards.
const LIMIT_KIB: u64 = 64 * 1024;

/// Registration is limited to 10 an hour per address by default; this test is about what
/// hashing leaves behind, not about the limiter.
const REGISTRATIONS_UNLIMITED: &str = "[middleware.rate_limit.routes]\n\
    \"/auth/register\" = { requests = 1000000, per_secs = 1 }\n";

#[test]
fn registrations_leave_resident_memory_bounded() {
    // One hash at once, whatever cores this machine has: each permit's thread keeps its
    // 19 MiB, and this debug build idles at about 33 MiB where the release build idles at
    // 17 MiB, so two would leave no room under the bound (`cargo xtask bench hashing`
    // measures the release build with two).
    let env =
        [("XCORE_AUTH__PASSWORD__MAX_CONCURRENT", "1"), ("XCORE_SERVER__ACCESS_LOG", "false")];
    let server = Server::start_with_config(REGISTRATIONS_UNLIMITED, &env);
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
        resident < LIMIT_KIB,
        "{:.1} MiB resident after {ACCOUNTS} registrations, over {} MiB",
        resident as f64 / 1024.0,
        LIMIT_KIB / 1024
    );
}
