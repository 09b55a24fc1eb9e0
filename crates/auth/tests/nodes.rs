//! Ended sessions and accounts across nodes on one database and across restarts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use xcore_auth::AuthConfig;

use support::*;

#[tokio::test]
async fn ended_sessions_are_refused_on_every_node_and_after_a_restart() {
    on_every_backend("auth_http_nodes", AuthConfig::default(), |a| async move {
        a.register("ada@example.com", "correct horse").await;
        let (logged_out, refresh) = a.session("ada@example.com", "correct horse").await;
        let (reused, reused_refresh) = a.session("ada@example.com", "correct horse").await;
        let (kept, _) = a.session("ada@example.com", "correct horse").await;
        let b = a.other_node().await;
        // B has verified and remembered every token before they end.
        for token in [&logged_out, &reused, &kept] {
            assert!(b.accepts(token).await);
        }

        a.post("/auth/logout", json!({"refresh_token": refresh})).await;
        let next = a.post("/auth/refresh", json!({"refresh_token": reused_refresh})).await;
        let next = next.body["refresh_token"].as_str().unwrap().to_owned();
        a.post("/auth/refresh", json!({"refresh_token": next})).await;
        let replay = a.post("/auth/refresh", json!({"refresh_token": reused_refresh})).await;
        assert_eq!(replay.status, StatusCode::UNAUTHORIZED, "{}", replay.body);
        assert!(!a.accepts(&logged_out).await, "refused at once where it ended");
        assert!(!a.accepts(&reused).await);

        // B learns it from the log at its next read.
        assert!(b.auth.sync_revocations().await.unwrap() >= 2);
        assert!(!b.accepts(&logged_out).await);
        assert!(!b.accepts(&reused).await);
        assert!(b.accepts(&kept).await, "the session that did not end");

        // A restarted node reads the whole log before it serves.
        let restarted = a.other_node().await;
        assert!(!restarted.accepts(&logged_out).await);
        assert!(!restarted.accepts(&reused).await);
        assert!(restarted.accepts(&kept).await);

        // Reading again finds the same rows and changes nothing.
        b.auth.sync_revocations().await.unwrap();
        assert!(b.accepts(&kept).await);
    })
    .await;
}

#[tokio::test]
async fn disabling_or_deleting_an_account_ends_its_sessions_at_once() {
    on_every_backend("auth_http_disable", AuthConfig::default(), |a| async move {
        let id = a.register("ada@example.com", "correct horse").await.body["id"].as_i64().unwrap();
        a.register("grace@example.com", "correct horse").await;
        let (access, refresh) = a.session("ada@example.com", "correct horse").await;
        let (grace, _) = a.session("grace@example.com", "correct horse").await;
        let b = a.other_node().await;
        assert!(b.accepts(&access).await);

        a.auth.set_active(id, false).await.unwrap();
        for (uri, method) in [("/auth/me", Method::GET), ("/auth/sessions", Method::GET)] {
            let answer = a.call(method, uri, Some(&access), Value::Null).await;
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{uri}");
        }
        let patch = a.call(Method::PATCH, "/auth/me", Some(&access), json!({"display_name": "x"}));
        assert_eq!(patch.await.status, StatusCode::UNAUTHORIZED);
        let setup = a.call(Method::POST, "/auth/otp/setup", Some(&access), Value::Null).await;
        assert_eq!(setup.status, StatusCode::UNAUTHORIZED);
        let refreshed = a.post("/auth/refresh", json!({"refresh_token": refresh})).await;
        assert_eq!(refreshed.status, StatusCode::UNAUTHORIZED);
        let login = a.login("ada@example.com", "correct horse").await;
        assert_eq!((login.status, login.code()), (StatusCode::FORBIDDEN, "account_disabled"));
        b.auth.sync_revocations().await.unwrap();
        assert!(!b.accepts(&access).await, "on the other node too");
        assert!(b.accepts(&grace).await, "another account");

        // Tokens carry whole seconds: a login in the second the account was disabled would
        // be refused too.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        a.auth.set_active(id, true).await.unwrap();
        let (again, _) = a.session("ada@example.com", "correct horse").await;
        b.auth.sync_revocations().await.unwrap();
        assert!(a.accepts(&again).await && b.accepts(&again).await);

        // Deleting takes the password; then nothing of the account works anywhere.
        let wrong =
            a.call(Method::DELETE, "/auth/me", Some(&again), json!({"password": "nope"})).await;
        assert_eq!((wrong.status, wrong.code()), (StatusCode::UNAUTHORIZED, "invalid_credentials"));
        assert!(a.accepts(&again).await);
        let deleted =
            a.call(Method::DELETE, "/auth/me", Some(&again), json!({"password": "correct horse"}));
        assert_eq!(deleted.await.status, StatusCode::NO_CONTENT);
        assert!(!a.accepts(&again).await);
        b.auth.sync_revocations().await.unwrap();
        assert!(!b.accepts(&again).await);
        assert!(!a.other_node().await.accepts(&again).await, "after a restart");
        let login = a.login("ada@example.com", "correct horse").await;
        assert_eq!(login.code(), "invalid_credentials");
        assert!(a.auth.set_active(id, true).await.is_err(), "no such account any more");
        assert!(a.accepts(&grace).await);
    })
    .await;
}
