//! Helpers for the tests of the messaging module and of the plugins extending it: an
//! application built and started as the server does it, with the modules the engine
//! needs and a stand-in for the auth module.

use std::collections::HashMap;

use figment::Figment;
use figment::providers::{Format, Toml};
use xcore_core::{App, AppBuilder, BuildError, FnPlugin, Plugin, PluginMeta, Registry};
use xcore_db::DatabasePlugin;
use xcore_middleware::{Authenticate, CurrentUser, Gate, Rejection, RolePermissions};

use crate::{Engine, MessagingPlugin};

/// Bearer tokens `user:<id>` stand for account `<id>`; `mod:<id>` for one with the
/// `moderator` role, which grants `messaging.moderate`; `until:<unix seconds>:<id>` for
/// account `<id>` until then, expired after. Anything else is invalid.
#[derive(Debug, Clone, Copy)]
pub struct Tokens;

impl Authenticate for Tokens {
    fn authenticate(&self, token: &str) -> Result<CurrentUser, Rejection> {
        let (role, id) = token.split_once(':').ok_or(Rejection::Invalid)?;
        if role == "until" {
            let (until, id) = id.split_once(':').ok_or(Rejection::Invalid)?;
            let until: u64 = until.parse().map_err(|_| Rejection::Invalid)?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_secs());
            if now >= until {
                return Err(Rejection::Expired);
            }
            let user_id = id.parse().map_err(|_| Rejection::Invalid)?;
            return Ok(CurrentUser { user_id, session_id: "s".to_owned(), roles: Vec::new() });
        }
        let user_id = id.parse().map_err(|_| Rejection::Invalid)?;
        let roles = match role {
            "user" => Vec::new(),
            "mod" => vec!["moderator".to_owned()],
            _ => return Err(Rejection::Invalid),
        };
        Ok(CurrentUser { user_id, session_id: "s".to_owned(), roles })
    }
}

/// The gate [`AUTH`] provides: [`Tokens`], and `moderator` granting `messaging.moderate`.
pub fn gate() -> Gate {
    let grants = HashMap::from([("moderator".to_owned(), vec!["messaging.moderate".to_owned()])]);
    Gate::new(Tokens, RolePermissions::new(grants))
}

/// Stands in for the auth module: provides [`gate`] under its name.
pub static AUTH: FnPlugin =
    FnPlugin::new(PluginMeta { section: Some("auth"), ..PluginMeta::new("auth") }, |app| {
        app.insert_resource(gate());
        Ok(())
    });

/// `plugins` with the messaging and database modules and [`AUTH`].
pub fn registry(plugins: &[&'static dyn Plugin]) -> Registry {
    let mut all: Vec<&'static dyn Plugin> = vec![&MessagingPlugin, &DatabasePlugin, &AUTH];
    all.extend_from_slice(plugins);
    Registry::new(all)
}

/// `plugins` with the modules they need, configured by `config` on the database at
/// `database`, built and started as the server does it (the database module's startup
/// hook applies every migration).
///
/// # Errors
///
/// What building reports.
///
/// # Panics
///
/// When a startup hook fails.
#[allow(clippy::panic)]
pub async fn app_on(
    plugins: &[&'static dyn Plugin],
    database: &str,
    config: &str,
) -> Result<App, BuildError> {
    let toml = format!("[database]\nurl = \"{database}\"\n{config}");
    let mut app = AppBuilder::new(Figment::from(Toml::string(&toml))).build(&registry(plugins))?;
    if let Err((plugin, error)) = app.start().await {
        panic!("starting {plugin} failed: {error}");
    }
    Ok(app)
}

/// The engine of an application built by [`app_on`].
///
/// # Panics
///
/// When the application has no messaging module.
#[allow(clippy::expect_used)]
pub fn engine(app: &App) -> Engine {
    app.extensions.get::<Engine>().expect("the messaging module is built").clone()
}
