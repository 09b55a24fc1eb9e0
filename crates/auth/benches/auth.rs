//! Per-request cost of authentication: `cargo xtask bench auth` (or `cargo bench -p
//! xcore-auth`).
//!
//! `CurrentUser` is measured as a handler sees it: the extractor run on the parts of a
//! request carrying `Authorization: Bearer <token>` and the server's `Gate`. The first use
//! of a token verifies the HS256 signature and checks the claims; later uses of the same
//! token find it among the verified ones; both consult the list of ended sessions. The baseline, in the same run, is `jsonwebtoken::decode` alone with the same
//! key and validation: the floor any JWT check pays. Password hashing with the OWASP
//! parameters is measured once per iteration, single-threaded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::FromRequestParts;
use axum::http::{Request, header};
use criterion::{Criterion, criterion_group, criterion_main};
use xcore_auth::{Auth, AuthConfig, LogNotifier};
use xcore_db::{Database, DatabaseConfig};
use xcore_middleware::{CurrentUser, Gate, RolePermissions};

const SECRET: &[u8] = b"a benchmark secret of at least thirty-two bytes";

/// Polls a future that completes without waiting (the extractor does no I/O).
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the future waited"),
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// The parts of `GET /auth/me` with `token` as its bearer token, behind `gate`.
fn request_parts(token: &str, gate: &Gate) -> axum::http::request::Parts {
    let request = Request::get("/auth/me")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(())
        .unwrap();
    let (mut parts, ()) = request.into_parts();
    parts.extensions.insert(gate.clone());
    parts
}

fn current_user(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let _guard = runtime.enter();
    let config = AuthConfig::default();
    let db =
        Database::new(&DatabaseConfig { url: "sqlite::memory:".to_owned(), ..Default::default() })
            .unwrap();
    let tokens = config.access_tokens(SECRET).unwrap();
    let otp_key = xcore_auth::OtpKey::from_bytes(&[7; 32]);
    let auth = Auth::new(db, &config, tokens.clone(), otp_key, Arc::new(LogNotifier)).unwrap();
    let gate = Gate::new(auth.authenticator(), RolePermissions::default());
    let roles = ["editor".to_owned()];
    let (token, _) = tokens.issue("42", "session-0123456789abcdef", &roles, now()).unwrap();

    let mut group = c.benchmark_group("current_user");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_issuer(&["xcore"]);
    validation.set_audience(&["xcore"]);
    let key = jsonwebtoken::DecodingKey::from_secret(SECRET);
    group.bench_function("baseline: jsonwebtoken::decode alone", |b| {
        b.iter(|| {
            black_box(
                jsonwebtoken::decode::<xcore_auth::Claims>(black_box(&token), &key, &validation)
                    .unwrap(),
            )
        });
    });
    let mut parts = request_parts(&token, &gate);
    group.bench_function("CurrentUser, a token already seen on this node", |b| {
        b.iter(|| {
            let user = ready(CurrentUser::from_request_parts(black_box(&mut parts), &())).unwrap();
            black_box(user)
        });
    });
    // Every iteration presents a token never seen before: the full verification.
    let mut session = 0u64;
    group.bench_function("CurrentUser, first use of a token (full verification)", |b| {
        b.iter_batched_ref(
            || {
                session += 1;
                let (token, _) = tokens.issue("42", &format!("s{session}"), &roles, now()).unwrap();
                request_parts(&token, &gate)
            },
            |parts| black_box(ready(CurrentUser::from_request_parts(parts, &())).unwrap()),
            criterion::BatchSize::SmallInput,
        );
    });
    group.bench_function("issue an access token", |b| {
        b.iter(|| black_box(tokens.issue("42", "session", &roles, now()).unwrap()));
    });
    group.finish();
}

fn passwords(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let passwords = xcore_auth::Passwords::new(&xcore_auth::PasswordConfig::default()).unwrap();
    let hash = runtime.block_on(passwords.hash("correct horse battery staple")).unwrap();
    let mut group = c.benchmark_group("password");
    group.sample_size(20);
    group.bench_function("argon2id verify, OWASP parameters (m=19 MiB, t=2, p=1)", |b| {
        b.iter(|| {
            runtime.block_on(passwords.verify("correct horse battery staple", Some(&hash))).unwrap()
        });
    });
    group.finish();
}

criterion_group!(benches, current_user, passwords);
criterion_main!(benches);
