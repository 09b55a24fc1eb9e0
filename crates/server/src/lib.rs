//! The xcore application server: the host. It is the one crate that knows sockets, config
//! files, signals and the async runtime, and it names no module but in the list of crates
//! it links.
//!
//! It loads the layered [`config`], sets up logging and metrics, builds the application
//! from every linked plugin (the modules — database, cache, auth — are plugins too), runs
//! their startup hooks (the database module applies the migrations there) and serves the
//! [`http`] edge until SIGINT or SIGTERM, then drains in-flight requests and runs the
//! shutdown hooks.

pub mod config;
mod error;
pub mod http;
pub mod logging;
pub mod metrics;
mod serve;
pub mod supervisor;

// Every plugin crate, modules included, is named here: the linker drops a crate nothing
// refers to, and its registration with it. `tests::the_exact_set_is_registered` guards
// this list.
use xcore_auth as _;
use xcore_cache as _;
use xcore_db as _;
use xcore_messaging as _;
use xcore_plugin_advanced_logging as _;
use xcore_plugin_hello as _;
use xcore_plugin_message_rate_limiter as _;
use xcore_plugin_moderation as _;
use xcore_plugin_quotas as _;
use xcore_plugin_welcome as _;

pub use error::Error;
pub use serve::{Server, inherited_listener, wait_for_signal};

use xcore_core::{App, AppBuilder, BuildError, Host, Registry};

/// The subcommands of the `xcore` binary itself; plugins add others (`migrate`).
pub const HOST_COMMANDS: [&str; 4] = ["serve", "plugins", "config", "help"];

/// Loads the configuration (see [`config::load`]). When the server's own sections are
/// invalid, the plugins' sections are checked too, with the server's defaults and offline,
/// so that one run names every problem in every section.
///
/// # Errors
///
/// [`Error::Config`] for a named file that does not exist or invalid server sections with
/// valid plugin sections; [`Error::Invalid`] when both are invalid.
pub fn load_config(file: Option<&std::path::Path>) -> Result<config::Loaded, Error> {
    let (figment, file) = config::layers(file)?;
    match config::Loaded::from_figment(figment.clone(), file.clone()) {
        Ok(loaded) => Ok(loaded),
        Err(error) => {
            let defaults = config::Loaded { config: config::Config::default(), figment, file };
            match build_app(&defaults, true) {
                Ok(_) => Err(error.into()),
                Err(build) => Err(Error::Invalid { config: error, build }),
            }
        }
    }
}

/// Builds the application from every plugin linked into this binary. `offline` builds it
/// for a command rather than to serve: modules connect to nothing they can avoid and write
/// no files (see [`Host::offline`]).
///
/// # Errors
///
/// Every problem with the plugins or their config, together.
pub fn build_app(loaded: &config::Loaded, offline: bool) -> Result<App, BuildError> {
    build_app_from(&Registry::linked(), loaded, offline)
}

/// As [`build_app`], from an explicit set of plugins.
///
/// # Errors
///
/// Every problem with the plugins or their config, together.
pub fn build_app_from(
    registry: &Registry,
    loaded: &config::Loaded,
    offline: bool,
) -> Result<App, BuildError> {
    let server = &loaded.config.server;
    let host = Host { environment: server.environment, data_dir: server.data_dir.clone(), offline };
    let mut builder = AppBuilder::new(loaded.figment.clone()).with_host(host);
    builder.host_sections(&config::HOST_SECTIONS).host_commands(&HOST_COMMANDS);
    for path in http::host_routes().paths() {
        builder.reserve_path(path);
    }
    builder.build(registry)
}

#[cfg(test)]
mod tests;
