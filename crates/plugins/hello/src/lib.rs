//! The example xcore plugin: copy this crate to start your own (`cargo xtask new-plugin`
//! does it for you).
//!
//! It shows each thing a plugin usually does, in the order it does it in
//! [`Plugin::build`]:
//!
//! 1. read its typed config section, `[plugins.hello]`, checked by its [`Section`] impl;
//! 2. take the services it needs from the modules it depends on (here the [`Database`],
//!    the [`Cache`] and the auth module's [`Gate`], listed in `dependencies` so they are
//!    built first), so a missing one fails the build instead of the first request;
//! 3. register its migrations, embedded for SQLite and PostgreSQL (the database module
//!    applies them at startup; a change to a table is a new migration, never an edit);
//! 4. mount its routes, documented for OpenAPI with `utoipa`, under `/plugins/hello`,
//!    with a rate limit of their own on the route that writes;
//! 5. register a startup hook.
//!
//! Routes:
//! - `GET /plugins/hello/` answers `{"message": "<greeting>"}`;
//! - `POST /plugins/hello/guestbook` signs the guestbook as the signed-in user
//!   ([`CurrentUser`]: 401 without a valid bearer token), within `sign_quota` per user
//!   (429 with `Retry-After` over it); `GET` lists the latest entries, for anyone. The
//!   listing is cached in the `hello` cache namespace and deleted on every signature, so a
//!   reader never sees a listing older than the last write.
//!
//! Stored rows ([`EntryRow`]) and what the API answers ([`Entry`]) are separate types:
//! the table keeps UTC times without an offset, the API speaks RFC 3339 with one.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRef, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::{ExpressionMethods, QueryDsl, Selectable, SelectableHelper};
use diesel_async::RunQueryDsl;
use diesel_migrations::embed_migrations;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;
use xcore_cache::{Cache, Namespace};
use xcore_core::config::{Problems, Section};
use xcore_core::http::ApiError;
use xcore_core::{AppBuilder, Plugin, PluginError, PluginMeta, Routes, register_plugin};
use xcore_db::{Database, MigrationSet, MigrationsExt, with_conn};
use xcore_middleware::{CurrentUser, Gate, KeyBy, Quota, RateLimit};

/// The plugin. Registered below with [`register_plugin!`]; the server links this crate
/// with `use xcore_plugin_hello as _;`.
#[derive(Debug, Clone, Copy)]
pub struct Hello;

register_plugin!(Hello);

/// `[plugins.hello]` in `xcore.toml`, or `XCORE_PLUGINS__HELLO__<KEY>` in the environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HelloConfig {
    /// What `GET /plugins/hello/` answers.
    pub greeting: String,
    /// How many guestbook entries `GET /plugins/hello/guestbook` returns at most.
    pub max_entries: u32,
    /// How often one signed-in user may sign the guestbook: by default 10 times a minute
    /// (`{ requests = 10, per_secs = 60, key = "user" }`). Anonymous attempts, refused
    /// with 401, count against their address.
    pub sign_quota: Quota,
}

impl Default for HelloConfig {
    fn default() -> Self {
        Self {
            greeting: "Hello from xcore!".to_owned(),
            max_entries: 100,
            sign_quota: Quota::per(10, 60).by(KeyBy::User),
        }
    }
}

/// What serde cannot check: reported with the key and where its value came from.
impl Section for HelloConfig {
    fn validate(&self, problems: &mut Problems) {
        problems.check(self.max_entries > 0, "max_entries", "must be at least 1");
        if let Some(problem) = self.sign_quota.problem() {
            problems.add("sign_quota", problem);
        }
    }
}

/// The guestbook table, for both backends.
pub static MIGRATIONS: MigrationSet = MigrationSet {
    name: "hello",
    sqlite: embed_migrations!("migrations/sqlite"),
    postgres: embed_migrations!("migrations/postgres"),
};

diesel::table! {
    hello_guestbook (id) {
        id -> BigInt,
        name -> Text,
        message -> Text,
        created_at -> Timestamp,
        author_id -> Nullable<BigInt>,
    }
}

impl Plugin for Hello {
    fn meta(&self) -> PluginMeta {
        PluginMeta {
            name: "hello",
            version: env!("CARGO_PKG_VERSION"),
            description: env!("CARGO_PKG_DESCRIPTION"),
            author: "xcore developers",
            // The modules whose services `build` requires: they are built first.
            dependencies: &["auth", "cache", "database"],
            ..PluginMeta::new("hello")
        }
    }

    fn build(&self, app: &mut AppBuilder) -> Result<(), PluginError> {
        let config: HelloConfig = app.config()?;
        // `sign` takes a `CurrentUser`, which the auth module's gate authenticates: without
        // it every signature would fail, so the build does instead.
        app.require::<Gate>()?;
        let state = HelloState {
            greeting: Arc::from(config.greeting.as_str()),
            max_entries: config.max_entries,
            db: app.require::<Database>()?.clone(),
            cache: app
                .require::<Cache>()?
                .namespace("hello")
                .map_err(|error| PluginError::Other(error.into()))?,
        };
        app.add_migrations(&MIGRATIONS);
        app.routes(
            Routes::new()
                // `layer` wraps the routes added before it: the quota is the write's alone.
                .routes(routes!(sign))
                .layer(RateLimit::single(config.sign_quota))
                .routes(routes!(greet))
                .routes(routes!(list_entries))
                .with_state(state),
        );
        let greeting = config.greeting;
        app.on_startup(move || async move {
            tracing::info!(plugin = "hello", %greeting, "ready to greet");
            Ok(())
        });
        Ok(())
    }
}

#[derive(Clone)]
struct HelloState {
    greeting: Arc<str>,
    max_entries: u32,
    db: Database,
    /// Guestbook listings, by limit.
    cache: Namespace,
}

/// The greeting.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Greeting {
    #[schema(value_type = String)]
    pub message: Arc<str>,
}

/// The part of [`HelloState`] that `greet` needs: handlers take narrow handles through
/// `FromRef`, so a request clones only what it uses.
#[derive(Clone)]
struct GreetingText(Arc<str>);

impl FromRef<HelloState> for GreetingText {
    fn from_ref(state: &HelloState) -> Self {
        Self(state.greeting.clone())
    }
}

/// Answers the configured greeting.
#[utoipa::path(get, path = "/", tag = "hello", responses((status = 200, body = Greeting)))]
async fn greet(State(GreetingText(message)): State<GreetingText>) -> Json<Greeting> {
    Json(Greeting { message })
}

/// A guestbook entry, as the API answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Entry {
    pub id: i64,
    /// The id of the account that signed it; `null` for entries signed before signing in
    /// was required.
    pub author_id: Option<i64>,
    /// The name the author chose to sign with.
    pub name: String,
    pub message: String,
    /// When it was signed: RFC 3339, in UTC (`2026-12-01T04:01:16.092242Z`).
    pub created_at: DateTime<Utc>,
}

/// A guestbook row as stored: `created_at` is UTC without an offset, which both backends
/// keep alike.
#[derive(Debug, Clone, diesel::Queryable, Selectable)]
#[diesel(table_name = hello_guestbook)]
pub struct EntryRow {
    pub id: i64,
    pub author_id: Option<i64>,
    pub name: String,
    pub message: String,
    pub created_at: NaiveDateTime,
}

impl From<EntryRow> for Entry {
    fn from(row: EntryRow) -> Self {
        Self {
            id: row.id,
            author_id: row.author_id,
            name: row.name,
            message: row.message,
            created_at: row.created_at.and_utc(),
        }
    }
}

/// What signing the guestbook takes; the author is the signed-in caller.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Ada", "message": "Hello from the guestbook"}))]
pub struct NewEntry {
    /// The name to sign with: up to 64 characters, not all blank (it is stored trimmed).
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    pub name: String,
    /// Up to 500 characters, not all blank (it is stored trimmed).
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    pub message: String,
}

/// The latest guestbook entries, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"entries": [{"id": 1, "author_id": 1, "name": "Ada", "message": "Hello from the guestbook", "created_at": "2026-12-01T09:00:00Z"}]}))]
pub struct Entries {
    pub entries: Vec<Entry>,
}

#[derive(Debug, Deserialize, IntoParams)]
struct ListParams {
    /// How many entries to return (default and most: `plugins.hello.max_entries`).
    #[param(value_type = Option<u64>, minimum = 0, maximum = 4_294_967_295_u64)]
    limit: Option<u32>,
}

/// Lists the latest guestbook entries.
#[utoipa::path(get, path = "/guestbook", tag = "hello", params(ListParams),
    responses(
        (status = 200, body = Entries),
        (status = 503, description = "`service_unavailable`: the database cannot be reached"),
    ))]
async fn list_entries(
    State(state): State<HelloState>,
    Query(params): Query<ListParams>,
) -> Result<Json<Entries>, ApiError> {
    let limit = params.limit.unwrap_or(state.max_entries).clamp(1, state.max_entries);
    // One cached listing, the longest, serves every limit: a signature then invalidates
    // one known key. Concurrent misses run one query; a failed query is not cached.
    let mut latest = state
        .cache
        .get_or_insert_with(LATEST, || latest_entries(&state.db, state.max_entries))
        .await
        .map_err(database_error)?;
    latest.entries.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(Json(latest))
}

/// The cache key of the latest `max_entries` entries. Versioned: a listing cached in
/// another shape by an earlier release (in Redis, it outlives a restart) is not read.
const LATEST: &str = "guestbook:latest:v2";

async fn latest_entries(db: &Database, limit: u32) -> Result<Entries, xcore_db::Error> {
    let mut conn = db.get().await?;
    // The query is written inside `with_conn!` so it is typed once per backend.
    let rows = with_conn!(conn, c => {
        hello_guestbook::table
            .select(EntryRow::as_select())
            .order((hello_guestbook::created_at.desc(), hello_guestbook::id.desc()))
            .limit(i64::from(limit))
            .load(c)
            .await
    })?;
    Ok(Entries { entries: rows.into_iter().map(Entry::from).collect() })
}

/// Signs the guestbook as the signed-in user.
#[utoipa::path(post, path = "/guestbook", tag = "hello", request_body = NewEntry,
    security(("bearer" = [])),
    responses(
        (status = 201, body = Entry),
        (status = 401, description = "`invalid_token` or `token_expired`: sign in first"),
        (status = 422, description = "`invalid_input`: invalid name or message"),
        (status = 429, description = "`too_many_requests`: over `plugins.hello.sign_quota`",
            headers(("Retry-After" = u64, description = "seconds until a signature fits"))),
        (status = 503, description = "`service_unavailable`: the database cannot be reached"),
    ))]
async fn sign(
    State(state): State<HelloState>,
    user: CurrentUser,
    Json(entry): Json<NewEntry>,
) -> Result<(StatusCode, Json<Entry>), ApiError> {
    check_length("name", &entry.name, 64)?;
    check_length("message", &entry.message, 500)?;
    let (name, message) = (entry.name.trim(), entry.message.trim());
    let created_at = Utc::now().naive_utc();
    let mut conn = state.db.get().await.map_err(database_error)?;
    let row = with_conn!(conn, c => {
        diesel::insert_into(hello_guestbook::table)
            .values((
                hello_guestbook::author_id.eq(user.user_id),
                hello_guestbook::name.eq(name),
                hello_guestbook::message.eq(message),
                hello_guestbook::created_at.eq(created_at),
            ))
            .returning(EntryRow::as_returning())
            .get_result(c)
            .await
    })
    .map_err(database_error)?;
    // The cached listing now misses the new entry. Should the cache be unreachable, the
    // entry is still saved: report it; the listing expires by itself.
    if let Err(error) = state.cache.delete(LATEST).await {
        tracing::warn!(plugin = "hello", %error, "guestbook listings not invalidated");
    }
    Ok((StatusCode::CREATED, Json(Entry::from(row))))
}

/// `value` has 1 to `max` characters as given, and is not all whitespace (the document's
/// `minLength`, `maxLength` and `pattern`).
fn check_length(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    let count = value.chars().count();
    if count > max || value.chars().all(char::is_whitespace) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            format!("`{field}` must be 1 to {max} characters, not all blank; got {count}"),
        ));
    }
    Ok(())
}

fn database_error(error: impl std::fmt::Display) -> ApiError {
    tracing::error!(plugin = "hello", %error, "guestbook query failed");
    ApiError::unavailable("the guestbook is unavailable")
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use axum::http::{Request, header};
    use figment::Figment;
    use figment::providers::{Format, Toml};
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    use xcore_cache::CachePlugin;
    use xcore_core::Registry;
    use xcore_db::DatabasePlugin;
    use xcore_middleware::{Authenticate, RolePermissions};

    use super::*;

    /// Bearer tokens `user:<id>` stand for user `<id>`; anything else is refused.
    struct Tokens;

    impl Authenticate for Tokens {
        fn authenticate(&self, token: &str) -> Result<CurrentUser, xcore_middleware::Rejection> {
            let id = token.strip_prefix("user:").and_then(|id| id.parse().ok());
            let user_id = id.ok_or(xcore_middleware::Rejection::Invalid)?;
            Ok(CurrentUser { user_id, session_id: "s".to_owned(), roles: Vec::new() })
        }
    }

    fn gate() -> Gate {
        Gate::new(Tokens, RolePermissions::default())
    }

    /// Stands in for the auth module: provides the gate under its name.
    static AUTH: xcore_core::FnPlugin = xcore_core::FnPlugin::new(
        PluginMeta { section: Some("auth"), ..PluginMeta::new("auth") },
        |app| {
            app.insert_resource(gate());
            Ok(())
        },
    );

    /// The plugin with the modules it depends on, built and started the way the server
    /// does it, over `database` (an in-memory SQLite database by default). The server
    /// gives every request its gate and peer address; here layers do.
    async fn app_on(database: &str, config: &str) -> Result<axum::Router, xcore_core::BuildError> {
        let toml = format!("[database]\nurl = \"{database}\"\n{config}");
        let builder = AppBuilder::new(Figment::from(Toml::string(&toml)));
        let registry = Registry::new(vec![&Hello, &DatabasePlugin, &CachePlugin, &AUTH]);
        let mut app = builder.build(&registry)?;
        // The database module's startup hook applies the guestbook's migrations.
        app.start().await.unwrap();
        Ok(app
            .router()
            .layer(gate().layer())
            .layer(axum::Extension(ConnectInfo(SocketAddr::from(([192, 0, 2, 1], 4000))))))
    }

    async fn app(config: &str) -> Result<axum::Router, xcore_core::BuildError> {
        app_on("sqlite::memory:", config).await
    }

    struct Answer {
        status: u16,
        headers: axum::http::HeaderMap,
        body: serde_json::Value,
    }

    async fn call(router: &axum::Router, request: Request<Body>) -> Answer {
        let response = router.clone().oneshot(request).await.unwrap();
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer { status, headers, body: serde_json::from_slice(&body).unwrap() }
    }

    async fn get(router: &axum::Router, uri: &str) -> (u16, serde_json::Value) {
        let answer = call(router, Request::get(uri).body(Body::empty()).unwrap()).await;
        (answer.status, answer.body)
    }

    /// Signs as `user` (no `Authorization` header when `None`).
    async fn sign_as(router: &axum::Router, user: Option<i64>, body: serde_json::Value) -> Answer {
        let mut request = Request::post("/plugins/hello/guestbook")
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(user) = user {
            request = request.header(header::AUTHORIZATION, format!("Bearer user:{user}"));
        }
        call(router, request.body(Body::from(body.to_string())).unwrap()).await
    }

    fn entry(name: &str, message: &str) -> serde_json::Value {
        serde_json::json!({"name": name, "message": message})
    }

    #[tokio::test]
    async fn greets_with_the_configured_greeting() {
        let router = app("[plugins.hello]\ngreeting = \"Hi there\"").await.unwrap();
        assert_eq!(
            get(&router, "/plugins/hello/").await,
            (200, serde_json::json!({"message": "Hi there"}))
        );
    }

    #[tokio::test]
    async fn refuses_invalid_config_naming_every_problem() {
        let error = app("[plugins.hello]\nmax_entries = 0\ngreting = \"typo\"\n\
             sign_quota = { requests = 0, per_secs = 60 }")
        .await
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "the application cannot be built (1 problem):\n  - plugin `hello`: invalid config: \
             `plugins.hello.greting`: unknown key `greting`; expected one of: greeting, \
             max_entries, sign_quota (from TOML source string); `plugins.hello.max_entries`: \
             must be at least 1 (from TOML source string); `plugins.hello.sign_quota`: \
             `requests` must be at least 1 (from TOML source string)"
        );
    }

    #[tokio::test]
    async fn needs_the_auth_module() {
        let toml = "[database]\nurl = \"sqlite::memory:\"";
        let builder = AppBuilder::new(Figment::from(Toml::string(toml)));
        let error = builder
            .build(&Registry::new(vec![&Hello, &DatabasePlugin, &CachePlugin]))
            .err()
            .unwrap();
        assert!(
            error.to_string().contains("plugin `hello` depends on `auth`, which is not registered"),
            "{error}"
        );
    }

    /// Issue "Hardening", point 12: the guestbook took writes from anyone.
    #[tokio::test]
    async fn signing_needs_a_signed_in_user_who_becomes_the_author() {
        check_signing(&app("").await.unwrap()).await;
    }

    #[tokio::test]
    async fn signing_works_on_postgres() {
        let Some(url) = xcore_db::testing::fresh_postgres_url("hello").await else { return };
        check_signing(&app_on(&url, "").await.unwrap()).await;
    }

    async fn check_signing(router: &axum::Router) {
        let anonymous = sign_as(router, None, entry("Ada", "hello")).await;
        assert_eq!(anonymous.status, 401, "{}", anonymous.body);
        assert_eq!(anonymous.body["error"]["code"], "invalid_token");
        assert_eq!(anonymous.headers[header::WWW_AUTHENTICATE], "Bearer");
        let forged = call(
            router,
            Request::post("/plugins/hello/guestbook")
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::AUTHORIZATION, "Bearer admin")
                .body(Body::from(entry("Ada", "hello").to_string()))
                .unwrap(),
        )
        .await;
        assert_eq!(forged.status, 401, "{}", forged.body);
        assert_eq!(
            get(router, "/plugins/hello/guestbook").await.1["entries"],
            serde_json::json!([])
        );

        let signed = sign_as(router, Some(7), entry("  Ada ", "hello")).await;
        assert_eq!(signed.status, 201, "{}", signed.body);
        assert_eq!(signed.body["author_id"], 7);
        assert_eq!(signed.body["name"], "Ada");
        assert!(signed.headers.contains_key("ratelimit-remaining"), "{:?}", signed.headers);
        let invalid = sign_as(router, Some(7), entry("", "hello")).await;
        assert_eq!(
            (invalid.status, &invalid.body["error"]["code"]),
            (422, &"invalid_input".into())
        );
        assert_eq!(sign_as(router, Some(8), entry("Bob", "hi")).await.status, 201);

        let (status, listing) = get(router, "/plugins/hello/guestbook").await;
        assert_eq!(status, 200);
        let authors: Vec<_> = listing["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| (entry["author_id"].as_i64().unwrap(), entry["name"].as_str().unwrap()))
            .collect();
        assert_eq!(authors, [(8, "Bob"), (7, "Ada")]);
        assert_eq!(listing["entries"][1], signed.body, "the listing shows what signing answered");
    }

    /// Issue "OpenAPI truth", point 1: `created_at` is a `date-time`, so it carries an
    /// offset.
    #[tokio::test]
    async fn times_are_rfc_3339_in_utc() {
        let router = app("").await.unwrap();
        let before = Utc::now();
        let signed = sign_as(&router, Some(1), entry("Ada", "hello")).await;
        let text = signed.body["created_at"].as_str().unwrap().to_owned();
        assert!(text.ends_with('Z'), "{text}");
        let created = DateTime::parse_from_rfc3339(&text).unwrap();
        assert!(created >= before && created <= Utc::now(), "{text}");
        let (_, listing) = get(&router, "/plugins/hello/guestbook").await;
        assert_eq!(listing["entries"][0]["created_at"], text.as_str());
    }

    /// Issue "Hardening", point 12: one client could sign about 980 times a second.
    #[tokio::test]
    async fn each_user_signs_within_the_quota_and_reading_is_not_limited() {
        let router =
            app("[plugins.hello]\nsign_quota = { requests = 2, per_secs = 60, key = \"user\" }")
                .await
                .unwrap();
        for _ in 0..2 {
            assert_eq!(sign_as(&router, Some(7), entry("Ada", "hello")).await.status, 201);
        }
        let limited = sign_as(&router, Some(7), entry("Ada", "hello")).await;
        assert_eq!(limited.status, 429, "{}", limited.body);
        assert_eq!(limited.body["error"]["code"], "too_many_requests");
        let retry: u64 = limited.headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
        assert!((1..=30).contains(&retry), "one signature every 30 s: {retry}");
        // Another user has a budget of their own; reading is not limited.
        assert_eq!(sign_as(&router, Some(8), entry("Bob", "hi")).await.status, 201);
        for _ in 0..5 {
            assert_eq!(get(&router, "/plugins/hello/guestbook").await.0, 200);
        }
        let (_, listing) = get(&router, "/plugins/hello/guestbook").await;
        assert_eq!(listing["entries"].as_array().unwrap().len(), 3);
    }

    /// The document tells what the write needs and how it can be refused.
    #[test]
    fn the_openapi_document_describes_sign_in_and_quota() {
        let toml = "[database]\nurl = \"sqlite::memory:\"";
        let builder = AppBuilder::new(Figment::from(Toml::string(toml)));
        let registry = Registry::new(vec![&Hello, &DatabasePlugin, &CachePlugin, &AUTH]);
        let doc = serde_json::to_value(&builder.build(&registry).unwrap().openapi).unwrap();
        let sign = &doc["paths"]["/plugins/hello/guestbook"]["post"];
        assert_eq!(sign["security"], serde_json::json!([{"bearer": []}]), "{sign}");
        let responses = &sign["responses"];
        for status in ["201", "401", "422", "429"] {
            assert!(responses[status].is_object(), "{status} missing: {responses}");
        }
        assert!(responses["429"]["headers"]["Retry-After"].is_object(), "{responses}");
        let list = &doc["paths"]["/plugins/hello/guestbook"]["get"];
        assert!(list["security"].is_null(), "reading needs no sign-in: {list}");
        let created_at = &doc["components"]["schemas"]["Entry"]["properties"]["created_at"];
        assert_eq!(created_at["format"], "date-time", "{created_at}");
    }

    #[test]
    fn the_default_quota_is_per_user() {
        assert_eq!(HelloConfig::default().sign_quota, Quota::per(10, 60).by(KeyBy::User));
    }
}
