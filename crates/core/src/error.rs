//! Errors of building an application from plugins.

use std::fmt;

use crate::config::ConfigError;

/// `Result` with this crate's build error by default.
pub type Result<T, E = BuildError> = std::result::Result<T, E>;

/// What a plugin's [`build`](crate::Plugin::build) can fail with.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The plugin's config section is invalid.
    #[error("invalid config: {}", join(.0))]
    Config(Vec<ConfigError>),
    /// The plugin needs a service that the host did not provide.
    #[error("needs the service `{0}`, which this application does not provide")]
    MissingService(&'static str),
    /// The plugin was given a route prefix that cannot be used.
    #[error("invalid route prefix `{prefix}`: {reason}")]
    InvalidPrefix { prefix: String, reason: &'static str },
    /// Any other failure of the plugin's own setup.
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

impl From<Vec<ConfigError>> for PluginError {
    fn from(errors: Vec<ConfigError>) -> Self {
        Self::Config(errors)
    }
}

/// One thing wrong with the set of plugins or with one of them.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("two plugins are named `{0}`")]
    DuplicateName(String),
    #[error("plugin name `{0}` is invalid: use lowercase letters, digits, `-` and `_`")]
    InvalidName(String),
    #[error("plugin `{plugin}` depends on `{dependency}`, which is not registered")]
    UnknownDependency { plugin: String, dependency: String },
    #[error("plugin `{plugin}` depends on `{dependency}`, which is disabled in `plugins.disabled`")]
    DisabledDependency { plugin: String, dependency: String },
    #[error("plugins depend on each other in a cycle: {}", .0.join(" -> "))]
    DependencyCycle(Vec<String>),
    #[error("`plugins.disabled` names `{0}`, which is not a registered plugin")]
    UnknownDisabled(String),
    #[error("config section `[plugins.{0}]` does not belong to any registered plugin")]
    UnknownSection(String),
    #[error("config: {0}")]
    Config(ConfigError),
    #[error("plugin `{plugin}` claims the config section `[{section}]`, which belongs to {other}")]
    SectionTaken { plugin: String, section: String, other: String },
    #[error("plugin `{plugin}` adds the command `{command}`, which belongs to {other}")]
    CommandTaken { plugin: String, command: String, other: String },
    #[error(
        "routes of plugin `{plugin}` under `{prefix}` conflict with {other} under `{other_prefix}`"
    )]
    RouteConflict { plugin: String, prefix: String, other: String, other_prefix: String },
    #[error("routes of plugin `{plugin}` are invalid: {reason}")]
    InvalidRoutes { plugin: String, reason: String },
    #[error("plugin `{plugin}`: {source}")]
    Plugin { plugin: String, source: PluginError },
}

/// Everything that prevented the application from being built.
#[derive(Debug)]
pub struct BuildError {
    /// Every problem found, in the order they were found.
    pub problems: Vec<Problem>,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        write!(
            f,
            "the application cannot be built ({count} problem{}):",
            if count == 1 { "" } else { "s" }
        )?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for BuildError {}

fn join(errors: &[ConfigError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}
