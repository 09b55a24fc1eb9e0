//! The cache module: [`CachePlugin`] reads `[cache]` and provides the [`Cache`] to the
//! plugins that depend on it, with a readiness probe.
//!
//! A cache outage makes the server degraded, not unready: reads fall back to their
//! sources. When the host builds the application offline (`xcore migrate`), the cache stays
//! in memory so such commands never connect to Redis.

use xcore_core::{AppBuilder, Plugin, PluginError, PluginMeta, register_plugin};

use crate::{BackendKind, Cache, CacheConfig};

/// The cache module. Plugins that cache list `"cache"` in their dependencies and take it
/// with `app.require::<Cache>()`.
#[derive(Debug, Clone, Copy)]
pub struct CachePlugin;

register_plugin!(CachePlugin);

impl Plugin for CachePlugin {
    fn meta(&self) -> PluginMeta {
        PluginMeta {
            version: env!("CARGO_PKG_VERSION"),
            description: "The cache: in memory, in Redis, or both kept coherent across nodes",
            author: "xcore developers",
            section: Some("cache"),
            ..PluginMeta::new("cache")
        }
    }

    fn build(&self, app: &mut AppBuilder) -> Result<(), PluginError> {
        let mut config: CacheConfig = app.config()?;
        if app.host().offline {
            config.backend = BackendKind::Memory;
        }
        let cache = Cache::new(&config).map_err(|error| PluginError::Other(error.into()))?;
        app.insert_resource(cache.clone());
        app.readiness("cache", false, move || {
            let cache = cache.clone();
            async move {
                let status = cache.status().await;
                let backend = status.backend.as_str();
                if status.healthy {
                    Ok(backend.to_owned())
                } else {
                    let detail = status.detail.trim_start_matches("degraded: ");
                    Err(format!("{detail} ({backend})"))
                }
            }
        });
        Ok(())
    }
}
