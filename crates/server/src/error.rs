//! What starting or running the server can fail with.

use xcore_core::config::ConfigError;

/// A failure of the server's startup or run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Config(Vec<ConfigError>),
    #[error(transparent)]
    Build(#[from] xcore_core::BuildError),
    #[error("database: {0}")]
    Database(#[from] xcore_db::Error),
    #[error("cache: {0}")]
    Cache(#[from] xcore_cache::Error),
    #[error("the startup hook of plugin `{plugin}` failed: {source}")]
    Startup { plugin: &'static str, source: xcore_core::HookError },
    #[error("token signing secret {}: {source}", path.display())]
    Secret { path: std::path::PathBuf, source: std::io::Error },
    #[error("auth: {0}")]
    Auth(String),
    #[error("cannot listen on {address}: {source}")]
    Listen { address: String, source: std::io::Error },
    #[error("cannot render the configuration: {0}")]
    Render(#[from] toml::ser::Error),
    #[error("the server stopped: {0}")]
    Serve(std::io::Error),
}

impl Error {
    /// The process exit code for this error: 2 for what the user must fix in the
    /// configuration or the plugin set, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) | Self::Build(_) => 2,
            _ => 1,
        }
    }
}
