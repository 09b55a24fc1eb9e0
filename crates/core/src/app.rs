//! [`AppBuilder`], what plugins build into, and [`App`], what the host runs.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;

use axum::Router;
use figment::Figment;
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::openapi::OpenApi;

use crate::config::{self, PluginsConfig};
use crate::{BuildError, Extensions, Plugin, PluginError, PluginMeta, Problem, Registry, Routes};

/// What a startup or shutdown hook may fail with.
pub type HookError = Box<dyn std::error::Error + Send + Sync>;

type HookFuture = Pin<Box<dyn Future<Output = Result<(), HookError>> + Send>>;

/// A startup or shutdown hook of one plugin.
pub struct Hook {
    /// The plugin that registered it.
    pub plugin: &'static str,
    run: Box<dyn FnOnce() -> HookFuture + Send>,
}

impl Hook {
    /// Runs the hook.
    ///
    /// # Errors
    ///
    /// Returns whatever the hook returned.
    pub async fn run(self) -> Result<(), HookError> {
        (self.run)().await
    }
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hook").field("plugin", &self.plugin).finish_non_exhaustive()
    }
}

/// What one plugin contributed while it was being built.
#[derive(Default)]
struct Contribution {
    prefix: Option<String>,
    routes: Option<Routes>,
}

/// The builder every plugin receives in [`Plugin::build`].
///
/// Besides routes, hooks and config, it holds an [`Extensions`] type map. The host puts
/// services there (the database, the cache) for plugins to [`require`](Self::require), and
/// crates that `xcore-core` does not know keep their own builder state there behind an
/// extension trait; see `ARCHITECTURE.md`.
pub struct AppBuilder {
    figment: Figment,
    extensions: Extensions,
    reserved: Vec<String>,
    current: Option<PluginMeta>,
    contributions: BTreeMap<&'static str, Contribution>,
    startup: Vec<Hook>,
    shutdown: Vec<Hook>,
}

impl AppBuilder {
    /// A builder reading plugin config from `figment` (the whole layered config, of which
    /// the `[plugins]` section is used here).
    pub fn new(figment: Figment) -> Self {
        Self {
            figment,
            extensions: Extensions::default(),
            reserved: Vec::new(),
            current: None,
            contributions: BTreeMap::new(),
            startup: Vec::new(),
            shutdown: Vec::new(),
        }
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

    /// Adds a service for plugins to [`require`](Self::require).
    pub fn insert_resource<T: Send + Sync + 'static>(&mut self, value: T) -> &mut Self {
        self.extensions.insert(value);
        self
    }

    /// A service the plugin cannot work without.
    ///
    /// # Errors
    ///
    /// [`PluginError::MissingService`] when the host provides no `T`: the plugin then fails
    /// to build instead of failing on its first request.
    pub fn require<T: Send + Sync + 'static>(&self) -> Result<&T, PluginError> {
        self.extensions.get().ok_or(PluginError::MissingService(std::any::type_name::<T>()))
    }

    /// The metadata of the plugin being built, if any.
    pub fn current_plugin(&self) -> Option<&PluginMeta> {
        self.current.as_ref()
    }

    /// The whole layered config, for crates that read their own top-level section.
    pub fn figment(&self) -> &Figment {
        &self.figment
    }

    /// The current plugin's config section `[plugins.<name>]` as a `T`; a missing section
    /// is read as an empty table so `T`'s serde defaults apply. Give `T`
    /// `#[serde(deny_unknown_fields)]` so typos are reported.
    ///
    /// # Errors
    ///
    /// [`PluginError::Config`] naming every invalid or unknown key and where it came from.
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        let name = self.current.map_or("", |meta| meta.name);
        Ok(config::extract_section(&self.figment, &format!("plugins.{name}"))?)
    }

    /// Mounts the current plugin's routes under its prefix (`/plugins/<name>` unless
    /// [`set_prefix`](Self::set_prefix) says otherwise): the plugin's `/` is served at
    /// `<prefix>/`. The OpenAPI description of routes added with `utoipa_axum::routes!`
    /// goes into the application's document; calling it more than once merges the routes.
    pub fn routes(&mut self, router: Routes) -> &mut Self {
        let contribution = self.contribution();
        contribution.routes = Some(match contribution.routes.take() {
            Some(existing) => existing.merge(router),
            None => router,
        });
        self
    }

    /// Mounts the current plugin's routes under `prefix` instead of `/plugins/<name>`.
    ///
    /// # Errors
    ///
    /// [`PluginError::InvalidPrefix`] unless `prefix` starts with `/`, does not end with
    /// `/`, is not the root, and has no empty, parameter or wildcard segments.
    pub fn set_prefix(&mut self, prefix: &str) -> Result<&mut Self, PluginError> {
        validate_prefix(prefix)?;
        self.contribution().prefix = Some(prefix.to_owned());
        Ok(self)
    }

    /// Runs `hook` when the application starts, after the hooks of the plugins this one
    /// depends on. A failing startup hook stops the server from starting.
    pub fn on_startup<F, Fut>(&mut self, hook: F) -> &mut Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), HookError>> + Send + 'static,
    {
        let hook = self.hook(hook);
        self.startup.push(hook);
        self
    }

    /// Runs `hook` when the application stops, before the hooks of the plugins this one
    /// depends on. A failing shutdown hook is logged and the others still run.
    pub fn on_shutdown<F, Fut>(&mut self, hook: F) -> &mut Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), HookError>> + Send + 'static,
    {
        let hook = self.hook(hook);
        self.shutdown.push(hook);
        self
    }

    fn hook<F, Fut>(&self, hook: F) -> Hook
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), HookError>> + Send + 'static,
    {
        Hook {
            plugin: self.current.map_or("", |meta| meta.name),
            run: Box::new(move || Box::pin(hook()) as HookFuture),
        }
    }

    fn contribution(&mut self) -> &mut Contribution {
        let name = self.current.map_or("", |meta| meta.name);
        self.contributions.entry(name).or_default()
    }

    /// Builds the application from the enabled plugins of `registry`.
    ///
    /// Plugins are built in dependency order (ties broken by name). Every problem is
    /// collected: duplicate or invalid names, unknown, disabled or cyclic dependencies,
    /// unknown entries in `plugins.disabled` or `[plugins.*]`, plugin build errors
    /// (including invalid config) and conflicting route prefixes.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] listing every problem found.
    pub fn build(mut self, registry: &Registry) -> Result<App, BuildError> {
        let mut problems = Vec::new();
        let plugins_config: PluginsConfig = config::extract_section(&self.figment, "plugins")
            .unwrap_or_else(|errors| {
                problems.extend(errors.into_iter().map(Problem::Config));
                PluginsConfig::default()
            });

        let mut by_name: BTreeMap<&'static str, &'static dyn Plugin> = BTreeMap::new();
        for plugin in registry.plugins() {
            let name = plugin.meta().name;
            if !valid_name(name) {
                problems.push(Problem::InvalidName(name.to_owned()));
            }
            if by_name.insert(name, *plugin).is_some() {
                problems.push(Problem::DuplicateName(name.to_owned()));
            }
        }
        for name in &plugins_config.disabled {
            if !by_name.contains_key(name.as_str()) {
                problems.push(Problem::UnknownDisabled(name.clone()));
            }
        }
        for name in plugins_config.sections.keys() {
            if !by_name.contains_key(name.as_str()) {
                problems.push(Problem::UnknownSection(name.clone()));
            }
        }

        let disabled: BTreeSet<&str> = plugins_config.disabled.iter().map(String::as_str).collect();
        let enabled: BTreeMap<&'static str, PluginMeta> = by_name
            .iter()
            .filter(|(name, _)| !disabled.contains(*name))
            .map(|(name, plugin)| (*name, plugin.meta()))
            .collect();
        for meta in enabled.values() {
            for dependency in meta.dependencies {
                if disabled.contains(dependency) && by_name.contains_key(dependency) {
                    problems.push(Problem::DisabledDependency {
                        plugin: meta.name.to_owned(),
                        dependency: (*dependency).to_owned(),
                    });
                } else if !by_name.contains_key(dependency) {
                    problems.push(Problem::UnknownDependency {
                        plugin: meta.name.to_owned(),
                        dependency: (*dependency).to_owned(),
                    });
                }
            }
        }
        let (order, cycles) = dependency_order(&enabled);
        problems.extend(cycles.into_iter().map(Problem::DependencyCycle));

        for name in &order {
            let plugin = by_name[name];
            self.current = Some(plugin.meta());
            if let Err(source) = plugin.build(&mut self) {
                problems.push(Problem::Plugin { plugin: (*name).to_owned(), source });
            }
        }
        self.current = None;

        let mut mounts = Vec::new();
        for name in &order {
            let Some(contribution) = self.contributions.remove(name) else { continue };
            let Some(routes) = contribution.routes else { continue };
            let prefix = contribution.prefix.unwrap_or_else(|| format!("/plugins/{name}"));
            mounts.push((*name, prefix, routes));
        }
        problems.extend(route_conflicts(&self.reserved, &mounts));
        for (name, _, routes) in &mounts {
            for path in routes.paths().filter(|path| !path.starts_with('/')) {
                problems.push(Problem::InvalidRoutes {
                    plugin: (*name).to_owned(),
                    reason: format!("the path `{path}` does not start with `/`"),
                });
            }
        }
        if !problems.is_empty() {
            return Err(BuildError { problems });
        }

        let mut routers = Vec::new();
        let mut openapi = OpenApi::default();
        let mut prefixes = BTreeMap::new();
        for (name, prefix, routes) in mounts {
            match mount(name, &prefix, routes) {
                Ok((mounted, doc)) => {
                    routers.push(mounted);
                    openapi.merge(doc);
                    prefixes.insert(name, prefix);
                }
                Err(problem) => problems.push(problem),
            }
        }
        if !problems.is_empty() {
            return Err(BuildError { problems });
        }
        let plugins = by_name
            .values()
            .map(|plugin| {
                let meta = plugin.meta();
                PluginInfo {
                    name: meta.name,
                    version: meta.version,
                    description: meta.description,
                    author: meta.author,
                    dependencies: meta.dependencies.to_vec(),
                    enabled: enabled.contains_key(meta.name),
                    prefix: prefixes.get(meta.name).cloned(),
                }
            })
            .collect();
        Ok(App {
            plugins,
            order,
            routers,
            openapi,
            startup: self.startup,
            shutdown: self.shutdown,
            extensions: self.extensions,
        })
    }
}

impl std::fmt::Debug for AppBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppBuilder")
            .field("current", &self.current.map(|meta| meta.name))
            .field("extensions", &self.extensions)
            .finish_non_exhaustive()
    }
}

/// Mounts `routes` under `prefix` (see [`Routes::mount`]), plus a redirect (308, method
/// kept) from the bare `<prefix>` to `<prefix>/`.
///
/// axum panics on a malformed or conflicting path; that is reported as a problem of the
/// plugin rather than taking the process down.
fn mount(
    plugin: &'static str,
    prefix: &str,
    routes: Routes,
) -> Result<(PluginRouter, OpenApi), Problem> {
    let root = format!("{prefix}/");
    let mounted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let (router, mut paths, openapi) = routes.mount(prefix);
        paths.push(prefix.to_owned());
        let router = router.route(
            prefix,
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

/// Orders the enabled plugins so that each comes after its dependencies, ties broken by
/// name; plugins caught in a cycle are appended by name so they are still built (and their
/// own problems reported). Returns the order and each cycle found.
fn dependency_order(
    enabled: &BTreeMap<&'static str, PluginMeta>,
) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let mut remaining: BTreeMap<&'static str, BTreeSet<&'static str>> = enabled
        .iter()
        .map(|(name, meta)| {
            let deps =
                meta.dependencies.iter().copied().filter(|dep| enabled.contains_key(dep)).collect();
            (*name, deps)
        })
        .collect();
    let mut order = Vec::new();
    loop {
        let ready: Vec<&'static str> =
            remaining.iter().filter(|(_, deps)| deps.is_empty()).map(|(name, _)| *name).collect();
        let Some(next) = ready.first().copied() else { break };
        remaining.remove(next);
        for deps in remaining.values_mut() {
            deps.remove(next);
        }
        order.push(next);
    }

    let mut cycles = Vec::new();
    let mut reported: BTreeSet<&str> = BTreeSet::new();
    for start in remaining.keys() {
        if reported.contains(start) {
            continue;
        }
        // Every plugin left depends on another one left, so walking first dependencies
        // from any of them must come back to a plugin already visited: that is a cycle.
        let mut path = vec![*start];
        loop {
            let last = path[path.len() - 1];
            let Some(next) = remaining.get(last).and_then(|deps| deps.first().copied()) else {
                break;
            };
            if let Some(position) = path.iter().position(|name| *name == next) {
                let cycle = &path[position..];
                if !cycle.iter().any(|name| reported.contains(name)) {
                    reported.extend(cycle.iter().copied());
                    let mut names: Vec<String> =
                        cycle.iter().map(|name| (*name).to_owned()).collect();
                    names.push(next.to_owned());
                    cycles.push(names);
                }
                break;
            }
            path.push(next);
        }
    }
    order.extend(remaining.keys().copied());
    (order, cycles)
}

fn route_conflicts(reserved: &[String], mounts: &[(&'static str, String, Routes)]) -> Vec<Problem> {
    let overlaps = |a: &str, b: &str| {
        a == b
            || a.strip_prefix(b).is_some_and(|rest| rest.starts_with('/'))
            || b.strip_prefix(a).is_some_and(|rest| rest.starts_with('/'))
    };
    let mut problems = Vec::new();
    for (index, (name, prefix, _)) in mounts.iter().enumerate() {
        for path in reserved {
            if overlaps(prefix, path) {
                problems.push(Problem::RouteConflict {
                    plugin: (*name).to_owned(),
                    prefix: prefix.clone(),
                    other: "the server's own route".to_owned(),
                    other_prefix: path.clone(),
                });
            }
        }
        for (other, other_prefix, _) in &mounts[..index] {
            if overlaps(prefix, other_prefix) {
                problems.push(Problem::RouteConflict {
                    plugin: (*name).to_owned(),
                    prefix: prefix.clone(),
                    other: format!("plugin `{other}`"),
                    other_prefix: other_prefix.clone(),
                });
            }
        }
    }
    problems
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn validate_prefix(prefix: &str) -> Result<(), PluginError> {
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

/// What `xcore plugins` and the admin interface show about a registered plugin.
#[derive(Debug, Clone, Serialize)]
pub struct PluginInfo {
    pub name: &'static str,
    pub version: &'static str,
    pub description: &'static str,
    pub author: &'static str,
    pub dependencies: Vec<&'static str>,
    pub enabled: bool,
    /// Where its routes are mounted; `None` for a disabled plugin or one without routes.
    pub prefix: Option<String>,
}

/// A built application: the plugins' merged routes and OpenAPI document, their hooks in
/// start order, and the builder's extensions for the host to read.
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
    /// Startup hooks, in dependency order.
    pub startup: Vec<Hook>,
    /// Shutdown hooks, in the order they were registered; run them in reverse.
    pub shutdown: Vec<Hook>,
    /// What plugins and extension traits left in the builder's storage.
    pub extensions: Extensions,
}

impl App {
    /// All the plugins' routes in one router.
    pub fn router(&self) -> Router {
        self.routers.iter().fold(Router::new(), |all, mounted| all.merge(mounted.router.clone()))
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::body::Body;
    use axum::routing::get;
    use figment::providers::{Format, Toml};
    use http_body_util::BodyExt;
    use serde::Deserialize;

    use tower::ServiceExt;

    use super::*;

    /// A plugin whose behaviour is set by its fields, for building test registries.
    struct TestPlugin {
        name: &'static str,
        deps: &'static [&'static str],
        prefix: Option<&'static str>,
    }

    impl TestPlugin {
        const fn new(name: &'static str, deps: &'static [&'static str]) -> Self {
            Self { name, deps, prefix: None }
        }
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct TestConfig {
        reply: String,
    }

    impl Default for TestConfig {
        fn default() -> Self {
            Self { reply: "hi".into() }
        }
    }

    /// The order hooks ran in, shared by the test plugins through the builder.
    #[derive(Clone, Default)]
    struct Journal(Arc<Mutex<Vec<String>>>);

    impl Plugin for TestPlugin {
        fn meta(&self) -> PluginMeta {
            PluginMeta { dependencies: self.deps, ..PluginMeta::new(self.name) }
        }

        fn build(&self, app: &mut AppBuilder) -> Result<(), PluginError> {
            let config: TestConfig = app.config()?;
            if let Some(prefix) = self.prefix {
                app.set_prefix(prefix)?;
            }
            let reply = config.reply;
            let sub = reply.clone();
            app.routes(Routes::new().route("/", get(move || async move { reply })).route(
                "/sub/{id}",
                get(move |axum::extract::Path(id): axum::extract::Path<u32>| async move {
                    format!("{sub} {id}")
                }),
            ));
            let journal = app.extensions_mut().get_or_default::<Journal>().clone();
            let name = self.name;
            let stop = journal.clone();
            app.on_startup(move || async move {
                journal.0.lock().unwrap().push(format!("start {name}"));
                Ok(())
            });
            app.on_shutdown(move || async move {
                stop.0.lock().unwrap().push(format!("stop {name}"));
                Ok(())
            });
            Ok(())
        }
    }

    fn build(plugins: Vec<&'static TestPlugin>, toml: &str) -> Result<App, BuildError> {
        let mut builder = AppBuilder::new(Figment::from(Toml::string(toml)));
        builder.reserve_path("/health");
        builder.build(&Registry::new(plugins.into_iter().map(|p| p as &dyn Plugin).collect()))
    }

    fn problems(result: Result<App, BuildError>) -> Vec<String> {
        match result {
            Ok(_) => Vec::new(),
            Err(error) => error.problems.iter().map(ToString::to_string).collect(),
        }
    }

    static A: TestPlugin = TestPlugin::new("a", &[]);
    static B: TestPlugin = TestPlugin::new("b", &["a"]);
    static C: TestPlugin = TestPlugin::new("c", &["b"]);

    #[test]
    fn every_problem_is_reported_at_once() {
        static A_AGAIN: TestPlugin = TestPlugin::new("a", &[]);
        static MISSING: TestPlugin = TestPlugin::new("m", &["ghost"]);
        static X: TestPlugin = TestPlugin::new("x", &["y"]);
        static Y: TestPlugin = TestPlugin::new("y", &["x"]);
        static BAD_NAME: TestPlugin = TestPlugin::new("Bad Name", &[]);
        let result = build(
            vec![&A, &A_AGAIN, &MISSING, &X, &Y, &BAD_NAME],
            "[plugins]\ndisabled = [\"nobody\"]\n[plugins.a]\nreplly = 1\n[plugins.zzz]\nk = 1",
        );
        let error = result.as_ref().err().map(ToString::to_string).unwrap_or_default();
        assert!(
            error.starts_with("the application cannot be built (7 problems):\n  - "),
            "{error}"
        );
        assert_eq!(
            problems(result),
            [
                "plugin name `Bad Name` is invalid: use lowercase letters, digits, `-` and `_`",
                "two plugins are named `a`",
                "`plugins.disabled` names `nobody`, which is not a registered plugin",
                "config section `[plugins.zzz]` does not belong to any registered plugin",
                "plugin `m` depends on `ghost`, which is not registered",
                "plugins depend on each other in a cycle: x -> y -> x",
                "plugin `a`: invalid config: `plugins.a.replly`: unknown key `replly`; \
             expected one of: reply (from TOML source string)",
            ]
        );
    }

    #[tokio::test]
    async fn plugins_start_in_dependency_order_and_stop_in_reverse() {
        let app = build(vec![&C, &A, &B], "").unwrap();
        assert_eq!(app.order, ["a", "b", "c"]);
        let journal = app.extensions.get::<Journal>().unwrap().clone();
        for hook in app.startup {
            hook.run().await.unwrap();
        }
        for hook in app.shutdown.into_iter().rev() {
            hook.run().await.unwrap();
        }
        assert_eq!(
            *journal.0.lock().unwrap(),
            ["start a", "start b", "start c", "stop c", "stop b", "stop a"]
        );
    }

    async fn get_body(router: &Router, uri: &str) -> (u16, String) {
        let request = axum::http::Request::get(uri).body(Body::empty()).unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn routes_are_mounted_under_the_prefix_with_their_config() {
        static CUSTOM: TestPlugin =
            TestPlugin { prefix: Some("/custom/place"), ..TestPlugin::new("custom", &[]) };
        let app = build(vec![&A, &CUSTOM], "[plugins.a]\nreply = \"configured\"").unwrap();
        assert_eq!(get_body(&app.router(), "/plugins/a/").await, (200, "configured".into()));
        assert_eq!(get_body(&app.router(), "/plugins/a/sub/7").await, (200, "configured 7".into()));
        let request = axum::http::Request::get("/plugins/a?x=1").body(Body::empty()).unwrap();
        let redirect = app.router().oneshot(request).await.unwrap();
        assert_eq!(redirect.status().as_u16(), 308);
        assert_eq!(redirect.headers()["location"], "/plugins/a/?x=1");
        assert_eq!(get_body(&app.router(), "/custom/place/").await, (200, "hi".into()));
        assert_eq!(get_body(&app.router(), "/plugins/custom/").await.0, 404);
        let prefixes: Vec<_> = app.plugins.iter().map(|p| (p.name, p.prefix.clone())).collect();
        assert_eq!(
            prefixes,
            [("a", Some("/plugins/a".to_owned())), ("custom", Some("/custom/place".to_owned()))]
        );
    }

    #[tokio::test]
    async fn a_disabled_plugin_contributes_nothing() {
        let app = build(vec![&A, &B, &C], "[plugins]\ndisabled = [\"c\"]").unwrap();
        assert_eq!(app.order, ["a", "b"]);
        assert_eq!(app.startup.len(), 2);
        assert_eq!(app.shutdown.len(), 2);
        assert_eq!(get_body(&app.router(), "/plugins/c/").await.0, 404);
        let enabled: Vec<_> =
            app.plugins.iter().map(|p| (p.name, p.enabled, p.prefix.is_some())).collect();
        assert_eq!(enabled, [("a", true, true), ("b", true, true), ("c", false, false)]);

        let result = build(vec![&A, &B, &C], "[plugins]\ndisabled = [\"a\"]");
        assert_eq!(
            problems(result),
            ["plugin `b` depends on `a`, which is disabled in `plugins.disabled`"]
        );
    }

    #[test]
    fn conflicting_routes_are_reported() {
        static OVER_A: TestPlugin =
            TestPlugin { prefix: Some("/plugins/a/sub"), ..TestPlugin::new("over-a", &[]) };
        static OVER_HEALTH: TestPlugin =
            TestPlugin { prefix: Some("/health"), ..TestPlugin::new("over-health", &[]) };
        static ROOT: TestPlugin = TestPlugin { prefix: Some("/"), ..TestPlugin::new("root", &[]) };
        assert_eq!(
            problems(build(vec![&A, &OVER_A, &OVER_HEALTH, &ROOT], "")),
            [
                "plugin `root`: invalid route prefix `/`: a plugin cannot own the root",
                "routes of plugin `over-a` under `/plugins/a/sub` conflict with plugin `a` under `/plugins/a`",
                "routes of plugin `over-health` under `/health` conflict with the server's own route under `/health`",
            ]
        );
    }

    #[test]
    fn a_missing_service_fails_the_build() {
        fn needs_database(app: &mut AppBuilder) -> Result<(), PluginError> {
            app.require::<std::net::SocketAddr>()?;
            Ok(())
        }
        static NEEDY: crate::FnPlugin =
            crate::FnPlugin::new(PluginMeta::new("needy"), needs_database);
        let result = AppBuilder::new(Figment::new()).build(&Registry::new(vec![&NEEDY]));
        assert_eq!(
            problems(result),
            [
                "plugin `needy`: needs the service `core::net::socket_addr::SocketAddr`, which this application does not provide"
            ]
        );
    }

    #[test]
    fn malformed_or_clashing_routes_are_problems_not_panics() {
        fn clashing(app: &mut AppBuilder) -> Result<(), PluginError> {
            app.routes(
                Routes::new()
                    .route("/items/{id}", get(|| async { "a" }))
                    .route("/items/{name}", get(|| async { "b" })),
            );
            Ok(())
        }
        fn relative(app: &mut AppBuilder) -> Result<(), PluginError> {
            app.routes(Routes::new().route("items", get(|| async { "a" })));
            Ok(())
        }
        static CLASHING: crate::FnPlugin =
            crate::FnPlugin::new(PluginMeta::new("clashing"), clashing);
        static RELATIVE: crate::FnPlugin =
            crate::FnPlugin::new(PluginMeta::new("relative"), relative);
        let build = |plugin: &'static crate::FnPlugin| {
            problems(AppBuilder::new(Figment::new()).build(&Registry::new(vec![plugin])))
        };
        assert_eq!(
            build(&RELATIVE),
            ["routes of plugin `relative` are invalid: the path `items` does not start with `/`"]
        );
        let clash = build(&CLASHING);
        assert_eq!(clash.len(), 1, "{clash:?}");
        assert!(clash[0].starts_with("routes of plugin `clashing` are invalid: "), "{clash:?}");
    }
}
