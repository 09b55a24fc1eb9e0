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
            let allowed = match package.as_str() {
                "xcore-server" => true,
                "xtask" | "xcore-tests" => false,
                _ => dep != "xcore-server" && !dep.starts_with("xcore-plugin-"),
            };
            assert!(allowed, "{package} must not depend on {dep}");
        }
        if is_plugin {
            assert!(deps.iter().any(|d| d == "xcore-core"), "{package} must build on xcore-core");
        }
    }
}

#[test]
fn the_server_references_every_plugin_crate() {
    let plugins: Vec<String> = internal_dependencies()
        .into_keys()
        .filter(|name| name.starts_with("xcore-plugin-"))
        .collect();
    let lib = std::fs::read_to_string(workspace_root().join("crates/server/src/lib.rs")).unwrap();
    for plugin in &plugins {
        let reference = format!("use {} as _;", plugin.replace('-', "_"));
        assert!(lib.contains(&reference), "crates/server/src/lib.rs lacks `{reference}`");
    }
}
