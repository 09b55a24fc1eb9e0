//! The lockout over HTTP: by email and client address, alike for unknown emails, and
//! slowed rather than blocked past an email's ceiling.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use axum::http::{StatusCode, header};
use xcore_auth::{AuthConfig, LockoutConfig};

use support::*;

#[tokio::test]
async fn lockout_answers_429_with_retry_after_and_a_login_resets_it() {
    let lockout = LockoutConfig { threshold: 3, max_secs: 60, ..LockoutConfig::default() };
    let config = AuthConfig { lockout, ..AuthConfig::default() };
    on_every_backend("auth_http_lockout", config, |h| async move {
        assert_eq!(
            h.register("ada@example.com", "correct horse").await.status,
            StatusCode::CREATED
        );
        // A registered email and one without an account get the same answers.
        for email in ["ada@example.com", "nobody@example.com"] {
            for _ in 0..3 {
                let wrong = h.login(email, "wrong").await;
                assert_eq!(
                    (wrong.status, wrong.code()),
                    (StatusCode::UNAUTHORIZED, "invalid_credentials"),
                    "{email}"
                );
            }
            // Locked: even the right password is refused until the lock ends.
            let locked = h.login(email, "correct horse").await;
            assert_eq!(
                (locked.status, locked.code()),
                (StatusCode::TOO_MANY_REQUESTS, "account_locked"),
                "{email}"
            );
            assert_eq!(locked.headers[header::RETRY_AFTER], "1", "{email}");
        }
        // The lock holds that client only: the owner, elsewhere, logs in.
        let owner = h.login_from([198, 51, 100, 7], "ada@example.com", "correct horse").await;
        assert_eq!(owner.status, StatusCode::OK, "{}", owner.body);
        // Another account is not affected.
        assert_eq!(
            h.register("grace@example.com", "correct horse").await.status,
            StatusCode::CREATED
        );
        h.session("grace@example.com", "correct horse").await;

        tokio::time::sleep(Duration::from_millis(1100)).await;
        h.session("ada@example.com", "correct horse").await;
        // The count was reset: one failure is a plain 401 again, not a lock.
        assert_eq!(h.login("ada@example.com", "wrong").await.status, StatusCode::UNAUTHORIZED);
        h.session("ada@example.com", "correct horse").await;
    })
    .await;
}

/// Guesses spread over many addresses are slowed per email once they pass the email's
/// ceiling, never blocked: the owner still logs in with the right password.
#[tokio::test]
async fn guesses_from_many_addresses_slow_an_email_without_locking_its_owner_out() {
    let lockout = LockoutConfig {
        threshold: 3,
        account_threshold: 6,
        account_delay_ms: 50,
        ..LockoutConfig::default()
    };
    let config = AuthConfig { lockout, ..AuthConfig::default() };
    on_every_backend("auth_http_ceiling", config, |h| async move {
        h.register("ada@example.com", "correct horse").await;
        for attacker in 1..=4u8 {
            for _ in 0..2 {
                let wrong = h.login_from([203, 0, 113, attacker], "ada@example.com", "wrong").await;
                assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
            }
        }
        // Past the ceiling (8 failures > 6) no address is locked (2 each < 3)...
        let next = h.login_from([203, 0, 113, 5], "ada@example.com", "wrong").await;
        assert_eq!(next.status, StatusCode::UNAUTHORIZED);
        // ...and the owner is let in, a little later.
        let owner = h.login("ada@example.com", "correct horse").await;
        assert_eq!(owner.status, StatusCode::OK, "{}", owner.body);
    })
    .await;
}
