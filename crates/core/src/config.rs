//! Typed config sections.
//!
//! The host loads one layered [`Figment`] (defaults, then `xcore.toml`, then `XCORE_…`
//! environment variables); each crate and each plugin reads its own section of it into a
//! struct that rejects unknown keys. Errors keep the key path and say where the bad value
//! came from, so the user knows exactly what to fix.

use std::collections::BTreeMap;
use std::fmt;

use figment::Figment;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The `[plugins]` section: which plugins are switched off, and one table per plugin.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PluginsConfig {
    /// Names of registered plugins that contribute nothing to the application.
    pub disabled: Vec<String>,
    /// `[plugins.<name>]` tables, checked against the registered plugins when the
    /// application is built and read by each plugin through
    /// [`AppBuilder::config`](crate::AppBuilder::config).
    #[serde(flatten)]
    pub sections: BTreeMap<String, serde_json::Value>,
}

/// One invalid or unknown config value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the offending key, for example `server.port`.
    pub key: String,
    /// Where the value came from: a file, an environment variable, or the defaults.
    pub origin: Option<String>,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.key, self.message)?;
        if let Some(origin) = &self.origin {
            write!(f, " (from {origin})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Reads the section at `key` (a dotted path such as `plugins.hello`, or `""` for the
/// whole config) as a `T`.
///
/// A missing section is read as an empty table, so `T`'s serde defaults apply.
///
/// # Errors
///
/// Returns every problem figment reports, each naming its key and origin.
pub fn extract_section<T: DeserializeOwned>(
    figment: &Figment,
    key: &str,
) -> Result<T, Vec<ConfigError>> {
    // `focus` rather than `extract_inner`: the latter appends the key to error paths
    // instead of prepending it, so the reported key would be wrong.
    let focused = if key.is_empty() { figment.clone() } else { figment.focus(key) };
    focused.extract::<T>().map_err(|error| {
        let prefix: Vec<String> =
            key.split('.').filter(|part| !part.is_empty()).map(str::to_owned).collect();
        let error = error.into_iter().map(|mut error| {
            error.path.splice(0..0, prefix.iter().cloned());
            error
        });
        error.flat_map(|error| from_figment(figment, error)).collect()
    })
}

/// Converts a figment error (which may hold several) into [`ConfigError`]s.
pub fn from_figment(figment: &Figment, error: figment::Error) -> Vec<ConfigError> {
    error
        .into_iter()
        .map(|error| {
            // For an unknown key, figment's path already ends with that key.
            let path = error.path.clone();
            let key = path.join(".");
            let origin = error
                .metadata
                .as_ref()
                .or_else(|| figment.find_metadata(&key))
                .map(|meta| describe_origin(meta, &path));
            ConfigError { key, origin, message: describe_kind(&error.kind) }
        })
        .collect()
}

/// Prefix of the environment variables that override the config.
pub const ENV_PREFIX: &str = "XCORE_";
/// Separator of sections and keys in those variables: `XCORE_SERVER__PORT`.
pub const ENV_SEPARATOR: &str = "__";

/// The environment variable that sets the key at `path`.
pub fn env_var(path: &[String]) -> String {
    format!("{ENV_PREFIX}{}", path.join(ENV_SEPARATOR).to_uppercase())
}

/// Where the value at `key` (a dotted path) came from, described for people.
pub fn origin(figment: &Figment, key: &str) -> Option<String> {
    let path: Vec<String> = key.split('.').map(str::to_owned).collect();
    figment.find_metadata(key).map(|meta| describe_origin(meta, &path))
}

fn describe_origin(meta: &figment::Metadata, path: &[String]) -> String {
    match &meta.source {
        Some(figment::Source::File(file)) => format!("file {}", file.display()),
        _ if meta.name.contains("environment") => format!("environment variable {}", env_var(path)),
        _ => meta.name.to_string(),
    }
}

fn describe_kind(kind: &figment::error::Kind) -> String {
    use figment::error::Kind;
    match kind {
        Kind::UnknownField(field, expected) => {
            let expected = if expected.is_empty() {
                "no keys are allowed here".to_owned()
            } else {
                format!("expected one of: {}", expected.join(", "))
            };
            format!("unknown key `{field}`; {expected}")
        }
        Kind::MissingField(field) => format!("missing required key `{field}`"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use figment::providers::{Format, Toml};

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Section {
        name: String,
        size: u32,
    }

    impl Default for Section {
        fn default() -> Self {
            Self { name: "default".into(), size: 1 }
        }
    }

    fn check(toml: &str, expected: Result<Section, &str>) {
        let figment = Figment::from(Toml::string(toml));
        let actual = extract_section::<Section>(&figment, "a.b").map_err(|errors| {
            errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
        });
        match (actual, expected) {
            (Ok(actual), Ok(expected)) => assert_eq!(actual, expected),
            (Err(actual), Err(expected)) => {
                assert!(actual.contains(expected), "{actual:?} does not contain {expected:?}")
            }
            (actual, expected) => panic!("got {actual:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn reads_sections_with_defaults_and_names_bad_keys() {
        check("", Ok(Section::default()));
        check("[a.b]\nsize = 3", Ok(Section { name: "default".into(), size: 3 }));
        check(
            "[a.b]\nsise = 3",
            Err("`a.b.sise`: unknown key `sise`; expected one of: name, size"),
        );
        check("[a.b]\nsize = \"big\"", Err("`a.b.size`: invalid type"));
    }
}
