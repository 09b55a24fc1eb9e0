//! Ended sessions across server processes on one database: refused on the other node
//! within its poll period, and on a node restarted after they ended.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use xcore_tests::{Server, request, request_with, xcore};

const SECRET: &str = "a shared HS256 secret of at least thirty-two bytes";

/// The status `/auth/me` answers `token` with on `server`.
fn me(server: &Server, token: &str) -> u16 {
    let bearer = format!("Bearer {token}");
    let headers = [("authorization", bearer.as_str())];
    request_with(server.addr, "GET", "/auth/me", &headers, None).unwrap().status
}

/// Logs in and returns (access token, refresh token).
fn login(server: &Server) -> (String, String) {
    let body = r#"{"email": "ada@example.com", "password": "correct horse"}"#;
    let answer = request(server.addr, "POST", "/auth/login", Some(body)).unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    let json = answer.json();
    (
        json["access_token"].as_str().unwrap().to_owned(),
        json["refresh_token"].as_str().unwrap().to_owned(),
    )
}

/// Waits up to 5 s for `condition`.
fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(Instant::now() < deadline, "{what} did not happen within 5 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn two_nodes_share_revocations(url: &str) {
    let env = [
        ("XCORE_DATABASE__URL", url),
        ("XCORE_AUTH__SECRET", SECRET),
        ("XCORE_AUTH__REVOCATION_POLL_MS", "100"),
    ];
    // One after the other, as a rolling deployment would: the first applies migrations.
    let a = Server::start(&env);
    let mut b = Server::start(&env);
    let register = r#"{"email": "ada@example.com", "password": "correct horse"}"#;
    assert_eq!(request(a.addr, "POST", "/auth/register", Some(register)).unwrap().status, 201);
    let (ended, refresh) = login(&a);
    let (kept, _) = login(&a);
    assert_eq!((me(&b, &ended), me(&b, &kept)), (200, 200), "B accepts A's tokens");

    let body = format!(r#"{{"refresh_token": "{refresh}"}}"#);
    assert_eq!(request(a.addr, "POST", "/auth/logout", Some(&body)).unwrap().status, 204);
    assert_eq!(me(&a, &ended), 401, "refused at once where it ended");
    eventually("B refusing the ended session", || me(&b, &ended) == 401);
    assert_eq!(me(&b, &kept), 200);

    // A node restarted after the session ended refuses it from its first request.
    b.terminate();
    b.wait(Duration::from_secs(10));
    let b = Server::start(&env);
    assert_eq!(me(&b, &ended), 401);
    assert_eq!(me(&b, &kept), 200);

    // An operator disables the account from a third process: every node refuses it.
    let output = xcore(a.dir.path())
        .args(["auth", "disable", "ada@example.com"])
        .envs(env)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    eventually("both nodes refusing the disabled account", || {
        me(&a, &kept) == 401 && me(&b, &kept) == 401
    });
    let login = r#"{"email": "ada@example.com", "password": "correct horse"}"#;
    let refused = request(b.addr, "POST", "/auth/login", Some(login)).unwrap();
    assert_eq!(refused.status, 403, "{}", refused.body);
}

#[test]
fn ended_sessions_are_refused_on_every_node_and_after_a_restart_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    two_nodes_share_revocations(&format!("sqlite://{}/shared.db", dir.path().display()));
}

#[test]
fn ended_sessions_are_refused_on_every_node_and_after_a_restart_on_postgres() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let Some(url) = runtime.block_on(xcore_db::testing::fresh_postgres_url("e2e_revocation"))
    else {
        return;
    };
    two_nodes_share_revocations(&url);
}
