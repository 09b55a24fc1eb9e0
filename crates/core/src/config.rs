//! Typed config sections.
//!
//! The host loads one layered [`Figment`] (defaults, then `xcore.toml`, then `XCORE_…`
//! environment variables); each crate and each plugin reads its own section of it into a
//! [`Section`]: a struct that rejects unknown keys and reports what serde cannot see through
//! [`Section::validate`]. Every problem comes back as a [`ConfigError`] with the dotted key
//! and where the bad value came from (a file or an environment variable), so the user knows
//! exactly what to fix, whichever section it is in.

use std::collections::BTreeMap;
use std::fmt;

use figment::Figment;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A config section: deserialized with serde (give it `#[serde(deny_unknown_fields,
/// default)]`), then checked by [`validate`](Self::validate) for what serde cannot express.
/// Read one with [`read`] or, in a plugin, with
/// [`AppBuilder::config`](crate::AppBuilder::config).
pub trait Section: Serialize + DeserializeOwned + Default {
    /// Records every problem with the values, by key relative to the section. The default
    /// finds none.
    fn validate(&self, problems: &mut Problems) {
        let _ = problems;
    }
}

/// The problems one section found in its values, by key relative to the section; [`read`]
/// turns them into [`ConfigError`]s naming the full key and its origin.
#[derive(Debug, Default)]
pub struct Problems {
    found: Vec<(String, String)>,
}

impl Problems {
    /// Records that `key` (relative to the section, dotted: `password.min_length`) is wrong,
    /// and why.
    pub fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.found.push((key.into(), message.into()));
    }

    /// Records the problem unless `ok`.
    pub fn check(&mut self, ok: bool, key: &str, message: &str) {
        if !ok {
            self.add(key, message);
        }
    }

    /// Records the problems of a nested table `key`, such as `[auth.password]`.
    pub fn nested(&mut self, key: &str, section: &impl Section) {
        let mut inner = Problems::default();
        section.validate(&mut inner);
        for (nested, message) in inner.found {
            self.add(format!("{key}.{nested}"), message);
        }
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// The recorded problems as errors under section `key`, with their origins in
    /// `figment`.
    pub fn into_errors(self, figment: &Figment, key: &str) -> Vec<ConfigError> {
        self.found
            .into_iter()
            .map(|(relative, message)| {
                let key = if key.is_empty() { relative } else { format!("{key}.{relative}") };
                ConfigError { origin: origin(figment, &key), key, message }
            })
            .collect()
    }
}

/// The problems `section` finds in its own values, as (key relative to the section,
/// message): what [`read`] reports, without a figment to name origins.
pub fn problems(section: &impl Section) -> Vec<(String, String)> {
    let mut problems = Problems::default();
    section.validate(&mut problems);
    problems.found
}

/// Reads section `key` (a dotted path such as `auth` or `plugins.hello`) as a `T`, then
/// validates it.
///
/// A missing section is read as an empty table, so `T`'s serde defaults apply.
///
/// # Errors
///
/// Every invalid or unknown key and every problem [`Section::validate`] found, each naming
/// its full key and origin.
pub fn read<T: Section>(figment: &Figment, key: &str) -> Result<T, Vec<ConfigError>> {
    let section: T = extract_section(figment, key)?;
    let mut problems = Problems::default();
    section.validate(&mut problems);
    if problems.is_empty() { Ok(section) } else { Err(problems.into_errors(figment, key)) }
}

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

/// Keys whose values are never printed.
const SECRET_WORDS: [&str; 6] =
    ["secret", "password", "token", "private_key", "api_key", "credential"];

/// `value` with secrets replaced by `"***"`, for printing: the value of any key naming a
/// secret (`secret`, `smtp_password`, `api_key`, …) and the password of any URL. Nulls are
/// dropped, since TOML has none.
pub fn redacted(mut value: serde_json::Value) -> serde_json::Value {
    redact(&mut value);
    value
}

fn redact(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|_, value| !value.is_null());
            for (key, value) in map.iter_mut() {
                let key = key.to_lowercase();
                // A table named like a secret (`[auth.password]`) holds settings, not a
                // secret: its own keys are checked.
                if SECRET_WORDS.iter().any(|word| key.contains(word)) && !value.is_object() {
                    *value = serde_json::Value::String("***".to_owned());
                } else {
                    redact(value);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact),
        serde_json::Value::String(text) if text.contains("://") => *text = redact_url(text),
        _ => {}
    }
}

/// `url` with its password, if any, replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let Some((credentials, host)) = rest.rsplit_once('@') else { return url.to_owned() };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use figment::providers::{Env, Format, Toml};

    use super::*;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Sample {
        name: String,
        size: u32,
    }

    impl Default for Sample {
        fn default() -> Self {
            Self { name: "default".into(), size: 1 }
        }
    }

    impl Section for Sample {
        fn validate(&self, problems: &mut Problems) {
            problems.check(self.size <= 100, "size", "must be at most 100");
        }
    }

    fn check(toml: &str, expected: Result<Sample, &str>) {
        let figment = Figment::from(Toml::string(toml));
        let actual = read::<Sample>(&figment, "a.b").map_err(|errors| {
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
        check("", Ok(Sample::default()));
        check("[a.b]\nsize = 3", Ok(Sample { name: "default".into(), size: 3 }));
        check(
            "[a.b]\nsise = 3",
            Err("`a.b.sise`: unknown key `sise`; expected one of: name, size"),
        );
        check("[a.b]\nsize = \"big\"", Err("`a.b.size`: invalid type"));
        check(
            "[a.b]\nsize = 300",
            Err("`a.b.size`: must be at most 100 (from TOML source string)"),
        );
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn validation_problems_name_the_variable_they_came_from() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("XCORE_A__B__SIZE", "500");
            let figment = Figment::new().merge(Env::prefixed(ENV_PREFIX).split(ENV_SEPARATOR));
            let errors = read::<Sample>(&figment, "a.b").unwrap_err();
            assert_eq!(
                errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
                ["`a.b.size`: must be at most 100 (from environment variable XCORE_A__B__SIZE)"]
            );
            Ok(())
        });
    }

    #[test]
    fn secrets_and_url_passwords_are_redacted() {
        let value = serde_json::json!({
            "url": "postgres://app:hunter2@db:5432/app",
            "secret": "hunter2",
            "password": {"min_length": 8},
            "nested": [{"api_key": "k", "host": "smtp", "unset": null}],
        });
        assert_eq!(
            redacted(value),
            serde_json::json!({
                "url": "postgres://app:***@db:5432/app",
                "secret": "***",
                "password": {"min_length": 8},
                "nested": [{"api_key": "***", "host": "smtp"}],
            })
        );
    }
}
