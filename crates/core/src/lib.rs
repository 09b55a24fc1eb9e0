//! The xcore plugin API.
//!
//! A plugin is a type implementing [`Plugin`], registered once with [`register_plugin!`]. At
//! startup the server collects every registered plugin through a single link-time slice,
//! orders them by their declared dependencies and lets each one contribute to an
//! [`AppBuilder`]: routes with their OpenAPI description, startup and shutdown hooks,
//! readiness probes, command-line commands, and anything other crates add through extension
//! traits over the builder's typed storage, which they read back in a second phase
//! ([`Plugin::finish`]) once every plugin is built. Modules (the database, the cache, auth)
//! are plugins too: they read their own top-level config section and provide their
//! services as resources to the plugins that depend on them.
//! Building checks everything at once and fails with one [`BuildError`] that lists every
//! problem, so a misconfigured server never starts half-way.
//!
//! This crate knows nothing of sockets, drivers or config files: it is the contract between
//! plugins and whoever hosts them.

mod app;
pub mod config;
mod error;
mod extensions;
pub mod files;
mod host;
pub mod http;
pub mod lifecycle;
mod plugin;
mod registry;
mod routes;

pub use app::{App, AppBuilder, PluginInfo, PluginRouter};
pub use error::{BuildError, PluginError, Problem, Result};
pub use extensions::Extensions;
pub use host::{Environment, Host};
pub use lifecycle::{Command, Hook, HookError, Probe, ProbeResult, Scrape};
pub use plugin::{FnPlugin, Plugin, PluginMeta};
pub use registry::{PLUGINS, Registry};
pub use routes::Routes;

/// Re-exports used by [`register_plugin!`], so plugin crates need no direct `linkme` dependency.
#[doc(hidden)]
pub mod __private {
    pub use linkme;
}

/// Registers a plugin with the server.
///
/// The argument is a constant expression of a type implementing [`Plugin`]; it is placed in
/// the one link-time slice [`PLUGINS`] that the server reads at startup. A crate is only
/// linked when something references it, so the server names every plugin crate explicitly.
///
/// ```ignore
/// pub struct Hello;
/// impl xcore_core::Plugin for Hello { /* ... */ }
/// xcore_core::register_plugin!(Hello);
/// ```
#[macro_export]
macro_rules! register_plugin {
    ($plugin:expr) => {
        const _: () = {
            #[$crate::__private::linkme::distributed_slice($crate::PLUGINS)]
            #[linkme(crate = $crate::__private::linkme)]
            static PLUGIN: &'static dyn $crate::Plugin = &$plugin;
        };
    };
}
