//! The [`Plugin`] trait and its metadata.

use crate::{AppBuilder, PluginError};

/// What a plugin says about itself. Everything is `'static` so metadata can live in a
/// constant next to the plugin type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginMeta {
    /// Unique name: lowercase letters, digits, `-` and `_`. Unless [`section`](Self::section)
    /// and [`prefix`](Self::prefix) say otherwise, it names the config section
    /// (`[plugins.<name>]`) and the route prefix (`/plugins/<name>`).
    pub name: &'static str,
    /// Semantic version, usually `env!("CARGO_PKG_VERSION")`.
    pub version: &'static str,
    /// One line for `xcore plugins` and the admin interface.
    pub description: &'static str,
    /// Who maintains it.
    pub author: &'static str,
    /// Names of plugins that must be built (and started) before this one.
    pub dependencies: &'static [&'static str],
    /// A module's own top-level config section (`auth` reads `[auth]`) instead of
    /// `[plugins.<name>]`.
    pub section: Option<&'static str>,
    /// Where the plugin's routes are mounted (`/auth`) instead of `/plugins/<name>`.
    pub prefix: Option<&'static str>,
}

impl PluginMeta {
    /// Metadata with the given name and nothing else; fill the other fields with struct
    /// update syntax.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            version: "0.0.0",
            description: "",
            author: "",
            dependencies: &[],
            section: None,
            prefix: None,
        }
    }

    /// The config section the plugin reads: its own top-level one, or `plugins.<name>`.
    pub fn section_key(&self) -> std::borrow::Cow<'static, str> {
        match self.section {
            Some(section) => section.into(),
            None => format!("plugins.{}", self.name).into(),
        }
    }
}

/// A unit of functionality that contributes to the application.
///
/// Modelled on bevy's `Plugin`: all a plugin does happens inside [`Plugin::build`], through
/// the [`AppBuilder`] it is given. Returning an error does not stop the other plugins from
/// being built; every problem is reported together.
pub trait Plugin: Send + Sync + 'static {
    /// The plugin's metadata.
    fn meta(&self) -> PluginMeta;

    /// Adds the plugin's routes, hooks and extensions to the application.
    ///
    /// # Errors
    ///
    /// Returns an error when the plugin cannot be set up, for example because its config
    /// section is invalid or a service it needs is missing.
    fn build(&self, app: &mut AppBuilder) -> Result<(), PluginError>;

    /// Runs after every plugin has been built, in the same order: the place to read what
    /// other plugins registered through this plugin's extension trait (the database
    /// collects migrations here, the scheduler jobs, admin permissions). Nothing a plugin
    /// adds to the builder after this phase is seen by the plugins before it, so add routes
    /// and resources in [`build`](Self::build). The default does nothing.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build); every problem is reported together.
    fn finish(&self, app: &mut AppBuilder) -> Result<(), PluginError> {
        let _ = app;
        Ok(())
    }
}

/// A plugin made of metadata and a plain function, for plugins that hold no state.
///
/// ```ignore
/// fn build(app: &mut AppBuilder) -> Result<(), PluginError> { Ok(()) }
/// xcore_core::register_plugin!(FnPlugin::new(PluginMeta::new("tiny"), build));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct FnPlugin {
    meta: PluginMeta,
    build: fn(&mut AppBuilder) -> Result<(), PluginError>,
}

impl FnPlugin {
    /// Wraps `build` as a plugin described by `meta`.
    pub const fn new(
        meta: PluginMeta,
        build: fn(&mut AppBuilder) -> Result<(), PluginError>,
    ) -> Self {
        Self { meta, build }
    }
}

impl Plugin for FnPlugin {
    fn meta(&self) -> PluginMeta {
        self.meta
    }

    fn build(&self, app: &mut AppBuilder) -> Result<(), PluginError> {
        (self.build)(app)
    }
}
