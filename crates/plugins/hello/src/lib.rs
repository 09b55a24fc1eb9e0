//! The example xcore plugin: copy this crate to start your own (`cargo xtask new-plugin`
//! does it for you).
//!
//! It shows each thing a plugin usually does, in the order it does it in
//! [`Plugin::build`]:
//!
//! 1. read its typed config section, `[plugins.hello]`, checked by its [`Section`] impl;
//! 2. take the services it needs from the modules it depends on (here the [`Database`] and
//!    the [`Cache`], listed in `dependencies` so they are built first), so a missing one
//!    fails the build instead of the first request;
//! 3. register its migrations, embedded for SQLite and PostgreSQL (the database module
//!    applies them at startup);
//! 4. mount its routes, documented for OpenAPI with `utoipa`, under `/plugins/hello`;
//! 5. register a startup hook.
//!
//! Routes:
//! - `GET /plugins/hello/` answers `{"message": "<greeting>"}`;
//! - `POST /plugins/hello/guestbook` signs the guestbook, `GET` lists the latest entries.
//!   The listing is cached in the `hello` cache namespace and deleted on every signature,
//!   so a reader never sees a listing older than the last write.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRef, Query, State};
use axum::http::StatusCode;
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
}

impl Default for HelloConfig {
    fn default() -> Self {
        Self { greeting: "Hello from xcore!".to_owned(), max_entries: 100 }
    }
}

/// What serde cannot check: reported with the key and where its value came from.
impl Section for HelloConfig {
    fn validate(&self, problems: &mut Problems) {
        problems.check(self.max_entries > 0, "max_entries", "must be at least 1");
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
            dependencies: &["cache", "database"],
            ..PluginMeta::new("hello")
        }
    }

    fn build(&self, app: &mut AppBuilder) -> Result<(), PluginError> {
        let config: HelloConfig = app.config()?;
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
                .routes(routes!(greet))
                .routes(routes!(list_entries, sign))
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

/// A guestbook entry.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, diesel::Queryable, Selectable)]
#[diesel(table_name = hello_guestbook)]
pub struct Entry {
    pub id: i64,
    pub name: String,
    pub message: String,
    pub created_at: chrono::NaiveDateTime,
}

/// What signing the guestbook takes.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEntry {
    /// 1 to 64 characters.
    pub name: String,
    /// 1 to 500 characters.
    pub message: String,
}

/// The latest guestbook entries, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Entries {
    pub entries: Vec<Entry>,
}

#[derive(Debug, Deserialize, IntoParams)]
struct ListParams {
    /// How many entries to return (default and maximum: `plugins.hello.max_entries`).
    limit: Option<u32>,
}

/// Lists the latest guestbook entries.
#[utoipa::path(get, path = "/guestbook", tag = "hello", params(ListParams),
    responses((status = 200, body = Entries)))]
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

/// The cache key of the latest `max_entries` entries.
const LATEST: &str = "guestbook:latest";

async fn latest_entries(db: &Database, limit: u32) -> Result<Entries, xcore_db::Error> {
    let mut conn = db.get().await?;
    // The query is written inside `with_conn!` so it is typed once per backend.
    let entries = with_conn!(conn, c => {
        hello_guestbook::table
            .select(Entry::as_select())
            .order((hello_guestbook::created_at.desc(), hello_guestbook::id.desc()))
            .limit(i64::from(limit))
            .load(c)
            .await
    })?;
    Ok(Entries { entries })
}

/// Signs the guestbook.
#[utoipa::path(post, path = "/guestbook", tag = "hello", request_body = NewEntry,
    responses((status = 201, body = Entry), (status = 422, description = "invalid name or message")))]
async fn sign(
    State(state): State<HelloState>,
    Json(entry): Json<NewEntry>,
) -> Result<(StatusCode, Json<Entry>), ApiError> {
    let name = entry.name.trim();
    let message = entry.message.trim();
    check_length("name", name, 64)?;
    check_length("message", message, 500)?;
    let created_at = chrono::Utc::now().naive_utc();
    let mut conn = state.db.get().await.map_err(database_error)?;
    let entry = with_conn!(conn, c => {
        diesel::insert_into(hello_guestbook::table)
            .values((
                hello_guestbook::name.eq(name),
                hello_guestbook::message.eq(message),
                hello_guestbook::created_at.eq(created_at),
            ))
            .returning(Entry::as_returning())
            .get_result(c)
            .await
    })
    .map_err(database_error)?;
    // The cached listing now misses the new entry. Should the cache be unreachable, the
    // entry is still saved: report it; the listing expires by itself.
    if let Err(error) = state.cache.delete(LATEST).await {
        tracing::warn!(plugin = "hello", %error, "guestbook listings not invalidated");
    }
    Ok((StatusCode::CREATED, Json(entry)))
}

fn check_length(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    let count = value.chars().count();
    if count == 0 || count > max {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            format!("`{field}` must be 1 to {max} characters, got {count}"),
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
    use axum::body::Body;
    use axum::http::Request;
    use figment::Figment;
    use figment::providers::{Format, Toml};
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    use xcore_cache::CachePlugin;
    use xcore_core::Registry;
    use xcore_db::DatabasePlugin;

    use super::*;

    /// The plugin with the modules it depends on, built and started the way the server
    /// does it, over an in-memory database.
    async fn app(config: &str) -> Result<axum::Router, xcore_core::BuildError> {
        let toml = format!("[database]\nurl = \"sqlite::memory:\"\n{config}");
        let builder = AppBuilder::new(Figment::from(Toml::string(&toml)));
        let mut app = builder.build(&Registry::new(vec![&Hello, &DatabasePlugin, &CachePlugin]))?;
        // The database module's startup hook applies the guestbook's migrations.
        app.start().await.unwrap();
        Ok(app.router())
    }

    async fn get(router: axum::Router, uri: &str) -> (u16, serde_json::Value) {
        let response =
            router.oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn greets_with_the_configured_greeting() {
        let router = app("[plugins.hello]\ngreeting = \"Hi there\"").await.unwrap();
        assert_eq!(
            get(router, "/plugins/hello/").await,
            (200, serde_json::json!({"message": "Hi there"}))
        );
    }

    #[tokio::test]
    async fn refuses_invalid_config() {
        let error = app("[plugins.hello]\nmax_entries = 0\ngreting = \"typo\"").await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "the application cannot be built (1 problem):\n  - plugin `hello`: invalid config: \
             `plugins.hello.greting`: unknown key `greting`; expected one of: greeting, max_entries \
             (from TOML source string)"
        );
        let error = app("[plugins.hello]\nmax_entries = 0").await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "the application cannot be built (1 problem):\n  - plugin `hello`: invalid config: \
             `plugins.hello.max_entries`: must be at least 1 (from TOML source string)"
        );
    }
}
