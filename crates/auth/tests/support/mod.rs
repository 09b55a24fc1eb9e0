//! What the `/auth` tests share: a node (the API over a database, behind the request
//! gate), calls to it, and running a check on every backend.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each test file uses its own part

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use xcore_auth::notifier::NotifyFuture;
use xcore_auth::{Auth, AuthConfig, MIGRATIONS, Message, Notifier};
use xcore_db::{Database, DatabaseConfig};
use xcore_middleware::{Gate, RolePermissions};

pub const SECRET: &[u8] = b"an HS256 secret of at least thirty-two bytes";

/// The address requests come from unless a test says otherwise.
pub const CLIENT: [u8; 4] = [192, 0, 2, 1];

/// Keeps every message, for the reset tests to read the code.
#[derive(Clone, Default)]
pub struct Outbox(pub Arc<Mutex<Vec<Message>>>);

impl Notifier for Outbox {
    fn send(&self, message: Message) -> NotifyFuture<'_> {
        self.0.lock().unwrap().push(message);
        Box::pin(std::future::ready(Ok(())))
    }
}

/// One node: the `/auth` API over a database, behind the request gate.
pub struct Harness {
    pub app: Router,
    pub auth: Auth,
    pub outbox: Outbox,
    pub db: Database,
    pub config: AuthConfig,
}

pub async fn harness(url: &str, config: AuthConfig) -> Harness {
    let db = Database::new(&DatabaseConfig { url: url.to_owned(), ..Default::default() }).unwrap();
    db.migrate(&[&MIGRATIONS]).await.unwrap();
    node(db, config)
}

/// A node over `db`, already migrated.
pub fn node(db: Database, config: AuthConfig) -> Harness {
    let outbox = Outbox::default();
    let tokens = config.access_tokens(SECRET).unwrap();
    let otp_key = xcore_auth::OtpKey::from_bytes(&[7; 32]);
    let auth = Auth::new(db.clone(), &config, tokens, otp_key, Arc::new(outbox.clone())).unwrap();
    let gate = Gate::new(auth.authenticator(), RolePermissions::default());
    let (app, _, _) = xcore_auth::http::router(auth.clone()).mount("/auth");
    let app =
        app.layer(gate.layer()).layer(axum::middleware::from_fn(xcore_core::http::error_bodies));
    Harness { app, auth, outbox, db, config }
}

/// Runs `check` on SQLite and, when configured, on PostgreSQL.
pub async fn on_every_backend<F, Fut>(label: &str, config: AuthConfig, check: F)
where
    F: Fn(Harness) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("auth.db").display());
    check(harness(&sqlite, config.clone()).await).await;
    if let Some(url) = xcore_db::testing::fresh_postgres_url(label).await {
        check(harness(&url, config).await).await;
    }
}

pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub headers: HeaderMap,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl Harness {
    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Value,
    ) -> Answer {
        self.call_from(CLIENT, method, uri, token, body).await
    }

    /// As [`call`](Self::call), from the client at `from`.
    pub async fn call_from(
        &self,
        from: [u8; 4],
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Value,
    ) -> Answer {
        let peer = std::net::SocketAddr::from((from, 40_000));
        let mut request =
            Request::builder().method(method).uri(uri).extension(axum::extract::ConnectInfo(peer));
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = if body.is_null() {
            Body::empty()
        } else {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(body.to_string())
        };
        let response = self.app.clone().oneshot(request.body(body).unwrap()).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer { status, body, headers }
    }

    pub async fn post(&self, uri: &str, body: Value) -> Answer {
        self.call(Method::POST, uri, None, body).await
    }

    pub async fn get(&self, uri: &str, token: &str) -> Answer {
        self.call(Method::GET, uri, Some(token), Value::Null).await
    }

    /// Another node on the same database, as a second process or this one restarted
    /// would be: it has read the revocation log, as the module's startup does.
    pub async fn other_node(&self) -> Self {
        let other = node(self.db.clone(), self.config.clone());
        other.auth.sync_revocations().await.unwrap();
        other
    }

    /// Whether `token` is accepted on `/auth/me`.
    pub async fn accepts(&self, token: &str) -> bool {
        self.get("/auth/me", token).await.status == StatusCode::OK
    }

    pub async fn register(&self, email: &str, password: &str) -> Answer {
        self.post("/auth/register", json!({"email": email, "password": password})).await
    }

    pub async fn login(&self, email: &str, password: &str) -> Answer {
        self.login_from(CLIENT, email, password).await
    }

    pub async fn login_from(&self, from: [u8; 4], email: &str, password: &str) -> Answer {
        let body = json!({"email": email, "password": password});
        self.call_from(from, Method::POST, "/auth/login", None, body).await
    }

    /// Logs in and returns (access token, refresh token).
    pub async fn session(&self, email: &str, password: &str) -> (String, String) {
        let answer = self.login(email, password).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        (
            answer.body["access_token"].as_str().unwrap().to_owned(),
            answer.body["refresh_token"].as_str().unwrap().to_owned(),
        )
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}
