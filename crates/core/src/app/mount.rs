//! Route prefixes: their rules, conflicts between them, and mounting a plugin's routes
//! under one.

use utoipa::openapi::OpenApi;

use super::PluginRouter;
use crate::{PluginError, Problem, Routes};

/// A plugin's routes waiting to be mounted under its prefix.
pub(super) struct Mount {
    pub plugin: &'static str,
    pub prefix: String,
    pub routes: Routes,
    /// An endpoint, with its `/` served at the bare prefix
    /// ([`AppBuilder::endpoint`](super::AppBuilder::endpoint)) or at the prefix and a
    /// slash ([`AppBuilder::directory`](super::AppBuilder::directory)), with no redirect.
    pub endpoint: Option<bool>,
}

/// Every pair of prefixes that overlap, among the plugins and against the host's paths.
pub(super) fn conflicts(reserved: &[String], mounts: &[Mount]) -> Vec<Problem> {
    let overlaps = |a: &str, b: &str| {
        a == b
            || a.strip_prefix(b).is_some_and(|rest| rest.starts_with('/'))
            || b.strip_prefix(a).is_some_and(|rest| rest.starts_with('/'))
    };
    let mut problems = Vec::new();
    for (index, mount) in mounts.iter().enumerate() {
        for path in reserved {
            if overlaps(&mount.prefix, path) {
                problems.push(Problem::RouteConflict {
                    plugin: mount.plugin.to_owned(),
                    prefix: mount.prefix.clone(),
                    other: "the server's own route".to_owned(),
                    other_prefix: path.clone(),
                });
            }
        }
        for other in &mounts[..index] {
            if overlaps(&mount.prefix, &other.prefix) {
                problems.push(Problem::RouteConflict {
                    plugin: mount.plugin.to_owned(),
                    prefix: mount.prefix.clone(),
                    other: format!("plugin `{}`", other.plugin),
                    other_prefix: other.prefix.clone(),
                });
            }
        }
    }
    for mount in mounts {
        for path in mount.routes.paths().filter(|path| !path.starts_with('/')) {
            problems.push(Problem::InvalidRoutes {
                plugin: mount.plugin.to_owned(),
                reason: format!("the path `{path}` does not start with `/`"),
            });
        }
    }
    problems
}

/// Mounts the routes under their prefix (see [`Routes::mount`]), plus a redirect (308,
/// method kept) from the bare `<prefix>` to `<prefix>/`; an endpoint's `/` is served at
/// the bare prefix instead.
///
/// axum panics on a malformed or conflicting path; that is reported as a problem of the
/// plugin rather than taking the process down.
pub(super) fn mount(mount: Mount) -> Result<(PluginRouter, OpenApi), Problem> {
    let Mount { plugin, prefix, routes, endpoint } = mount;
    let root = format!("{prefix}/");
    let mounted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if let Some(bare_root) = endpoint {
            let (router, paths, openapi) = routes.mount_at(&prefix, bare_root);
            return (PluginRouter { plugin, paths, router }, openapi);
        }
        let (router, mut paths, openapi) = routes.mount(&prefix);
        paths.push(prefix.clone());
        let router = router.route(
            &prefix,
            axum::routing::any(move |uri: axum::http::Uri| {
                let target = match uri.query() {
                    Some(query) => format!("{root}?{query}"),
                    None => root.clone(),
                };
                std::future::ready(axum::response::Redirect::permanent(&target))
            }),
        );
        (PluginRouter { plugin, paths, router }, openapi)
    }));
    mounted.map_err(|panic| Problem::InvalidRoutes {
        plugin: plugin.to_owned(),
        reason: panic
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "the router refused them".to_owned()),
    })
}

pub(super) fn validate_prefix(prefix: &str) -> Result<(), PluginError> {
    let reason = if !prefix.starts_with('/') {
        Some("it must start with `/`")
    } else if prefix == "/" {
        Some("a plugin cannot own the root")
    } else if prefix.ends_with('/') {
        Some("it must not end with `/`")
    } else if prefix[1..].split('/').any(str::is_empty) {
        Some("it has an empty segment")
    } else if prefix.contains(['{', '}', '*', ':']) {
        Some("it must not contain parameters or wildcards")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(PluginError::InvalidPrefix { prefix: prefix.to_owned(), reason }),
        None => Ok(()),
    }
}
