//! [`AppBuilder`], what plugins build into, and [`App`], what the host runs.
//!
//! This module is the builder's surface: what a plugin may call in
//! [`Plugin::build`](crate::Plugin::build) and [`Plugin::finish`](crate::Plugin::finish).
//! How the plugins are ordered, built, finished and mounted is in `build`.

mod build;
mod mount;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::future::Future;

use axum::Router;
use figment::Figment;
use serde::Serialize;
use utoipa::openapi::OpenApi;

use crate::config::{self, Section};
use crate::lifecycle::{Command, Hook, HookError, Probe, ProbeResult, Scrape};
use crate::{Extensions, Host, PluginError, PluginMeta, Routes};

/// What one plugin contributed while it was being built.
#[derive(Default)]
struct Contribution {
    prefix: Option<String>,
    routes: Option<Routes>,
    /// Routes served at paths of their own, outside the prefix.
    /// Paths served outside the prefix, and whether their `/` is the bare path.
    endpoints: Vec<(String, Routes, bool)>,
}

/// A hook with the position of its plugin in the build order, so hooks run in the
/// plugins' order whichever phase registered them.
struct Ordered<T> {
    position: usize,
    item: T,
}

/// The builder every plugin receives in [`Plugin::build`](crate::Plugin::build) and
/// [`Plugin::finish`](crate::Plugin::finish).
///
/// Besides routes, hooks and config, it holds an [`Extensions`] type map. Modules put
/// their services there (the database, the cache, auth) for the plugins that depend on them
/// to [`require`](Self::require), and crates that `xcore-core` does not know keep their own
/// builder state there behind an extension trait; see `ARCHITECTURE.md`.
pub struct AppBuilder {
    figment: Figment,
    host: Host,
    host_sections: Vec<&'static str>,
    host_commands: Vec<&'static str>,
    extensions: Extensions,
    reserved: Vec<String>,
    /// The plugin being built or finished, and its position in the build order.
    current: Option<(usize, PluginMeta)>,
    contributions: BTreeMap<&'static str, Contribution>,
    startup: Vec<Ordered<Hook>>,
    shutdown: Vec<Ordered<Hook>>,
    probes: Vec<Ordered<Probe>>,
    scrapes: Vec<Scrape>,
    commands: Vec<Command>,
    /// The effective value of every section read, by dotted key.
    sections: BTreeMap<String, serde_json::Value>,
}

impl AppBuilder {
    /// A builder reading config from `figment`, the whole layered config: modules read
    /// their top-level sections, plugins `[plugins.<name>]`.
    pub fn new(figment: Figment) -> Self {
        Self {
            figment,
            host: Host::default(),
            host_sections: Vec::new(),
            host_commands: Vec::new(),
            extensions: Extensions::default(),
            reserved: Vec::new(),
            current: None,
            contributions: BTreeMap::new(),
            startup: Vec::new(),
            shutdown: Vec::new(),
            probes: Vec::new(),
            scrapes: Vec::new(),
            commands: Vec::new(),
            sections: BTreeMap::new(),
        }
    }

    /// Tells plugins about the run (environment, data directory, whether it is offline).
    #[must_use]
    pub fn with_host(mut self, host: Host) -> Self {
        self.host = host;
        self
    }

    /// What the host said about the run.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Declares top-level config sections the host reads itself (`server`, `log`), so they
    /// are not reported as unknown. Every other top-level section must belong to a
    /// registered plugin.
    pub fn host_sections(&mut self, sections: &[&'static str]) -> &mut Self {
        self.host_sections.extend_from_slice(sections);
        self
    }

    /// Declares the subcommands the host's command line has itself (`serve`), so a plugin
    /// [`command`](Self::command) of the same name is reported.
    pub fn host_commands(&mut self, commands: &[&'static str]) -> &mut Self {
        self.host_commands.extend_from_slice(commands);
        self
    }

    /// Declares a path that the host serves itself (such as `/health`), so that a plugin
    /// mounted over it is reported as a route conflict.
    pub fn reserve_path(&mut self, path: impl Into<String>) -> &mut Self {
        self.reserved.push(path.into());
        self
    }

    /// The builder's typed storage.
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// The builder's typed storage, mutably: extension traits of other crates keep their
    /// state here.
    pub fn extensions_mut(&mut self) -> &mut Extensions {
        &mut self.extensions
    }

    /// Adds a service for the plugins built after this one to [`require`](Self::require).
    pub fn insert_resource<T: Send + Sync + 'static>(&mut self, value: T) -> &mut Self {
        self.extensions.insert(value);
        self
    }

    /// A service the plugin cannot work without.
    ///
    /// # Errors
    ///
    /// [`PluginError::MissingService`] when no plugin built before this one provides a `T`
    /// (declare the providing module in `dependencies`): the plugin then fails to build
    /// instead of failing on its first request.
    pub fn require<T: Send + Sync + 'static>(&self) -> Result<&T, PluginError> {
        self.extensions.get().ok_or(PluginError::MissingService(std::any::type_name::<T>()))
    }

    /// The metadata of the plugin being built, if any.
    pub fn current_plugin(&self) -> Option<&PluginMeta> {
        self.current.as_ref().map(|(_, meta)| meta)
    }

    fn current_name(&self) -> &'static str {
        self.current.map_or("", |(_, meta)| meta.name)
    }

    fn position(&self) -> usize {
        self.current.map_or(usize::MAX, |(position, _)| position)
    }

    /// The whole layered config.
    pub fn figment(&self) -> &Figment {
        &self.figment
    }

    /// The current plugin's config section as a `T`: its own top-level section for a
    /// module that names one in [`PluginMeta::section`], `[plugins.<name>]` otherwise. A
    /// missing section is read as an empty table so `T`'s serde defaults apply; give `T`
    /// `#[serde(deny_unknown_fields)]` so typos are reported. The effective values are kept
    /// for `xcore config show`.
    ///
    /// # Errors
    ///
    /// [`PluginError::Config`] naming every invalid or unknown key, and every problem
    /// [`Section::validate`] found, with where the value came from.
    pub fn config<T: Section>(&mut self) -> Result<T, PluginError> {
        let key = self.section_key();
        let section: T = config::read(&self.figment, &key)?;
        if let Ok(value) = serde_json::to_value(&section) {
            self.sections.insert(key, value);
        }
        Ok(section)
    }

    /// A config problem with `key` (relative to the current plugin's section) that only
    /// the plugin can see, such as a value that contradicts the host's environment; the
    /// error names the full key and where its value came from.
    pub fn config_error(&self, key: &str, message: impl Into<String>) -> PluginError {
        let mut problems = config::Problems::default();
        problems.add(key, message);
        PluginError::Config(problems.into_errors(&self.figment, &self.section_key()))
    }

    fn section_key(&self) -> String {
        self.current.map_or_else(String::new, |(_, meta)| meta.section_key().into_owned())
    }

    /// Mounts the current plugin's routes under its prefix (`/plugins/<name>` unless
    /// [`PluginMeta::prefix`] or [`set_prefix`](Self::set_prefix) says otherwise): the
    /// plugin's `/` is served at `<prefix>/`. The OpenAPI description of routes added with
    /// `utoipa_axum::routes!` goes into the application's document; calling it more than
    /// once merges the routes.
    pub fn routes(&mut self, router: Routes) -> &mut Self {
        let contribution = self.contribution();
        contribution.routes = Some(match contribution.routes.take() {
            Some(existing) => existing.merge(router),
            None => router,
        });
        self
    }

    /// Mounts the current plugin's routes under `prefix` instead of its default.
    ///
    /// # Errors
    ///
    /// [`PluginError::InvalidPrefix`] unless `prefix` starts with `/`, does not end with
    /// `/`, is not the root, and has no empty, parameter or wildcard segments.
    pub fn set_prefix(&mut self, prefix: &str) -> Result<&mut Self, PluginError> {
        mount::validate_prefix(prefix)?;
        self.contribution().prefix = Some(prefix.to_owned());
        Ok(self)
    }

    /// Serves `routes` at `path`, outside the plugin's prefix, with their `/` at exactly
    /// `path`: for an endpoint clients reach by a fixed path and cannot follow a redirect
    /// to, such as a WebSocket gateway at `/ws`. `path` follows the prefix rules and is
    /// checked against every prefix, endpoint and host path like one; its OpenAPI
    /// description goes into the document.
    ///
    /// # Errors
    ///
    /// [`PluginError::InvalidPrefix`] when `path` breaks the prefix rules.
    pub fn endpoint(&mut self, path: &str, routes: Routes) -> Result<&mut Self, PluginError> {
        mount::validate_prefix(path)?;
        self.contribution().endpoints.push((path.to_owned(), routes, true));
        Ok(self)
    }

    /// Serves `routes` under `path/`, outside the plugin's prefix: as
    /// [`endpoint`](Self::endpoint), but their `/` is `path/`, with its slash (and the bare
    /// `path` is not served): for a protocol whose clients ask for a fixed directory, such
    /// as Socket.IO's `/socket.io/`.
    ///
    /// # Errors
    ///
    /// [`PluginError::InvalidPrefix`] when `path` breaks the prefix rules.
    pub fn directory(&mut self, path: &str, routes: Routes) -> Result<&mut Self, PluginError> {
        mount::validate_prefix(path)?;
        self.contribution().endpoints.push((path.to_owned(), routes, false));
        Ok(self)
    }

    /// Runs `hook` when the application starts, after the hooks of the plugins this one
    /// depends on (also when registered in [`Plugin::finish`](crate::Plugin::finish)). A
    /// failing startup hook stops the server from starting.
    pub fn on_startup<F, Fut>(&mut self, hook: F) -> &mut Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), HookError>> + Send + 'static,
    {
        let item = Hook::new(self.current_name(), hook);
        self.startup.push(Ordered { position: self.position(), item });
        self
    }

    /// Runs `hook` when the application stops, before the hooks of the plugins this one
    /// depends on. A failing shutdown hook is logged and the others still run.
    pub fn on_shutdown<F, Fut>(&mut self, hook: F) -> &mut Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), HookError>> + Send + 'static,
    {
        let item = Hook::new(self.current_name(), hook);
        self.shutdown.push(Ordered { position: self.position(), item });
        self
    }

    /// Adds a readiness check run on every `/ready`: `check` answers `Ok` with a short
    /// description (`sqlite`) or `Err` with what is wrong. When an `essential` check fails
    /// the server is unready (503); when another fails it is degraded but ready.
    pub fn readiness<F, Fut>(&mut self, name: &'static str, essential: bool, check: F) -> &mut Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ProbeResult> + Send + 'static,
    {
        let item = Probe::new(name, self.current_name(), essential, check);
        self.probes.push(Ordered { position: self.position(), item });
        self
    }

    /// Runs `update` before every rendering of `/metrics`, to set gauges that are read
    /// rather than counted.
    pub fn on_scrape(&mut self, update: impl Fn() + Send + Sync + 'static) -> &mut Self {
        self.scrapes.push(Scrape::new(self.current_name(), update));
        self
    }

    /// Adds the subcommand `name` to the host's command line (`xcore <name> [args…]`). The
    /// host builds the application offline (see [`Host::offline`]) and runs `run` with the
    /// arguments after the name; a name taken by the host or another plugin is a build
    /// problem.
    pub fn command<F, Fut>(&mut self, name: &'static str, about: &'static str, run: F) -> &mut Self
    where
        F: FnOnce(Vec<String>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), HookError>> + Send + 'static,
    {
        self.commands.push(Command::new(name, about, self.current_name(), run));
        self
    }

    fn contribution(&mut self) -> &mut Contribution {
        let name = self.current_name();
        self.contributions.entry(name).or_default()
    }
}

impl std::fmt::Debug for AppBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppBuilder")
            .field("current", &self.current.map(|(_, meta)| meta.name))
            .field("extensions", &self.extensions)
            .finish_non_exhaustive()
    }
}

/// What `xcore plugins` and the admin interface show about a registered plugin.
#[derive(Debug, Clone, Serialize)]
pub struct PluginInfo {
    pub name: &'static str,
    pub version: &'static str,
    pub description: &'static str,
    pub author: &'static str,
    pub dependencies: Vec<&'static str>,
    pub enabled: bool,
    /// Its config section (`auth`, `plugins.hello`).
    pub section: String,
    /// Where its routes are mounted; `None` for a disabled plugin or one without routes.
    pub prefix: Option<String>,
}

/// A built application: the plugins' merged routes and OpenAPI document, their hooks,
/// probes and commands in build order, and the builder's extensions for the host to read.
pub struct App {
    /// Every registered plugin, sorted by name, enabled or not.
    pub plugins: Vec<PluginInfo>,
    /// Enabled plugins in the order they were built and are started.
    pub order: Vec<&'static str>,
    /// Each plugin's routes, already under its prefix, in build order; kept apart so the
    /// host's middleware can tell which plugin a request is for.
    pub routers: Vec<PluginRouter>,
    /// The OpenAPI paths and schemas of those routes.
    pub openapi: OpenApi,
    /// Startup hooks, in build order.
    pub startup: Vec<Hook>,
    /// Shutdown hooks, in build order; run them in reverse.
    pub shutdown: Vec<Hook>,
    /// Readiness checks, in build order.
    pub probes: Vec<Probe>,
    /// Gauge updates to run before rendering metrics.
    pub scrapes: Vec<Scrape>,
    /// Subcommands the plugins add to the host's command line, by name.
    pub commands: Vec<Command>,
    /// The effective value of every config section the plugins read, by dotted key.
    pub sections: BTreeMap<String, serde_json::Value>,
    /// What plugins and extension traits left in the builder's storage.
    pub extensions: Extensions,
}

impl App {
    /// All the plugins' routes in one router.
    pub fn router(&self) -> Router {
        self.routers.iter().fold(Router::new(), |all, mounted| all.merge(mounted.router.clone()))
    }

    /// Runs the startup hooks in order, stopping at the first failure.
    ///
    /// # Errors
    ///
    /// The failing hook's plugin and error.
    pub async fn start(&mut self) -> Result<(), (&'static str, HookError)> {
        for hook in std::mem::take(&mut self.startup) {
            let plugin = hook.plugin;
            hook.run().await.map_err(|error| (plugin, error))?;
        }
        Ok(())
    }
}

/// One plugin's mounted routes.
#[derive(Debug, Clone)]
pub struct PluginRouter {
    pub plugin: &'static str,
    /// Every path template the router matches, in axum's syntax (`/plugins/blog/{id}`):
    /// what the host labels metrics and finds rate limits by.
    pub paths: Vec<String>,
    pub router: Router,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("order", &self.order)
            .field("extensions", &self.extensions)
            .finish_non_exhaustive()
    }
}
