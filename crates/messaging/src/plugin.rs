//! The messaging module: [`MessagingPlugin`] reads `[messaging]`, provides the [`Engine`],
//! registers the messaging tables, mounts `/messaging` and the WebSocket gateway at `/ws`,
//! adds the `xcore messaging export|import` command, and installs the hooks other plugins
//! registered through [`MessagingExt`].

use xcore_core::{AppBuilder, Plugin, PluginError, PluginMeta, register_plugin};
use xcore_db::{Database, MigrationsExt as _};
use xcore_middleware::Gate;

use crate::{Engine, HookSet, MIGRATIONS, MessagingConfig};

/// The messaging module. Plugins that extend it list `"messaging"` in their dependencies
/// and add hooks in their `build` with [`MessagingExt::messaging_hooks`], or take the
/// engine with `app.require::<Engine>()`.
#[derive(Debug, Clone, Copy)]
pub struct MessagingPlugin;

register_plugin!(MessagingPlugin);

/// Hooks for the messaging engine, from any plugin's `build`.
pub trait MessagingExt {
    /// The hooks the messaging module installs once every plugin is built.
    fn messaging_hooks(&mut self) -> &mut HookSet;
}

impl MessagingExt for AppBuilder {
    fn messaging_hooks(&mut self) -> &mut HookSet {
        self.extensions_mut().get_or_default::<HookSet>()
    }
}

impl Plugin for MessagingPlugin {
    fn meta(&self) -> PluginMeta {
        PluginMeta {
            version: env!("CARGO_PKG_VERSION"),
            description: "Users and presence, groups, direct conversations, durable messages, hooks and the /messaging API",
            author: "xcore developers",
            // Every route needs a signed-in caller: the auth module's gate.
            dependencies: &["auth", "database"],
            section: Some("messaging"),
            prefix: Some("/messaging"),
            ..PluginMeta::new("messaging")
        }
    }

    fn build(&self, app: &mut AppBuilder) -> Result<(), PluginError> {
        let config: MessagingConfig = app.config()?;
        let gate = app.require::<Gate>()?.clone();
        let engine = Engine::new(app.require::<Database>()?.clone(), config);
        app.add_migrations(&MIGRATIONS);
        app.insert_resource(engine.clone());
        let commands = engine.clone();
        app.command(
            "messaging",
            "Export or import the engine's state: messaging export [FILE] | import FILE",
            |args| crate::state::run_command(commands, args),
        );
        if engine.config().gateway.enabled {
            let gateway = crate::Gateway::new(engine.clone(), gate.clone());
            app.endpoint("/ws", gateway.routes())?;
            app.directory("/socket.io", gateway.socketio_routes())?;
            app.insert_resource(gateway.clone());
            let started = gateway.clone();
            app.on_startup(move || async move { Ok(started.start().await?) });
            // Sockets are not requests: the server's drain does not wait for them.
            app.on_shutdown(move || async move {
                gateway.shutdown(std::time::Duration::from_secs(5)).await;
                Ok(())
            });
        }
        app.routes(crate::http::router(engine, gate));
        Ok(())
    }

    fn finish(&self, app: &mut AppBuilder) -> Result<(), PluginError> {
        let hooks = app.extensions_mut().remove::<HookSet>().unwrap_or_default();
        if !hooks.is_empty() {
            tracing::debug!(plugin = "messaging", hooks = ?hooks, "messaging hooks installed");
        }
        app.require::<Engine>()?.install(hooks);
        Ok(())
    }
}
