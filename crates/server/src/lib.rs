//! The xcore application server: the one crate that knows sockets, config files, signals
//! and the async runtime.
//!
//! It loads the layered [`config`], builds the application from every linked plugin,
//! applies their migrations, runs their startup hooks and serves the [`http`] stack until
//! SIGINT or SIGTERM, then drains in-flight requests and runs the shutdown hooks.

pub mod config;
mod error;
pub mod http;
pub mod keys;
pub mod logging;
pub mod metrics;
mod serve;

// Every plugin crate is named here: the linker drops a crate nothing refers to, and its
// registration with it. `tests::the_exact_set_is_registered` guards this list.
use xcore_plugin_hello as _;

pub use error::Error;
pub use serve::{Server, inherited_listener, wait_for_signal};

use figment::Figment;
use xcore_auth::Auth;
use xcore_auth::notifier::NotifierKind;
use xcore_cache::{BackendKind, Cache, CacheConfig};
use xcore_core::{App, AppBuilder, BuildError, Registry};
use xcore_db::{Database, MigrationsExt as _};

/// The services the server builds from its configuration and offers to plugins as
/// resources: `app.require::<Database>()`, `app.require::<Cache>()`,
/// `app.require::<Auth>()`.
#[derive(Debug, Clone)]
pub struct Services {
    pub db: Database,
    pub cache: Cache,
    pub auth: Auth,
}

impl Services {
    /// The services `config` describes. Nothing is connected yet.
    ///
    /// # Errors
    ///
    /// When the database or cache settings cannot be used.
    pub fn new(config: &config::Config) -> Result<Self, Error> {
        let db = Database::new(&config.database)?;
        let auth = auth(&db, config, &keys::token_secret(config)?)?;
        if config.server.environment == config::Environment::Prod
            && config.auth.notifier.kind == NotifierKind::Log
        {
            tracing::warn!(
                "password reset codes are written to the log: set `auth.notifier.kind = \"smtp\"`"
            );
        }
        Ok(Self { db, cache: Cache::new(&config.cache)?, auth })
    }

    /// As [`new`](Self::new), for commands that build the application without serving
    /// (`migrate`, `plugins`): the cache stays in memory, so they never connect to Redis.
    ///
    /// # Errors
    ///
    /// When the database settings cannot be used.
    pub fn offline(config: &config::Config) -> Result<Self, Error> {
        let cache = CacheConfig { backend: BackendKind::Memory, ..config.cache.clone() };
        let db = Database::new(&config.database)?;
        let mut auth_config = config.auth.clone();
        (auth_config.private_key_file, auth_config.public_key_file) = (None, None);
        let offline = config::Config { auth: auth_config, ..config.clone() };
        let auth = auth(&db, &offline, &keys::ephemeral_secret())?;
        Ok(Self { db, cache: Cache::new(&cache)?, auth })
    }
}

/// The account service `config` describes, signing with `secret` unless key files are
/// configured.
fn auth(db: &Database, config: &config::Config, secret: &[u8]) -> Result<Auth, Error> {
    let tokens = config.auth.access_tokens(secret).map_err(|error| {
        Error::Config(vec![xcore_core::config::ConfigError {
            key: "auth".to_owned(),
            origin: None,
            message: error.to_string(),
        }])
    })?;
    let notifier =
        config.auth.notifier.notifier().map_err(|error| Error::Auth(error.to_string()))?;
    Auth::new(db.clone(), &config.auth, tokens, notifier)
        .map_err(|error| Error::Auth(error.to_string()))
}

/// Builds the application from every plugin linked into this binary, with `services` as
/// resources plugins can require.
///
/// # Errors
///
/// Every problem with the plugins or their config, together.
pub fn build_app(figment: &Figment, services: &Services) -> Result<App, BuildError> {
    build_app_from(&Registry::linked(), figment, services)
}

/// As [`build_app`], from an explicit set of plugins.
///
/// # Errors
///
/// Every problem with the plugins or their config, together.
pub fn build_app_from(
    registry: &Registry,
    figment: &Figment,
    services: &Services,
) -> Result<App, BuildError> {
    let mut builder = AppBuilder::new(figment.clone());
    for path in http::RESERVED_PATHS {
        builder.reserve_path(path);
    }
    // The server's own tables come before any plugin's.
    builder.add_migrations(&xcore_auth::MIGRATIONS);
    builder.insert_resource(services.db.clone());
    builder.insert_resource(services.cache.clone());
    builder.insert_resource(services.auth.clone());
    builder.build(registry)
}

#[cfg(test)]
mod tests;
