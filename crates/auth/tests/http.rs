//! The `/auth` endpoints over HTTP, on SQLite and (when `XCORE_TEST_DATABASE_URL` is set)
//! PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use xcore_auth::AuthConfig;
use xcore_db::{Database, DatabaseConfig};
use xcore_otp::{Algorithm, Secret, Totp};

use support::*;

#[tokio::test]
async fn register_login_me_refresh_logout() {
    on_every_backend("auth_http_flow", AuthConfig::default(), |h| async move {
        let created = h
            .post(
                "/auth/register",
                json!({"email": "Ada@Example.com", "password": "correct horse", "display_name": "Ada"}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        assert_eq!(created.body["email"], "Ada@Example.com");
        assert_eq!(created.body["display_name"], "Ada");
        assert!(created.body.get("password_hash").is_none(), "{}", created.body);
        assert!(!created.body.to_string().contains("argon2"), "{}", created.body);

        let duplicate = h.register("ada@example.COM", "another password").await;
        assert_eq!((duplicate.status, duplicate.code()), (StatusCode::CONFLICT, "email_taken"));
        let short = h.register("grace@example.com", "short").await;
        assert_eq!(
            (short.status, short.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_password")
        );
        let bad = h.register("not-an-email", "long enough password").await;
        assert_eq!((bad.status, bad.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_email"));
        let typo = h.post("/auth/register", json!({"email": "a@b.co", "pasword": "x"})).await;
        assert_eq!(typo.status, StatusCode::UNPROCESSABLE_ENTITY);

        // A wrong password and an unknown email get the same answer.
        let wrong = h.login("ada@example.com", "wrong horse").await;
        let unknown = h.login("nobody@example.com", "correct horse").await;
        assert_eq!((wrong.status, wrong.code()), (StatusCode::UNAUTHORIZED, "invalid_credentials"));
        assert_eq!(wrong.body["error"]["message"], unknown.body["error"]["message"]);
        assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);

        let login = h.login("ADA@example.com", "correct horse").await;
        assert_eq!(login.status, StatusCode::OK, "{}", login.body);
        assert_eq!(login.body["token_type"], "bearer");
        assert_eq!(login.body["expires_in"], 900);
        let access = login.body["access_token"].as_str().unwrap().to_owned();
        let refresh = login.body["refresh_token"].as_str().unwrap().to_owned();

        let me = h.get("/auth/me", &access).await;
        assert_eq!(me.status, StatusCode::OK, "{}", me.body);
        assert_eq!((me.body["email"].as_str(), me.body["otp_enabled"].as_bool()), (Some("Ada@Example.com"), Some(false)));
        assert!(me.body["last_login_at"].is_string());
        let anonymous = h.call(Method::GET, "/auth/me", None, Value::Null).await;
        assert_eq!((anonymous.status, anonymous.code()), (StatusCode::UNAUTHORIZED, "invalid_token"));

        let renamed = h
            .call(Method::PATCH, "/auth/me", Some(&access), json!({"display_name": "Countess"}))
            .await;
        assert_eq!(renamed.body["display_name"], "Countess");
        let too_long = h
            .call(Method::PATCH, "/auth/me", Some(&access), json!({"display_name": "x".repeat(101)}))
            .await;
        assert_eq!(too_long.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(h.get("/auth/me", &access).await.body["display_name"], "Countess");
        // Leaving the field out changes nothing; `null` clears it.
        let same = h.call(Method::PATCH, "/auth/me", Some(&access), json!({})).await;
        assert_eq!(same.body["display_name"], "Countess");
        let cleared =
            h.call(Method::PATCH, "/auth/me", Some(&access), json!({"display_name": null})).await;
        assert_eq!(cleared.body["display_name"], Value::Null);

        // Refresh rotates: the new pair works. Presented again at once (a second tab, a
        // retry), the old token answers the same successor; once that successor has been
        // used, the old token is a reuse that ends the session, so the newest refresh
        // token stops working too.
        let rotated = h.post("/auth/refresh", json!({"refresh_token": refresh})).await;
        assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
        let next = rotated.body["refresh_token"].as_str().unwrap().to_owned();
        assert_ne!(next, refresh);
        let access2 = rotated.body["access_token"].as_str().unwrap().to_owned();
        assert_eq!(h.get("/auth/me", &access2).await.status, StatusCode::OK);
        let again = h.post("/auth/refresh", json!({"refresh_token": refresh})).await;
        assert_eq!(again.body["refresh_token"].as_str(), Some(next.as_str()), "{}", again.body);
        let newest = h.post("/auth/refresh", json!({"refresh_token": next})).await;
        let newest = newest.body["refresh_token"].as_str().unwrap().to_owned();
        let reused = h.post("/auth/refresh", json!({"refresh_token": refresh})).await;
        assert_eq!((reused.status, reused.code()), (StatusCode::UNAUTHORIZED, "invalid_token"));
        let after_reuse = h.post("/auth/refresh", json!({"refresh_token": newest})).await;
        assert_eq!(after_reuse.status, StatusCode::UNAUTHORIZED, "the family is revoked");
        assert_eq!(h.get("/auth/me", &access2).await.status, StatusCode::UNAUTHORIZED);

        // Logout ends the session: its refresh token and its access tokens stop working.
        let (access, refresh) = h.session("ada@example.com", "correct horse").await;
        let out = h.post("/auth/logout", json!({"refresh_token": refresh})).await;
        assert_eq!(out.status, StatusCode::NO_CONTENT);
        let refused = h.post("/auth/refresh", json!({"refresh_token": refresh})).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        assert_eq!(h.get("/auth/me", &access).await.status, StatusCode::UNAUTHORIZED);
        let unknown = h.post("/auth/logout", json!({"refresh_token": "never-issued"})).await;
        assert_eq!(unknown.status, StatusCode::NO_CONTENT);
    })
    .await;
}

/// The current code of the secret `setup` answered.
fn current_code(setup: &Value) -> String {
    let secret = Secret::from_base32(setup["secret"].as_str().unwrap()).unwrap();
    Totp::new(secret, Algorithm::Sha1, 6).unwrap().code_at(unix_now())
}

#[tokio::test]
async fn two_factor_login_refuses_replays_and_takes_each_recovery_code_once() {
    on_every_backend("auth_http_otp", AuthConfig::default(), |h| async move {
        h.register("ada@example.com", "correct horse").await;
        let (access, _) = h.session("ada@example.com", "correct horse").await;
        let setup = h.call(Method::POST, "/auth/otp/setup", Some(&access), Value::Null).await;
        assert_eq!(setup.status, StatusCode::OK, "{}", setup.body);
        let uri = setup.body["otpauth_uri"].as_str().unwrap();
        assert!(uri.starts_with("otpauth://totp/xcore:ada%40example.com?secret="), "{uri}");
        assert!(setup.body["qr_svg"].as_str().unwrap().contains("<svg"));
        // Pending: logging in does not ask for a code yet.
        h.session("ada@example.com", "correct horse").await;

        // A code of no step in the drift window.
        let secret = Secret::from_base32(setup.body["secret"].as_str().unwrap()).unwrap();
        let totp = Totp::new(secret, Algorithm::Sha1, 6).unwrap();
        let now = unix_now();
        let window: Vec<String> = [now - 30, now, now + 30].map(|t| totp.code_at(t)).to_vec();
        let wrong = (0..4).map(|i| format!("{i}{i}{i}{i}{i}{i}")).find(|c| !window.contains(c)).unwrap();
        let refused = h
            .call(Method::POST, "/auth/otp/enable", Some(&access), json!({"code": wrong}))
            .await;
        assert_eq!((refused.status, refused.code()), (StatusCode::UNAUTHORIZED, "invalid_otp"));
        let code = current_code(&setup.body);
        let enabled =
            h.call(Method::POST, "/auth/otp/enable", Some(&access), json!({"code": code})).await;
        assert_eq!(enabled.status, StatusCode::OK, "{}", enabled.body);
        let recovery: Vec<String> = enabled.body["recovery_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|code| code.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(recovery.len(), 10);
        assert_eq!(h.get("/auth/me", &access).await.body["otp_enabled"], true);

        let missing = h.login("ada@example.com", "correct horse").await;
        assert_eq!((missing.status, missing.code()), (StatusCode::UNAUTHORIZED, "otp_required"));
        // The code that enabled two-factor was used: its time step cannot log in.
        let replay = h
            .post("/auth/login", json!({"email": "ada@example.com", "password": "correct horse", "otp": code}))
            .await;
        assert_eq!((replay.status, replay.code()), (StatusCode::UNAUTHORIZED, "invalid_otp"));

        let first = &recovery[0];
        let with_recovery = h
            .post("/auth/login", json!({"email": "ada@example.com", "password": "correct horse", "otp": first.to_uppercase()}))
            .await;
        assert_eq!(with_recovery.status, StatusCode::OK, "{}", with_recovery.body);
        let again = h
            .post("/auth/login", json!({"email": "ada@example.com", "password": "correct horse", "otp": first}))
            .await;
        assert_eq!((again.status, again.code()), (StatusCode::UNAUTHORIZED, "invalid_otp"));
        // A right code with a wrong password is still a wrong password.
        let wrong_password = h
            .post("/auth/login", json!({"email": "ada@example.com", "password": "wrong", "otp": recovery[1]}))
            .await;
        assert_eq!(wrong_password.code(), "invalid_credentials");

        let already = h.call(Method::POST, "/auth/otp/setup", Some(&access), Value::Null).await;
        assert_eq!(already.code(), "otp_already_enabled");
        let bad_disable = h
            .call(Method::POST, "/auth/otp/disable", Some(&access), json!({"password": "wrong"}))
            .await;
        assert_eq!(bad_disable.code(), "invalid_credentials");
        let disabled = h
            .call(Method::POST, "/auth/otp/disable", Some(&access), json!({"password": "correct horse"}))
            .await;
        assert_eq!(disabled.status, StatusCode::NO_CONTENT, "{}", disabled.body);
        h.session("ada@example.com", "correct horse").await;
        let gone = h
            .post("/auth/login", json!({"email": "ada@example.com", "password": "correct horse", "otp": recovery[2]}))
            .await;
        assert_eq!(gone.status, StatusCode::OK, "two-factor is off, the code is ignored");
    })
    .await;
}

#[tokio::test]
async fn a_password_change_ends_the_other_sessions() {
    on_every_backend("auth_http_password", AuthConfig::default(), |h| async move {
        h.register("ada@example.com", "correct horse").await;
        let (access_a, refresh_a) = h.session("ada@example.com", "correct horse").await;
        let (access_b, refresh_b) = h.session("ada@example.com", "correct horse").await;
        let listed = h.get("/auth/sessions", &access_a).await;
        assert_eq!(listed.body.as_array().unwrap().len(), 2, "{}", listed.body);
        assert_eq!(
            listed.body.as_array().unwrap().iter().filter(|s| s["current"] == true).count(),
            1
        );

        let wrong = h
            .call(
                Method::POST,
                "/auth/password",
                Some(&access_a),
                json!({"current_password": "nope", "new_password": "battery staple"}),
            )
            .await;
        assert_eq!(wrong.code(), "invalid_credentials");
        let weak = h
            .call(
                Method::POST,
                "/auth/password",
                Some(&access_a),
                json!({"current_password": "correct horse", "new_password": "short"}),
            )
            .await;
        assert_eq!(weak.code(), "invalid_password");
        let changed = h
            .call(
                Method::POST,
                "/auth/password",
                Some(&access_a),
                json!({"current_password": "correct horse", "new_password": "battery staple"}),
            )
            .await;
        assert_eq!(changed.status, StatusCode::NO_CONTENT, "{}", changed.body);

        assert_eq!(
            h.post("/auth/refresh", json!({"refresh_token": refresh_b})).await.status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(h.get("/auth/me", &access_b).await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(h.get("/auth/me", &access_a).await.status, StatusCode::OK);
        assert_eq!(
            h.post("/auth/refresh", json!({"refresh_token": refresh_a})).await.status,
            StatusCode::OK
        );
        assert_eq!(
            h.login("ada@example.com", "correct horse").await.status,
            StatusCode::UNAUTHORIZED
        );
        h.session("ada@example.com", "battery staple").await;
    })
    .await;
}

#[tokio::test]
async fn sessions_are_listed_and_ended_one_by_one() {
    on_every_backend("auth_http_sessions", AuthConfig::default(), |h| async move {
        h.register("ada@example.com", "correct horse").await;
        h.register("grace@example.com", "correct horse").await;
        let (access, _) = h.session("ada@example.com", "correct horse").await;
        let (other_access, other_refresh) = h.session("ada@example.com", "correct horse").await;
        let (grace, _) = h.session("grace@example.com", "correct horse").await;
        let listed = h.get("/auth/sessions", &other_access).await;
        let other = listed.body.as_array().unwrap().iter().find(|s| s["current"] == true).unwrap();
        let id = other["id"].as_str().unwrap().to_owned();

        // Nobody ends someone else's session.
        let foreign = h
            .call(Method::DELETE, &format!("/auth/sessions/{id}"), Some(&grace), Value::Null)
            .await;
        assert_eq!((foreign.status, foreign.code()), (StatusCode::NOT_FOUND, "not_found"));
        assert_eq!(h.get("/auth/me", &other_access).await.status, StatusCode::OK);

        let ended = h
            .call(Method::DELETE, &format!("/auth/sessions/{id}"), Some(&access), Value::Null)
            .await;
        assert_eq!(ended.status, StatusCode::NO_CONTENT);
        assert_eq!(h.get("/auth/me", &other_access).await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            h.post("/auth/refresh", json!({"refresh_token": other_refresh})).await.status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(h.get("/auth/sessions", &access).await.body.as_array().unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_reset_code_sets_a_new_password_once() {
    on_every_backend("auth_http_reset", AuthConfig::default(), |h| async move {
        h.register("ada@example.com", "correct horse").await;
        let (access, _) = h.session("ada@example.com", "correct horse").await;
        let unknown = h.post("/auth/password/reset/request", json!({"email": "nobody@example.com"})).await;
        let known = h.post("/auth/password/reset/request", json!({"email": "ADA@example.com"})).await;
        assert_eq!((unknown.status, known.status), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
        assert_eq!(unknown.body, known.body);
        // Delivery is in the background.
        let message = loop {
            if let Some(message) = h.outbox.0.lock().unwrap().first().cloned() {
                break message;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert_eq!(message.to, "ada@example.com");
        let code = message.body.lines().find(|line| line.len() == 43).unwrap().to_owned();

        let wrong = h
            .post("/auth/password/reset/confirm", json!({"email": "ada@example.com", "code": "nope", "new_password": "battery staple"}))
            .await;
        assert_eq!((wrong.status, wrong.code()), (StatusCode::UNAUTHORIZED, "invalid_code"));
        let confirm = json!({"email": "ada@example.com", "code": code, "new_password": "battery staple"});
        let done = h.post("/auth/password/reset/confirm", confirm.clone()).await;
        assert_eq!(done.status, StatusCode::NO_CONTENT, "{}", done.body);
        assert_eq!(h.post("/auth/password/reset/confirm", confirm).await.code(), "invalid_code");
        assert_eq!(h.get("/auth/me", &access).await.status, StatusCode::UNAUTHORIZED, "sessions end");
        assert_eq!(h.login("ada@example.com", "correct horse").await.status, StatusCode::UNAUTHORIZED);
        h.session("ada@example.com", "battery staple").await;
        assert_eq!(h.outbox.0.lock().unwrap().len(), 1, "nothing is sent for unknown emails");
    })
    .await;
}

/// A token signed by hand, with `claims` and `header`.
fn forged(header: &jsonwebtoken::Header, claims: &Value, key: &[u8]) -> String {
    jsonwebtoken::encode(header, claims, &jsonwebtoken::EncodingKey::from_secret(key)).unwrap()
}

#[tokio::test]
async fn bad_access_tokens_are_refused() {
    on_every_backend("auth_http_tokens", AuthConfig::default(), |h| async move {
        let id = h.register("ada@example.com", "correct horse").await.body["id"].as_i64().unwrap();
        let now = unix_now();
        let claims = |changes: Value| {
            let mut base = json!({
                "sub": id.to_string(), "sid": "s", "iat": now, "nbf": now, "exp": now + 600,
                "iss": "xcore", "aud": "xcore", "jti": "j",
            });
            base.as_object_mut().unwrap().extend(changes.as_object().unwrap().clone());
            base
        };
        let hs256 = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        let good = forged(&hs256, &claims(json!({})), SECRET);
        assert_eq!(
            h.get("/auth/me", &good).await.status,
            StatusCode::OK,
            "the control token works"
        );

        let expired = forged(
            &hs256,
            &claims(json!({"iat": now - 700, "nbf": now - 700, "exp": now - 100})),
            SECRET,
        );
        let answer = h.get("/auth/me", &expired).await;
        assert_eq!((answer.status, answer.code()), (StatusCode::UNAUTHORIZED, "token_expired"));

        let hs512 = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512);
        let unsigned = {
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            format!(
                "{}.{}.",
                b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
                b64.encode(claims(json!({})).to_string())
            )
        };
        for (what, token) in [
            ("not yet valid", forged(&hs256, &claims(json!({"nbf": now + 300})), SECRET)),
            ("wrong issuer", forged(&hs256, &claims(json!({"iss": "someone-else"})), SECRET)),
            ("wrong audience", forged(&hs256, &claims(json!({"aud": "another-api"})), SECRET)),
            (
                "wrong key",
                forged(&hs256, &claims(json!({})), b"another secret of thirty-two bytes or more"),
            ),
            ("other algorithm", forged(&hs512, &claims(json!({})), SECRET)),
            ("alg none", unsigned),
            ("garbage", "not.a.token".to_owned()),
        ] {
            let answer = h.get("/auth/me", &token).await;
            assert_eq!(
                (answer.status, answer.code()),
                (StatusCode::UNAUTHORIZED, "invalid_token"),
                "{what}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn hashes_are_recomputed_when_the_parameters_change() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("auth.db").display());
    let mut old = AuthConfig::default();
    old.password.memory_kib = 8192;
    old.password.iterations = 1;
    let h = harness(&url, old).await;
    h.register("ada@example.com", "correct horse").await;
    let db = Database::new(&DatabaseConfig { url: url.clone(), ..Default::default() }).unwrap();
    let accounts = xcore_auth::Accounts::new(db);
    let stored = |accounts: xcore_auth::Accounts| async move {
        accounts.by_email("ada@example.com").await.unwrap().unwrap().password_hash
    };
    assert!(stored(accounts.clone()).await.contains("m=8192,t=1,p=1"));
    let h = harness(&url, AuthConfig::default()).await;
    h.session("ada@example.com", "correct horse").await;
    assert!(stored(accounts.clone()).await.contains("m=19456,t=2,p=1"));
    h.session("ada@example.com", "correct horse").await;
}

/// Regression (issue "Hardening"): emails with NUL, control, bidirectional-override or
/// markup characters were accepted at registration, and PostgreSQL answered 500 for a NUL.
#[tokio::test]
async fn emails_with_control_bidi_or_markup_characters_are_refused() {
    on_every_backend("auth_bad_emails", AuthConfig::default(), |h| async move {
        for email in ["a\u{0}b@example.com", "evil\u{202E}@example.com", "<b>@example.com"] {
            let answer = h.register(email, "correct horse battery").await;
            assert_eq!(
                answer.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{email:?}: {}",
                answer.body
            );
            assert_eq!(answer.code(), "invalid_email", "{email:?}");
            // Logging in with such an address is an unknown account, not a server error.
            let answer = h.login(email, "correct horse battery").await;
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{email:?}: {}", answer.body);
            // A reset for it is refused as such: no address, nothing to enumerate.
            let answer = h.post("/auth/password/reset/request", json!({"email": email})).await;
            assert_eq!(answer.code(), "invalid_email", "{email:?}: {}", answer.body);
        }
    })
    .await;
}
