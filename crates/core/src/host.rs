//! What the host tells plugins about the process they are built into.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The run a plugin is built for, from the host's `[server]` section and command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// `dev` or `prod`: what a missing secret means (generated, or fatal).
    pub environment: Environment,
    /// Where the host keeps files it makes itself, such as a generated secret: created
    /// with mode 0700, its files 0600 (see [`crate::files`]).
    pub data_dir: PathBuf,
    /// The application is built to be inspected or administered (`xcore migrate`,
    /// `xcore plugins`, `xcore config show`), not served: plugins should connect to
    /// nothing they can avoid (no Redis, no brokers), write no files and generate no
    /// secrets.
    pub offline: bool,
}

impl Default for Host {
    fn default() -> Self {
        Self { environment: Environment::Dev, data_dir: PathBuf::from("data"), offline: false }
    }
}

/// What the server is run for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Development: missing secrets are generated and kept in the data directory.
    Dev,
    /// Production: missing secrets stop startup.
    Prod,
}
