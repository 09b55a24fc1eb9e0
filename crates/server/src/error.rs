//! What starting or running the server can fail with.

/// A failure of the server's startup or run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] crate::config::LoadError),
    #[error(transparent)]
    Build(#[from] xcore_core::BuildError),
    /// Both the server's sections and the application's are invalid.
    #[error("{config}\n{build}")]
    Invalid { config: crate::config::LoadError, build: xcore_core::BuildError },
    #[error("the startup hook of plugin `{plugin}` failed: {source}")]
    Startup { plugin: &'static str, source: xcore_core::HookError },
    #[error("`xcore {command}` (from plugin `{plugin}`) failed: {source}")]
    Command { command: &'static str, plugin: &'static str, source: xcore_core::HookError },
    #[error("unknown command `{0}`; run `xcore help` for the list")]
    UnknownCommand(String),
    #[error("cannot listen on {address}: {source}")]
    Listen { address: String, source: std::io::Error },
    #[error("cannot render the configuration: {0}")]
    Render(#[from] toml::ser::Error),
    #[error("the server stopped: {0}")]
    Serve(std::io::Error),
}

impl Error {
    /// The process exit code for this error: 2 for what the user must fix in the
    /// configuration, the plugin set or the command line, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) | Self::Build(_) | Self::Invalid { .. } | Self::UnknownCommand(_) => 2,
            _ => 1,
        }
    }
}
