//! `cargo xtask new-plugin <name>`: a new plugin crate in the hello plugin's shape, linked
//! into the server, building and tested from the start.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// Longest plugin name accepted.
const MAX_NAME: usize = 40;

/// Checks `name`: it becomes a URL segment (`/plugins/<name>`), a config key
/// (`[plugins.<name>]`), part of environment variable names (`XCORE_PLUGINS__<NAME>__…`)
/// and of a crate name, so it is lower-case ASCII letters, digits and underscores, starting
/// with a letter.
///
/// # Errors
///
/// What is wrong with it.
pub fn check_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let Some(first) = chars.next() else { bail!("the plugin name is empty") };
    if !first.is_ascii_lowercase() {
        bail!("`{name}`: a plugin name starts with a lower-case letter (a-z)");
    }
    if let Some(bad) =
        name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        bail!(
            "`{name}`: `{bad}` is not allowed; use lower-case letters, digits and `_` (the name \
             is also a config key and part of environment variable names)"
        );
    }
    if name.len() > MAX_NAME {
        bail!("`{name}`: a plugin name has at most {MAX_NAME} characters");
    }
    Ok(())
}

/// `Foo` for `foo`, `BlogPosts` for `blog_posts`.
fn type_name(name: &str) -> String {
    name.split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase())
                .into_iter()
                .chain(chars)
                .collect::<String>()
        })
        .collect()
}

/// Creates `crates/plugins/<name>` under the workspace `root` and links it into the server.
///
/// # Errors
///
/// An invalid or taken name, or a file that cannot be read or written. Nothing is written
/// unless every check passed.
pub fn create(root: &Path, name: &str) -> Result<()> {
    check_name(name)?;
    let dir = root.join("crates/plugins").join(name);
    if dir.exists() {
        bail!("`{name}`: {} already exists", dir.display());
    }
    let server_manifest = root.join("crates/server/Cargo.toml");
    let server_lib = root.join("crates/server/src/lib.rs");
    let server_tests = root.join("crates/server/src/tests/mod.rs");
    let manifest = read(&server_manifest)?;
    let lib = read(&server_lib)?;
    let tests = read(&server_tests)?;
    let crate_name = format!("xcore-plugin-{name}");
    if manifest.contains(&format!("{crate_name} ")) || manifest.contains(&format!("{crate_name}."))
    {
        bail!("`{name}`: the server already depends on {crate_name}");
    }

    // Every edit is computed before anything is written.
    let manifest = insert_after_last(
        &manifest,
        "xcore-plugin-",
        &format!("{crate_name} = {{ path = \"../plugins/{name}\" }}"),
    )
    .context("crates/server/Cargo.toml names no plugin crate to add this one after")?;
    let lib =
        insert_after_last(&lib, "use xcore_plugin_", &format!("use xcore_plugin_{name} as _;"))
            .context("crates/server/src/lib.rs names no plugin crate to add this one after")?;
    let tests = with_registered(&tests, name)?;

    let ty = type_name(name);
    let files = [("Cargo.toml", MANIFEST), ("src/lib.rs", LIB)];
    std::fs::create_dir_all(dir.join("src"))?;
    for (path, template) in files {
        let text = template
            .replace("{name}", name)
            .replace("{NAME}", &name.to_uppercase())
            .replace("{Type}", &ty);
        std::fs::write(dir.join(path), text)?;
    }
    std::fs::write(&server_manifest, manifest)?;
    std::fs::write(&server_lib, lib)?;
    std::fs::write(&server_tests, tests)?;
    for path in [&server_lib, &server_tests, &dir.join("src/lib.rs")] {
        rustfmt(path);
    }
    println!(
        "created crates/plugins/{name} ({crate_name}), linked into the server: \
         `cargo run` serves GET /plugins/{name}/, `cargo test -p {crate_name}` tests it"
    );
    Ok(())
}

/// Lays `path` out as `cargo fmt` does, so that the edit can be committed as it is.
/// Without rustfmt the file is still valid, only laid out differently: say so.
fn rustfmt(path: &Path) {
    let status =
        std::process::Command::new("rustfmt").args(["--edition", "2024"]).arg(path).status();
    if !status.is_ok_and(|status| status.success()) {
        eprintln!("note: rustfmt did not run on {}: run `cargo fmt --all`", path.display());
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// `text` with `line` added after the last line that starts with `prefix`.
fn insert_after_last(text: &str, prefix: &str, line: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let last = lines.iter().rposition(|l| l.trim_start().starts_with(prefix))?;
    let mut out: Vec<&str> = lines[..=last].to_vec();
    out.push(line);
    out.extend(&lines[last + 1..]);
    Some(out.join("\n") + "\n")
}

/// The server tests with `name` in the exact set of registered plugins. The list is
/// written on one line, whether rustfmt had laid it out on one or one name a line:
/// [`rustfmt`] lays it out again, as it does the other files `create` writes.
fn with_registered(tests: &str, name: &str) -> Result<String> {
    const CALL: &str = "Registry::linked().names(),";
    let start = tests.find(CALL).context("the server tests do not list the registered plugins")?;
    let after_call = start + CALL.len();
    let open = tests[after_call..]
        .find('[')
        .context("the server tests do not list the registered plugins")?;
    let list_start = after_call + open + 1;
    let list_end = list_start
        + tests[list_start..].find(']').context("unterminated list of registered plugins")?;
    let mut names: Vec<String> = tests[list_start..list_end]
        .split(',')
        .map(|item| item.trim().trim_matches('"').to_owned())
        .filter(|item| !item.is_empty())
        .collect();
    names.push(name.to_owned());
    names.sort();
    let list = names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ");
    Ok(format!("{}{list}{}", &tests[..list_start], &tests[list_end..]))
}

const MANIFEST: &str = r#"[package]
name = "xcore-plugin-{name}"
description = "The {name} plugin."
version.workspace = true
edition.workspace = true
rust-version.workspace = true
license.workspace = true

[dependencies]
xcore-core.workspace = true
axum.workspace = true
serde.workspace = true
utoipa.workspace = true
utoipa-axum.workspace = true

[dev-dependencies]
figment.workspace = true
http-body-util.workspace = true
serde_json.workspace = true
tokio.workspace = true
tower.workspace = true

[lints]
workspace = true
"#;

const LIB: &str = r#"//! The `{name}` plugin: `GET /plugins/{name}/` answers its configured greeting.
//!
//! Made by `cargo xtask new-plugin {name}` in the shape of the hello plugin, which shows
//! the rest (database, migrations, cache, hooks, and a route that writes: signed-in callers
//! only, with `CurrentUser`, within a quota of its own, with `RateLimit::single`).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::routes;
use xcore_core::config::{Problems, Section};
use xcore_core::{AppBuilder, Plugin, PluginError, PluginMeta, Routes, register_plugin};

/// The plugin; the server links this crate with `use xcore_plugin_{name} as _;`.
#[derive(Debug, Clone, Copy)]
pub struct {Type};

register_plugin!({Type});

/// `[plugins.{name}]` in `xcore.toml`, or `XCORE_PLUGINS__{NAME}__<KEY>` in the environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct {Type}Config {
    /// What `GET /plugins/{name}/` answers.
    pub greeting: String,
}

impl Default for {Type}Config {
    fn default() -> Self {
        Self { greeting: "Hello from {name}!".to_owned() }
    }
}

/// What serde cannot check; each problem is reported with its key and where it was set.
impl Section for {Type}Config {
    fn validate(&self, problems: &mut Problems) {
        problems.check(!self.greeting.trim().is_empty(), "greeting", "must not be empty");
    }
}

impl Plugin for {Type} {
    fn meta(&self) -> PluginMeta {
        PluginMeta {
            version: env!("CARGO_PKG_VERSION"),
            description: env!("CARGO_PKG_DESCRIPTION"),
            ..PluginMeta::new("{name}")
        }
    }

    fn build(&self, app: &mut AppBuilder) -> Result<(), PluginError> {
        let config: {Type}Config = app.config()?;
        let greeting: Arc<str> = config.greeting.into();
        app.routes(Routes::new().routes(routes!(greet)).with_state(greeting));
        Ok(())
    }
}

/// The answer of `GET /plugins/{name}/`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Greeting {
    pub message: String,
}

/// Answers the configured greeting.
#[utoipa::path(get, path = "/", tag = "{name}", responses((status = 200, body = Greeting)))]
async fn greet(State(greeting): State<Arc<str>>) -> Json<Greeting> {
    Json(Greeting { message: greeting.to_string() })
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use figment::Figment;
    use figment::providers::{Format, Toml};
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    use xcore_core::Registry;

    use super::*;

    /// The plugin alone, built the way the server builds it, with `config` as `xcore.toml`.
    fn app(config: &str) -> Result<axum::Router, xcore_core::BuildError> {
        let builder = AppBuilder::new(Figment::from(Toml::string(config)));
        Ok(builder.build(&Registry::new(vec![&{Type}]))?.router())
    }

    #[tokio::test]
    async fn greets_with_the_configured_greeting() {
        let router = app("[plugins.{name}]\ngreeting = \"Hi there\"").unwrap();
        let request = Request::get("/plugins/{name}/").body(Body::empty()).unwrap();
        let response = router.oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body, serde_json::json!({"message": "Hi there"}));
    }

    #[test]
    fn refuses_bad_config() {
        let error = app("[plugins.{name}]\ngreting = \"typo\"").unwrap_err();
        assert!(error.to_string().contains("unknown key `greting`"), "{error}");
        let error = app("[plugins.{name}]\ngreeting = \" \"").unwrap_err();
        assert!(error.to_string().contains("`plugins.{name}.greeting`: must not be empty"), "{error}");
    }
}
"#;

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["blog", "blog_posts", "v2", "a"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Blog", "2fa", "blog-posts", "blog posts", "_x", "é", &"a".repeat(41)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(type_name("blog_posts"), "BlogPosts");
        assert_eq!(type_name("v2"), "V2");
    }

    #[test]
    fn the_registered_list_stays_sorted() {
        let tests = "fn t() {\n    assert_eq!(Registry::linked().names(), [\"hello\"]);\n}\n";
        let updated = with_registered(tests, "blog").unwrap();
        assert!(updated.contains("names(), [\"blog\", \"hello\"]);"), "{updated}");
        // As rustfmt lays out a list too long for one line.
        let tests = "fn t() {\n    assert_eq!(\n        Registry::linked().names(),\n        [\n            \
                     \"auth\",\n            \"hello\"\n        ]\n    );\n}\n";
        let updated = with_registered(tests, "blog").unwrap();
        assert!(updated.contains("[\"auth\", \"blog\", \"hello\"]\n    );"), "{updated}");
    }

    /// Copies the workspace's sources (not `target/` or `.git/`) to `to`.
    fn copy_workspace(from: &Path, to: &Path) {
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name();
            if matches!(name.to_str(), Some("target" | ".git" | "data")) {
                continue;
            }
            let target = to.join(&name);
            if entry.file_type().unwrap().is_dir() {
                std::fs::create_dir_all(&target).unwrap();
                copy_workspace(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), &target).unwrap();
            }
        }
    }

    /// The whole path: scaffold in a copy of the workspace, then its tests and the
    /// server's registration test pass. Slow (it compiles the workspace's crates again in
    /// the copy), so it shares the workspace's target directory: the registry crates are
    /// reused, and the copy's own crates, at other paths, get artifacts of their own.
    #[test]
    fn a_new_plugin_builds_and_its_tests_pass() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let copy = tempfile::tempdir().unwrap();
        copy_workspace(&root, copy.path());
        create(copy.path(), "demo").unwrap();
        let again = create(copy.path(), "demo").unwrap_err();
        assert!(again.to_string().contains("already exists"), "{again}");
        assert!(create(copy.path(), "Bad-Name").is_err());

        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| root.join("target"), std::path::PathBuf::from);
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let run = |args: &[&str]| {
            let output = Command::new(&cargo)
                .args(args)
                .current_dir(copy.path())
                .env("CARGO_TARGET_DIR", &target)
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "cargo {args:?} failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8_lossy(&output.stdout).into_owned()
        };
        let plugin = run(&["test", "-p", "xcore-plugin-demo"]);
        assert!(plugin.contains("test result: ok. 2 passed"), "{plugin}");
        let server = run(&["test", "-p", "xcore-server", "--lib", "the_exact_set_is_registered"]);
        assert!(server.contains("test result: ok. 1 passed"), "{server}");
    }
}
