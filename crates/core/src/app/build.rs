//! [`AppBuilder::build`], in named phases: resolve the plugin set, build each plugin,
//! finish each plugin, mount the routes, assemble the [`App`].
//!
//! Every phase adds to one list of problems instead of stopping at the first: a server
//! that cannot start should say everything that is wrong at once.

use std::collections::{BTreeMap, BTreeSet};

use utoipa::openapi::OpenApi;

use super::mount::{self, Mount};
use super::{App, AppBuilder, Ordered, PluginInfo};
use crate::config::{self, ConfigError, PluginsConfig};
use crate::{BuildError, Plugin, PluginMeta, Problem, Registry};

/// The plugin set once names, switches and dependencies are resolved.
struct Plan {
    /// Every registered plugin, by name.
    registered: BTreeMap<&'static str, &'static dyn Plugin>,
    /// The enabled ones, in build order.
    order: Vec<&'static str>,
    /// The ones whose build or finish failed, or whose dependency's did.
    failed: BTreeSet<&'static str>,
}

impl AppBuilder {
    /// Builds the application from the enabled plugins of `registry`.
    ///
    /// Plugins are built in dependency order (ties broken by name), then finished in the
    /// same order (see [`Plugin::finish`]). Every problem is collected: duplicate or invalid
    /// names, unknown, disabled or cyclic dependencies, unknown entries in
    /// `plugins.disabled`, config sections that belong to no plugin, plugin build and
    /// finish errors (including invalid config), conflicting route prefixes and commands.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] listing every problem found.
    pub fn build(mut self, registry: &Registry) -> Result<App, BuildError> {
        let mut problems = Vec::new();
        let mut plan = self.resolve(registry, &mut problems);
        self.run_phase(&mut plan, &mut problems, |plugin, app| plugin.build(app));
        self.run_phase(&mut plan, &mut problems, |plugin, app| plugin.finish(app));
        let mounts = self.collect_mounts(&plan, &mut problems);
        problems.extend(self.command_conflicts());
        if !problems.is_empty() {
            return Err(BuildError { problems });
        }
        self.assemble(&plan, mounts)
    }

    /// Checks names, `[plugins]`, top-level sections and dependencies; orders the enabled
    /// plugins.
    fn resolve(&mut self, registry: &Registry, problems: &mut Vec<Problem>) -> Plan {
        let plugins_config: PluginsConfig = config::extract_section(&self.figment, "plugins")
            .unwrap_or_else(|errors| {
                problems.extend(errors.into_iter().map(Problem::Config));
                PluginsConfig::default()
            });
        let disabled = serde_json::json!({ "disabled": plugins_config.disabled });
        self.sections.insert("plugins".to_owned(), disabled);

        let mut registered: BTreeMap<&'static str, &'static dyn Plugin> = BTreeMap::new();
        for plugin in registry.plugins() {
            let name = plugin.meta().name;
            if !valid_name(name) {
                problems.push(Problem::InvalidName(name.to_owned()));
            }
            if registered.insert(name, *plugin).is_some() {
                problems.push(Problem::DuplicateName(name.to_owned()));
            }
        }
        for name in &plugins_config.disabled {
            if !registered.contains_key(name.as_str()) {
                problems.push(Problem::UnknownDisabled(name.clone()));
            }
        }
        problems.extend(self.section_problems(&registered, &plugins_config));

        let disabled: BTreeSet<&str> = plugins_config.disabled.iter().map(String::as_str).collect();
        let enabled: BTreeMap<&'static str, PluginMeta> = registered
            .iter()
            .filter(|(name, _)| !disabled.contains(*name))
            .map(|(name, plugin)| (*name, plugin.meta()))
            .collect();
        // A plugin whose dependency is missing is not built: that problem is the one to fix.
        let mut failed = BTreeSet::new();
        for meta in enabled.values() {
            for dependency in meta.dependencies {
                let (plugin, dependency) = (meta.name.to_owned(), (*dependency).to_owned());
                if !registered.contains_key(dependency.as_str()) {
                    problems.push(Problem::UnknownDependency { plugin, dependency });
                } else if disabled.contains(dependency.as_str()) {
                    problems.push(Problem::DisabledDependency { plugin, dependency });
                } else {
                    continue;
                }
                failed.insert(meta.name);
            }
        }
        let (order, cycles) = dependency_order(&enabled);
        problems.extend(cycles.into_iter().map(Problem::DependencyCycle));
        Plan { registered, order, failed }
    }

    /// Every top-level section must be the host's, `[plugins]` or a registered module's;
    /// every `[plugins.<name>]` table a registered plugin's that has no section of its own;
    /// and no two owners may claim one section.
    fn section_problems(
        &self,
        registered: &BTreeMap<&'static str, &'static dyn Plugin>,
        plugins_config: &PluginsConfig,
    ) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut owners: BTreeMap<&str, String> = BTreeMap::new();
        owners.insert("plugins", "the plugin list".to_owned());
        for section in &self.host_sections {
            owners.insert(section, "the server".to_owned());
        }
        for plugin in registered.values() {
            let meta = plugin.meta();
            let Some(section) = meta.section else { continue };
            if let Some(owner) = owners.insert(section, format!("plugin `{}`", meta.name)) {
                problems.push(Problem::SectionTaken {
                    plugin: meta.name.to_owned(),
                    section: section.to_owned(),
                    other: owner,
                });
            }
        }
        for name in plugins_config.sections.keys() {
            let plugin = registered.get(name.as_str());
            if plugin.is_none_or(|plugin| plugin.meta().section.is_some()) {
                problems.push(Problem::UnknownSection(name.clone()));
            }
        }
        let top: BTreeMap<String, serde_json::Value> = self.figment.extract().unwrap_or_default();
        for key in top.keys().filter(|key| !owners.contains_key(key.as_str())) {
            let expected: Vec<&str> = owners.keys().copied().collect();
            problems.push(Problem::Config(ConfigError {
                key: key.clone(),
                origin: config::origin(&self.figment, key),
                message: format!(
                    "unknown section `{key}`; expected one of: {}",
                    expected.join(", ")
                ),
            }));
        }
        problems
    }

    /// Calls `phase` on every enabled plugin in build order, each as the current plugin.
    /// A plugin whose dependency failed (in this phase or an earlier one) is skipped: its
    /// dependency's problem is the one to fix, and the services it would miss would only
    /// add noise.
    fn run_phase(
        &mut self,
        plan: &mut Plan,
        problems: &mut Vec<Problem>,
        phase: impl Fn(&dyn Plugin, &mut AppBuilder) -> Result<(), crate::PluginError>,
    ) {
        for (position, name) in plan.order.iter().enumerate() {
            let plugin = plan.registered[name];
            let meta = plugin.meta();
            if plan.failed.contains(name)
                || meta.dependencies.iter().any(|dependency| plan.failed.contains(dependency))
            {
                plan.failed.insert(name);
                continue;
            }
            self.current = Some((position, meta));
            if let Err(source) = phase(plugin, self) {
                plan.failed.insert(name);
                problems.push(Problem::Plugin { plugin: (*name).to_owned(), source });
            }
        }
        self.current = None;
    }

    /// Each plugin's routes with the prefix they go under, and every conflict between
    /// those prefixes and with the host's paths.
    fn collect_mounts(&mut self, plan: &Plan, problems: &mut Vec<Problem>) -> Vec<Mount> {
        let mut mounts = Vec::new();
        for name in &plan.order {
            let Some(contribution) = self.contributions.remove(name) else { continue };
            for (path, routes, bare_root) in contribution.endpoints {
                let endpoint = Some(bare_root);
                mounts.push(Mount { plugin: name, prefix: path, routes, endpoint });
            }
            let Some(routes) = contribution.routes else { continue };
            let prefix = match (contribution.prefix, plan.registered[name].meta().prefix) {
                (Some(prefix), _) => prefix,
                (None, Some(prefix)) => match mount::validate_prefix(prefix) {
                    Ok(()) => prefix.to_owned(),
                    Err(source) => {
                        problems.push(Problem::Plugin { plugin: (*name).to_owned(), source });
                        continue;
                    }
                },
                (None, None) => format!("/plugins/{name}"),
            };
            mounts.push(Mount { plugin: name, prefix, routes, endpoint: None });
        }
        problems.extend(mount::conflicts(&self.reserved, &mounts));
        mounts
    }

    fn command_conflicts(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut seen: BTreeMap<&str, String> =
            self.host_commands.iter().map(|name| (*name, "the server".to_owned())).collect();
        for command in &self.commands {
            if let Some(other) = seen.insert(command.name, format!("plugin `{}`", command.plugin)) {
                problems.push(Problem::CommandTaken {
                    plugin: command.plugin.to_owned(),
                    command: command.name.to_owned(),
                    other,
                });
            }
        }
        problems
    }

    /// Mounts the routes and gathers everything the plugins left into the [`App`].
    fn assemble(self, plan: &Plan, mounts: Vec<Mount>) -> Result<App, BuildError> {
        let mut problems = Vec::new();
        let mut routers = Vec::new();
        let mut openapi = OpenApi::default();
        let mut prefixes = BTreeMap::new();
        for pending in mounts {
            let (plugin, prefix, endpoint) =
                (pending.plugin, pending.prefix.clone(), pending.endpoint.is_some());
            match mount::mount(pending) {
                Ok((mounted, doc)) => {
                    routers.push(mounted);
                    openapi.merge(doc);
                    if !endpoint {
                        prefixes.insert(plugin, prefix);
                    }
                }
                Err(problem) => problems.push(problem),
            }
        }
        if !problems.is_empty() {
            return Err(BuildError { problems });
        }
        let plugins = plan
            .registered
            .values()
            .map(|plugin| {
                let meta = plugin.meta();
                PluginInfo {
                    name: meta.name,
                    version: meta.version,
                    description: meta.description,
                    author: meta.author,
                    dependencies: meta.dependencies.to_vec(),
                    enabled: plan.order.contains(&meta.name),
                    section: meta.section_key().into_owned(),
                    prefix: prefixes.get(meta.name).cloned(),
                }
            })
            .collect();
        Ok(App {
            plugins,
            order: plan.order.clone(),
            routers,
            openapi,
            startup: in_order(self.startup),
            shutdown: in_order(self.shutdown),
            probes: in_order(self.probes),
            scrapes: self.scrapes,
            commands: self.commands,
            sections: self.sections,
            extensions: self.extensions,
        })
    }
}

/// The items sorted by their plugin's position, keeping each plugin's own order.
fn in_order<T>(mut items: Vec<Ordered<T>>) -> Vec<T> {
    items.sort_by_key(|ordered| ordered.position);
    items.into_iter().map(|ordered| ordered.item).collect()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
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
    let cycles = cycles(&remaining);
    order.extend(remaining.keys().copied());
    (order, cycles)
}

/// The cycles among `remaining`, where every plugin depends on another one left.
fn cycles(remaining: &BTreeMap<&'static str, BTreeSet<&'static str>>) -> Vec<Vec<String>> {
    let mut cycles = Vec::new();
    let mut reported: BTreeSet<&str> = BTreeSet::new();
    for start in remaining.keys() {
        if reported.contains(start) {
            continue;
        }
        // Walking first dependencies from any plugin left must come back to a plugin
        // already visited: that is a cycle.
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
    cycles
}
