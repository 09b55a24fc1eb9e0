//! The auth module: [`AuthPlugin`] reads `[auth]`, provides [`Auth`] and the request
//! [`Gate`] over its access tokens, registers the account tables and mounts `/auth`.
//!
//! It depends on the database module. The signing secret comes from `auth.secret`, key
//! files, or in `dev` a secret generated once into the host's data directory (see
//! [`keys`]); `prod` refuses to build without one. The key that seals two-factor secrets
//! (see [`crate::otp_key`]) follows the same rule with `auth.otp_secret_key`, and a
//! startup hook seals the secrets stored in clear before sealing began. Offline builds
//! (`xcore migrate`) use throw-away keys, never touch the data directory and seal
//! nothing.

use std::sync::{Arc, Mutex};

use xcore_core::{AppBuilder, Environment, Plugin, PluginError, PluginMeta, register_plugin};
use xcore_db::{Database, MigrationsExt as _};
use xcore_middleware::{Gate, RolePermissions};

use crate::keys::{self, SecretError};
use crate::notifier::NotifierKind;
use crate::{Auth, AuthConfig, MIGRATIONS, StoredOtpSecrets};

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
        let (secret, otp_key) = if host.offline {
            // Nothing is signed or sealed offline: no file to read or write, no key to load.
            (config.private_key_file, config.public_key_file) = (None, None);
            (keys::ephemeral_secret(), keys::ephemeral_otp_key())
        } else {
            let secret = keys::token_secret(&config, &host);
            let otp_key = keys::otp_key(&config, &host);
            match (secret, otp_key) {
                (Ok(secret), Ok(otp_key)) => (secret, otp_key),
                // Both missing in `prod`: say so at once.
                (Err(first), Err(second)) => {
                    return Err(both(secret_error(app, first), secret_error(app, second)));
                }
                (Err(error), _) | (_, Err(error)) => return Err(secret_error(app, error)),
            }
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
        let auth = Auth::new(db, &config, tokens, otp_key, notifier)
            .map_err(|error| PluginError::Other(error.to_string().into()))?;
        if !host.offline {
            let sealing = auth.clone();
            app.on_startup(move || async move {
                report(&sealing.seal_stored_otp_secrets().await?);
                Ok(())
            });
        }
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

/// `error` as the plugin reports it: a config problem when setting a key solves it.
fn secret_error(app: &AppBuilder, error: SecretError) -> PluginError {
    match error.config_key() {
        Some(key) => app.config_error(key, error.to_string()),
        None => PluginError::Other(error.into()),
    }
}

/// Both errors, as one when both are config problems.
fn both(first: PluginError, second: PluginError) -> PluginError {
    match (first, second) {
        (PluginError::Config(mut first), PluginError::Config(second)) => {
            first.extend(second);
            PluginError::Config(first)
        }
        (first, _) => first,
    }
}

/// Logs what the startup check of the stored two-factor secrets found.
fn report(found: &StoredOtpSecrets) {
    if found.sealed_now > 0 {
        tracing::info!(
            count = found.sealed_now,
            "two-factor secrets stored in clear are now encrypted"
        );
    }
    if let Some(first_error) = &found.first_error {
        // Enough ids to find the rows; a wrong key makes every one unreadable.
        let accounts: Vec<i64> = found.unreadable.iter().copied().take(20).collect();
        tracing::error!(
            count = found.unreadable.len(),
            ?accounts,
            first_error,
            "two-factor secrets cannot be read: these accounts cannot sign in with an \
             authenticator code until the key they were encrypted with is restored as \
             `auth.otp_secret_key` (recovery codes still work)"
        );
    }
}
