//! Workspace-wide rules, checked against `cargo metadata`.

// Test helpers outside `#[test]` functions may fail loudly too.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::process::Command;

use xcore_tests::workspace_root;

/// Each workspace package and the workspace packages it depends on (normal dependencies).
fn internal_dependencies() -> BTreeMap<String, Vec<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(workspace_root())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let packages = metadata["packages"].as_array().unwrap();
    let names: Vec<&str> = packages.iter().map(|p| p["name"].as_str().unwrap()).collect();
    packages
        .iter()
        .map(|package| {
            let deps = package["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|dep| dep["kind"].is_null())
                .map(|dep| dep["name"].as_str().unwrap())
                .filter(|name| names.contains(name))
                .map(str::to_owned)
                .collect();
            (package["name"].as_str().unwrap().to_owned(), deps)
        })
        .collect()
}

#[test]
fn dependencies_point_the_right_way() {
    let graph = internal_dependencies();
    assert!(graph["xcore-core"].is_empty(), "xcore-core depends on {:?}", graph["xcore-core"]);
    for (package, deps) in &graph {
        let is_plugin = package.starts_with("xcore-plugin-");
        for dep in deps {
            // The rules of ARCHITECTURE.md's "Architecture invariants", one per crate.
            let allowed = match (package.as_str(), dep.as_str()) {
                ("xcore-server", _) => true,
                ("xtask" | "xcore-tests", _) => false,
                // A pure library: no xcore crate at all.
                ("xcore-otp", _) => false,
                // The middleware knows no token format and no module; the database and the
                // cache need nothing but the plugin API.
                ("xcore-middleware" | "xcore-db" | "xcore-cache", dep) => dep == "xcore-core",
                ("xcore-auth", dep) => {
                    ["xcore-core", "xcore-db", "xcore-otp", "xcore-middleware"].contains(&dep)
                }
                // Messaging authenticates through the middleware's gate, never the auth crate.
                ("xcore-messaging", dep) => {
                    ["xcore-core", "xcore-db", "xcore-middleware"].contains(&dep)
                }
                // Later service crates and plugins build on core and the services they use.
                (_, dep) => dep != "xcore-server" && !dep.starts_with("xcore-plugin-"),
            };
            assert!(allowed, "{package} must not depend on {dep}");
        }
        if is_plugin {
            assert!(deps.iter().any(|d| d == "xcore-core"), "{package} must build on xcore-core");
        }
    }
}

/// The crates that register a plugin (`register_plugin!` in their sources): plugin
/// crates and modules alike.
fn registering_crates() -> Vec<String> {
    let mut found = Vec::new();
    let root = workspace_root();
    let mut dirs: Vec<std::path::PathBuf> = std::fs::read_dir(root.join("crates"))
        .unwrap()
        .chain(std::fs::read_dir(root.join("crates/plugins")).unwrap())
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("Cargo.toml").is_file())
        .collect();
    dirs.sort();
    for dir in dirs {
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        let name = manifest
            .lines()
            .find_map(|line| line.strip_prefix("name = \""))
            .and_then(|rest| rest.strip_suffix('"'))
            .unwrap()
            .to_owned();
        if name == "xcore-core" {
            continue;
        }
        let mut stack = vec![dir.join("src")];
        let mut registers = false;
        while let Some(path) = stack.pop() {
            for entry in std::fs::read_dir(&path).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if std::fs::read_to_string(&path).unwrap().contains("\nregister_plugin!(") {
                    registers = true;
                }
            }
        }
        if registers {
            found.push(name);
        }
    }
    found
}

/// Modules are plugins too: every crate that registers one is linked by the server, and
/// the server names them nowhere else (it is a host, not a list of modules).
#[test]
fn the_server_references_every_plugin_crate_and_nothing_more() {
    let registering = registering_crates();
    for module in ["xcore-auth", "xcore-cache", "xcore-db", "xcore-messaging", "xcore-plugin-hello"]
    {
        assert!(registering.iter().any(|name| name == module), "{module} registers no plugin");
    }
    let src = workspace_root().join("crates/server/src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let mut sources = Vec::new();
    let mut stack = vec![src];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if !path.ends_with("tests.rs")
                && !path.parent().is_some_and(|dir| dir.ends_with("tests"))
            {
                sources.push((path.clone(), std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    for name in &registering {
        let ident = name.replace('-', "_");
        let reference = format!("use {ident} as _;");
        assert!(lib.contains(&reference), "crates/server/src/lib.rs lacks `{reference}`");
        for (path, text) in &sources {
            let mentions = text.matches(ident.as_str()).count();
            let allowed = if text.contains(&reference) { 1 } else { 0 };
            assert_eq!(
                mentions,
                allowed,
                "{} names `{ident}` outside the `use … as _;` list",
                path.display()
            );
        }
    }
}
