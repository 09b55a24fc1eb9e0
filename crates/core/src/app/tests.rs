//! Tests of building applications from plugins.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::routing::get;
use figment::providers::{Format, Toml};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};

use tower::ServiceExt;

use super::*;
use crate::{BuildError, Plugin, Registry};

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

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TestConfig {
    reply: String,
}

impl crate::config::Section for TestConfig {}

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

fn build(plugins: Vec<&'static dyn Plugin>, toml: &str) -> Result<App, BuildError> {
    let mut builder = AppBuilder::new(Figment::from(Toml::string(toml)));
    builder.reserve_path("/health");
    builder.build(&Registry::new(plugins))
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
    assert!(error.starts_with("the application cannot be built (7 problems):\n  - "), "{error}");
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
async fn an_endpoint_is_served_at_its_exact_path_and_checked_like_a_prefix() {
    static GATEWAY: crate::FnPlugin = crate::FnPlugin::new(PluginMeta::new("gateway"), |app| {
        app.routes(Routes::new().route("/", get(|| async { "api" })));
        app.endpoint("/live", Routes::new().route("/", get(|| async { "live" })))?;
        Ok(())
    });
    static CLASH: TestPlugin =
        TestPlugin { prefix: Some("/live"), ..TestPlugin::new("clash", &[]) };
    static BAD: crate::FnPlugin = crate::FnPlugin::new(PluginMeta::new("bad"), |app| {
        app.endpoint("/live/", Routes::new())?;
        Ok(())
    });
    let app = build(vec![&GATEWAY], "").unwrap();
    assert_eq!(get_body(&app.router(), "/live").await, (200, "live".into()));
    assert_eq!(get_body(&app.router(), "/live/").await.0, 404, "no redirect, no second path");
    assert_eq!(get_body(&app.router(), "/plugins/gateway/").await, (200, "api".into()));
    let prefixes: Vec<_> = app.plugins.iter().map(|p| (p.name, p.prefix.clone())).collect();
    assert_eq!(prefixes, [("gateway", Some("/plugins/gateway".to_owned()))]);

    assert_eq!(
        problems(build(vec![&GATEWAY, &CLASH], "")),
        ["routes of plugin `gateway` under `/live` conflict with plugin `clash` under `/live`"]
    );
    assert_eq!(
        problems(build(vec![&BAD], "")),
        ["plugin `bad`: invalid route prefix `/live/`: it must not end with `/`"]
    );
}

#[tokio::test]
async fn a_directory_is_served_at_its_path_with_the_slash() {
    static SIO: crate::FnPlugin = crate::FnPlugin::new(PluginMeta::new("sio"), |app| {
        app.directory("/socket.io", Routes::new().route("/", get(|| async { "engine" })))?;
        Ok(())
    });
    static CLASH: TestPlugin =
        TestPlugin { prefix: Some("/socket.io"), ..TestPlugin::new("clash", &[]) };
    let app = build(vec![&SIO], "").unwrap();
    assert_eq!(get_body(&app.router(), "/socket.io/").await, (200, "engine".into()));
    assert_eq!(get_body(&app.router(), "/socket.io").await.0, 404, "no redirect, no second path");
    assert_eq!(
        problems(build(vec![&SIO, &CLASH], "")),
        [
            "routes of plugin `sio` under `/socket.io` conflict with plugin `clash` under `/socket.io`"
        ]
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
    static NEEDY: crate::FnPlugin = crate::FnPlugin::new(PluginMeta::new("needy"), needs_database);
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
    static CLASHING: crate::FnPlugin = crate::FnPlugin::new(PluginMeta::new("clashing"), clashing);
    static RELATIVE: crate::FnPlugin = crate::FnPlugin::new(PluginMeta::new("relative"), relative);
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

/// A module with its own section and prefix, and an extension other plugins register
/// greetings through; it reads them in `finish`.
struct Greeter;

#[derive(Default)]
struct Greetings(Vec<&'static str>);

trait GreetingsExt {
    fn greet_with(&mut self, greeting: &'static str);
}

impl GreetingsExt for AppBuilder {
    fn greet_with(&mut self, greeting: &'static str) {
        self.extensions_mut().get_or_default::<Greetings>().0.push(greeting);
    }
}

impl Plugin for Greeter {
    fn meta(&self) -> PluginMeta {
        PluginMeta {
            section: Some("greeter"),
            prefix: Some("/greet"),
            ..PluginMeta::new("greeter")
        }
    }

    fn build(&self, app: &mut AppBuilder) -> Result<(), PluginError> {
        let config: TestConfig = app.config()?;
        if config.reply.is_empty() {
            return Err(app.config_error("reply", "must not be empty"));
        }
        app.routes(Routes::new().route("/", get(move || async move { config.reply })));
        app.readiness("greeter", false, || async { Ok("fine".to_owned()) });
        app.command("greet", "Print the greetings", |_| async { Ok(()) });
        Ok(())
    }

    fn finish(&self, app: &mut AppBuilder) -> Result<(), PluginError> {
        let greetings = app.extensions_mut().remove::<Greetings>().unwrap_or_default().0;
        let journal = app.extensions_mut().get_or_default::<Journal>().clone();
        app.on_startup(move || async move {
            journal.0.lock().unwrap().push(format!("greetings {}", greetings.join(" ")));
            Ok(())
        });
        Ok(())
    }
}

fn greeting_user(app: &mut AppBuilder) -> Result<(), PluginError> {
    app.greet_with("bonjour");
    let journal = app.extensions_mut().get_or_default::<Journal>().clone();
    app.on_startup(move || async move {
        journal.0.lock().unwrap().push("start user".to_owned());
        Ok(())
    });
    Ok(())
}

static GREETER: Greeter = Greeter;
static USER: crate::FnPlugin = crate::FnPlugin::new(
    PluginMeta { dependencies: &["greeter"], ..PluginMeta::new("user") },
    greeting_user,
);

fn build_modules(toml: &str) -> Result<App, BuildError> {
    let mut builder = AppBuilder::new(Figment::from(Toml::string(toml)));
    builder.host_sections(&["server"]).host_commands(&["serve"]).reserve_path("/health");
    builder.build(&Registry::new(vec![&GREETER, &USER]))
}

#[tokio::test]
async fn a_module_reads_its_own_section_and_mounts_at_its_prefix() {
    let mut app = build_modules("[server]\nport = 1\n[greeter]\nreply = \"salut\"").unwrap();
    assert_eq!(get_body(&app.router(), "/greet/").await, (200, "salut".into()));
    let info: Vec<_> =
        app.plugins.iter().map(|p| (p.name, p.section.as_str(), p.prefix.as_deref())).collect();
    assert_eq!(info, [("greeter", "greeter", Some("/greet")), ("user", "plugins.user", None)]);
    assert_eq!(app.sections["greeter"], serde_json::json!({"reply": "salut"}));
    assert_eq!(
        app.probes.iter().map(|p| (p.name, p.essential)).collect::<Vec<_>>(),
        [("greeter", false)]
    );
    assert_eq!(app.probes[0].check().await, Ok("fine".to_owned()));
    assert_eq!(
        app.commands.iter().map(|c| (c.name, c.plugin)).collect::<Vec<_>>(),
        [("greet", "greeter")]
    );
    app.start().await.unwrap();
}

#[tokio::test]
async fn finish_sees_what_later_plugins_registered_and_its_hooks_keep_the_order() {
    let mut app = build_modules("").unwrap();
    let journal = app.extensions.get::<Journal>().unwrap().clone();
    app.start().await.unwrap();
    assert_eq!(*journal.0.lock().unwrap(), ["greetings bonjour", "start user"]);
}

#[test]
fn sections_and_commands_belong_to_someone() {
    let toml = "[greetr]\nreply = 1\n[plugins.greeter]\nreply = \"x\"\n[greeter]\nreply = \"\"";
    assert_eq!(
        problems(build_modules(toml)),
        [
            "config section `[plugins.greeter]` does not belong to any registered plugin",
            "config: `greetr`: unknown section `greetr`; expected one of: greeter, plugins, server \
             (from TOML source string)",
            "plugin `greeter`: invalid config: `greeter.reply`: must not be empty (from TOML source string)",
        ]
    );
    static TAKER: crate::FnPlugin = crate::FnPlugin::new(
        PluginMeta { section: Some("server"), ..PluginMeta::new("taker") },
        |app| {
            app.command("serve", "", |_| async { Ok(()) });
            Ok(())
        },
    );
    let mut builder = AppBuilder::new(Figment::new());
    builder.host_sections(&["server"]).host_commands(&["serve"]);
    assert_eq!(
        problems(builder.build(&Registry::new(vec![&TAKER]))),
        [
            "plugin `taker` claims the config section `[server]`, which belongs to the server",
            "plugin `taker` adds the command `serve`, which belongs to the server",
        ]
    );
}
