//! The link-time plugin registry.

use crate::Plugin;

/// Every plugin registered with [`register_plugin!`](crate::register_plugin) in a crate
/// linked into the binary. Read it through [`Registry::linked`], which sorts it: the order
/// of a link-time slice is not stable.
#[linkme::distributed_slice]
pub static PLUGINS: [&'static dyn Plugin];

/// A set of plugins to build an application from.
#[derive(Clone)]
pub struct Registry {
    plugins: Vec<&'static dyn Plugin>,
}

impl Registry {
    /// The plugins linked into this binary, sorted by name.
    pub fn linked() -> Self {
        Self::new(PLUGINS.iter().copied().collect())
    }

    /// An explicit set of plugins, sorted by name; useful for tests and for embedding
    /// xcore in another binary.
    pub fn new(mut plugins: Vec<&'static dyn Plugin>) -> Self {
        plugins.sort_by_key(|plugin| plugin.meta().name);
        Self { plugins }
    }

    /// The plugins, sorted by name.
    pub fn plugins(&self) -> &[&'static dyn Plugin] {
        &self.plugins
    }

    /// The plugins' names, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        self.plugins.iter().map(|plugin| plugin.meta().name).collect()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}
