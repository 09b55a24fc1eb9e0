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

mod redact;
pub use redact::{redact_url, redacted};

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
    let (section, mut errors) = match extract_partial::<T>(figment, key) {
        Ok(section) => (Some(section), Vec::new()),
        Err((errors, partial)) => (partial, errors),
    };
    // A section read without its offending keys is still checked, so values serde
    // accepted but `validate` refuses are reported in the same run.
    if let Some(section) = &section {
        let mut problems = Problems::default();
        section.validate(&mut problems);
        errors.extend(problems.into_errors(figment, key));
    }
    match section {
        Some(section) if errors.is_empty() => Ok(section),
        _ => Err(errors),
    }
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
    extract_partial(figment, key).map_err(|(errors, _)| errors)
}

/// At most this many bad keys are reported per section: each costs one more reading of
/// the section.
const MAX_PROBLEMS: usize = 100;

/// As [`extract_section`]; when the section is invalid, also the `T` read from it without
/// its offending keys (`None` when even that fails), so its other values can be checked.
///
/// serde stops at the first problem. To name every bad key in one run, the offending key
/// is taken out (its default then applies) and the section read again, until it reads or
/// a problem cannot be taken out (a missing required key, a section that is not a table).
/// Each reading sees the real values, so no problem is made up by reading keys apart.
fn extract_partial<T: DeserializeOwned>(
    figment: &Figment,
    key: &str,
) -> Result<T, (Vec<ConfigError>, Option<T>)> {
    // `focus` rather than `extract_inner`: the latter appends the key to error paths
    // instead of prepending it, so the reported key would be wrong.
    let focused = if key.is_empty() { figment.clone() } else { figment.focus(key) };
    // `focus` reads a value that is not a table as an empty one: say so instead.
    if let Ok(value) = figment.find_value(key)
        && value.as_dict().is_none()
    {
        let error = ConfigError {
            key: key.to_owned(),
            origin: origin(figment, key),
            message: format!("must be a table, found {}", value.to_actual()),
        };
        return Err((vec![error], None));
    }
    let first = match focused.extract::<T>() {
        Ok(section) => return Ok(section),
        Err(error) => error,
    };
    let mut found: Vec<figment::Error> = first.into_iter().collect();
    let mut partial = None;
    if let Ok(mut value) = figment.find_value(key) {
        let mut pending = found.clone();
        while found.len() < MAX_PROBLEMS {
            let mut removed = false;
            for error in &pending {
                if !matches!(error.kind, figment::error::Kind::MissingField(_)) {
                    removed |= remove(&mut value, &error.path);
                }
            }
            if !removed {
                break;
            }
            match value.deserialize::<T>() {
                Ok(section) => {
                    partial = Some(section);
                    break;
                }
                Err(error) => {
                    pending = error.into_iter().collect();
                    found.extend(pending.iter().cloned());
                }
            }
        }
    }
    let prefix: Vec<String> =
        key.split('.').filter(|part| !part.is_empty()).map(str::to_owned).collect();
    let errors = found
        .into_iter()
        .flat_map(|mut error| {
            error.path.splice(0..0, prefix.iter().cloned());
            from_figment(figment, error)
        })
        .collect();
    Err((errors, partial))
}

/// Takes the key at `path` out of `value`: the whole array when the path goes into one.
/// Whether anything was taken out.
fn remove(value: &mut figment::value::Value, path: &[String]) -> bool {
    let Some((first, rest)) = path.split_first() else { return false };
    let figment::value::Value::Dict(_, dict) = value else { return false };
    match dict.get_mut(first) {
        Some(inner @ figment::value::Value::Dict(..)) if !rest.is_empty() => remove(inner, rest),
        Some(_) => dict.remove(first).is_some(),
        None => false,
    }
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

    /// Issue "Hardening", point 11: every bad key of a section is reported in one run, and
    /// values serde accepts are still validated.
    #[test]
    fn every_bad_key_of_a_section_is_reported() {
        check(
            "[a.b]\nsize = \"big\"\nsise = 3\nnmae = 1",
            Err("`a.b.nmae`: unknown key `nmae`; expected one of: name, size (from TOML source \
                 string); `a.b.sise`: unknown key `sise`; expected one of: name, size (from TOML \
                 source string); `a.b.size`: invalid type"),
        );
        check(
            "[a.b]\nname = 5\nsize = 300",
            Err("`a.b.name`: invalid type: found signed int `5`, expected a string (from TOML \
                 source string); `a.b.size`: must be at most 100 (from TOML source string)"),
        );
        check(
            "[a]\nb = 5",
            Err("`a.b`: must be a table, found signed int `5` (from TOML source string)"),
        );
    }

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Outer {
        inner: Sample,
        list: Vec<u32>,
        flag: bool,
    }

    impl Section for Outer {
        fn validate(&self, problems: &mut Problems) {
            problems.nested("inner", &self.inner);
        }
    }

    #[test]
    fn bad_keys_in_nested_tables_and_arrays_are_each_reported() {
        let toml = "[o]\nflag = 1\nlist = [1, \"two\"]\n[o.inner]\nsize = 500\nextra = true";
        let errors = read::<Outer>(&Figment::from(Toml::string(toml)), "o").unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|error| error.key.as_str()).collect();
        assert_eq!(keys, ["o.flag", "o.inner.extra", "o.list.1", "o.inner.size"], "{errors:?}");
    }
}
