//! The auth module: [`AuthPlugin`] reads `[auth]`, provides [`Auth`] and the request
//! [`Gate`] over its access tokens, registers the account tables and mounts `/auth`.
//!
//! It depends on the database module. The signing secret comes from `auth.secret`, key
//! files, or in `dev` a secret generated once into the host's data directory (see
//! [`keys`]); `prod` refuses to build without one. Offline builds
//! (`xcore migrate`) sign with a throw-away secret and never touch the data directory.

use std::sync::{Arc, Mutex};

use xcore_core::{AppBuilder, Environment, Plugin, PluginError, PluginMeta, register_plugin};
use xcore_db::{Database, MigrationsExt as _};
use xcore_middleware::{Gate, RolePermissions};

use crate::keys::{self, SecretError};
use crate::notifier::NotifierKind;
use crate::{Auth, AuthConfig, MIGRATIONS};

/// The auth module. Plugins that need a signed-in caller use `CurrentUser` or `require`
/// from `xcore-middleware`; the ones that call the account flows list `"auth"` in their
/// dependencies and take it with `app.require::<Auth>()`.
#[derive(Debug, Clone, Copy)]
pub struct AuthPlugin;

register_plugin!(AuthPlugin);

impl Plugin for AuthPlugin {
    fn meta(&self) -> PluginMeta {
        PluginMeta {
            version: env!("CARGO_PKG_VERSION"),
            description: "Accounts, sessions, two-factor authentication and the /auth API",
            author: "xcore developers",
            dependencies: &["database"],
            section: Some("auth"),
            prefix: Some("/auth"),
            ..PluginMeta::new("auth")
        }
    }

    fn build(&self, app: &mut AppBuilder) -> Result<(), PluginError> {
        let mut config: AuthConfig = app.config()?;
        let host = app.host().clone();
        let secret = if host.offline {
            // Nothing is signed offline: no file to read or write, no key to load.
            (config.private_key_file, config.public_key_file) = (None, None);
            keys::ephemeral_secret()
        } else {
            keys::token_secret(&config, &host).map_err(|error| match error {
                SecretError::Missing | SecretError::Short(_) => {
                    app.config_error("secret", error.to_string())
                }
                SecretError::Io { .. } => PluginError::Other(error.into()),
            })?
        };
        let key = if config.uses_key_files() { "private_key_file" } else { "secret" };
        let tokens = config
            .access_tokens(&secret)
            .map_err(|error| app.config_error(key, error.to_string()))?;
        let notifier =
            config.notifier.notifier().map_err(|error| PluginError::Other(error.into()))?;
        if host.environment == Environment::Prod
            && !host.offline
            && config.notifier.kind == NotifierKind::Log
        {
            tracing::warn!(
                "password reset codes are written to the log: set `auth.notifier.kind = \"smtp\"`"
            );
        }
        let db = app.require::<Database>()?.clone();
        let auth = Auth::new(db, &config, tokens, notifier)
            .map_err(|error| PluginError::Other(error.to_string().into()))?;
        app.add_migrations(&MIGRATIONS);
        app.insert_resource(Gate::new(auth.authenticator(), RolePermissions::default()));
        app.insert_resource(auth.clone());
        app.routes(crate::http::router(auth.clone()));
        follow_revocations(app, &auth);
        let commands = auth;
        app.command(
            "auth",
            "Disable, enable or delete an account: auth disable|enable|delete EMAIL",
            |args| crate::command::run(commands, args),
        );
        Ok(())
    }
}

/// Reads the whole revocation log before the server serves (a restarted node refuses what
/// was ended before it started), then follows it until shutdown.
fn follow_revocations(app: &mut AppBuilder, auth: &Auth) {
    let follower = Arc::new(Mutex::new(None::<tokio::task::JoinHandle<()>>));
    let (startup, stop) = (auth.clone(), follower.clone());
    app.on_startup(move || async move {
        startup.sync_revocations().await?;
        let task = tokio::spawn(startup.follow_revocations());
        if let Ok(mut follower) = follower.lock() {
            *follower = Some(task);
        }
        Ok(())
    });
    app.on_shutdown(move || async move {
        if let Some(task) = stop.lock().ok().and_then(|mut follower| follower.take()) {
            task.abort();
        }
        Ok(())
    });
}
