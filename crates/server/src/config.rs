//! Loading the layered configuration: `xcore.toml` (or the file `--config` names), then
//! `XCORE_<SECTION>__<KEY>` environment variables, over each section's defaults.
//!
//! The server reads only its own sections here (`[server]`, `[log]`, `[middleware]`),
//! each a [`Section`] that reports its own problems. Every module and plugin reads its
//! section while the application is built, and the builder reports any top-level section
//! nobody owns. `xcore config show` prints what all of them read, secrets redacted.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};
use xcore_core::Environment;
use xcore_core::config::{ConfigError, ENV_PREFIX, ENV_SEPARATOR, Problems, Section, read};
use xcore_middleware::MiddlewareConfig;

/// The file read when neither `--config` nor `XCORE_CONFIG` names one.
pub const DEFAULT_FILE: &str = "xcore.toml";

/// The sections the server reads itself; every other top-level section belongs to a
/// module.
pub const HOST_SECTIONS: [&str; 3] = ["server", "log", "middleware"];

/// The server's own sections.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Config {
    pub server: ServerConfig,
    pub log: LogConfig,
    pub middleware: MiddlewareConfig,
}

/// The `[server]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// `dev` (the default: a fresh checkout runs as is) or `prod` (refuses to start
    /// without the secrets production needs).
    pub environment: Environment,
    /// Where the server keeps files it makes itself, such as the token secret it
    /// generates in `dev`.
    pub data_dir: PathBuf,
    /// Address to listen on; `0.0.0.0` to accept connections from other machines.
    pub host: String,
    /// Port to listen on; `0` picks a free one (the address is logged).
    pub port: u16,
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub body_limit_bytes: usize,
    /// Longest a request may take before it is answered with 408.
    pub request_timeout_secs: u64,
    /// On SIGINT or SIGTERM, how long in-flight requests may take to finish.
    pub shutdown_grace_secs: u64,
    /// How long a connection with no request in progress may go without starting one
    /// before it is closed (checked every this long, so it closes after one to two): a new
    /// connection that sends nothing, a request head trickling in and a kept-alive
    /// connection idle between requests.
    pub idle_timeout_secs: u64,
    /// Connections open at once; at the limit the oldest idle one is closed to make room.
    /// Unset: the open-file limit (`ulimit -n`) less 64 for the process's other files.
    pub max_connections: Option<usize>,
    /// Whether every request is logged (target `xcore::access`, level info). Off by
    /// default: a line per request costs about a tenth of the throughput (BENCHMARKS.md),
    /// and deployments behind a proxy usually log there.
    pub access_log: bool,
    pub cors: CorsConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            environment: Environment::Dev,
            data_dir: PathBuf::from("data"),
            host: "127.0.0.1".to_owned(),
            port: 8080,
            body_limit_bytes: 2 * 1024 * 1024,
            request_timeout_secs: 30,
            shutdown_grace_secs: 10,
            idle_timeout_secs: 10,
            max_connections: None,
            access_log: false,
            cors: CorsConfig::default(),
        }
    }
}

/// The `[server.cors]` section. With no allowed origin, no CORS headers are sent and
/// browsers keep their same-origin policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Origins allowed to call the API from a browser, such as `https://app.example.com`;
    /// `["*"]` allows any origin (and then forbids credentials).
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    pub allowed_headers: Vec<String>,
    pub allow_credentials: bool,
    pub max_age_secs: u64,
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            allowed_methods: ["GET", "POST", "PUT", "PATCH", "DELETE"].map(String::from).to_vec(),
            allowed_headers: ["authorization", "content-type", "x-request-id"]
                .map(String::from)
                .to_vec(),
            allow_credentials: false,
            max_age_secs: 600,
        }
    }
}

/// The `[log]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter such as `info` or `info,xcore::access=warn`; `RUST_LOG`, when
    /// set, takes precedence.
    pub level: String,
    pub format: LogFormat,
    /// Whether each request gets a `tracing` span (`request`, with `id` and `plugin`) for
    /// subscribers that want spans. Off, log lines still name their request (`request_id`,
    /// `plugin`) at a fraction of the cost.
    pub request_span: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { level: "info".to_owned(), format: LogFormat::Text, request_span: false }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, coloured when standard output is a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

impl Section for ServerConfig {
    fn validate(&self, problems: &mut Problems) {
        problems.check(self.request_timeout_secs > 0, "request_timeout_secs", "must be at least 1");
        problems.check(self.idle_timeout_secs > 0, "idle_timeout_secs", "must be at least 1");
        problems.check(self.max_connections != Some(0), "max_connections", "must be at least 1");
        problems.nested("cors", &self.cors);
    }
}

impl Section for CorsConfig {
    fn validate(&self, problems: &mut Problems) {
        let any_origin = self.allowed_origins.iter().any(|origin| origin == "*");
        problems.check(
            !any_origin || self.allowed_origins.len() == 1,
            "allowed_origins",
            "`*` cannot be combined with other origins",
        );
        problems.check(
            !(any_origin && self.allow_credentials),
            "allow_credentials",
            "browsers refuse credentials with `allowed_origins = [\"*\"]`: list the origins",
        );
        for origin in self.allowed_origins.iter().filter(|origin| *origin != "*") {
            if !(origin.starts_with("http://") || origin.starts_with("https://"))
                || origin.ends_with('/')
                || axum::http::HeaderValue::from_str(origin).is_err()
            {
                problems.add(
                    "allowed_origins",
                    format!("`{origin}` is not an origin such as `https://app.example.com`"),
                );
            }
        }
        for method in &self.allowed_methods {
            if axum::http::Method::from_bytes(method.as_bytes()).is_err() {
                problems.add("allowed_methods", format!("`{method}` is not an HTTP method"));
            }
        }
        for header in &self.allowed_headers {
            if axum::http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                problems.add("allowed_headers", format!("`{header}` is not a header name"));
            }
        }
    }
}

impl Section for LogConfig {
    fn validate(&self, problems: &mut Problems) {
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&self.level) {
            problems.add("level", format!("not a valid log filter: {error}"));
        }
    }
}

/// The server's sections and the figment every section is read from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub figment: Figment,
    /// The file that was read, if there was one.
    pub file: Option<PathBuf>,
}

/// Why the configuration cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file the user named does not exist.
    #[error("the config file {} does not exist", .0.display())]
    NoFile(PathBuf),
    /// Invalid values or unknown keys in the server's sections.
    #[error("invalid configuration:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ConfigError>),
}

/// Loads the configuration. `file` is the `--config` path (or `XCORE_CONFIG`): it must
/// exist. Without one, `xcore.toml` is read when it exists.
///
/// # Errors
///
/// [`LoadError::NoFile`] for a named file that does not exist; [`LoadError::Invalid`]
/// with every invalid value and unknown key of the server's sections, each naming its key
/// and origin.
pub fn load(file: Option<&Path>) -> Result<Loaded, LoadError> {
    let (figment, file) = layers(file)?;
    Loaded::from_figment(figment, file)
}

/// The layered configuration, not yet read: the file (`file`, or `xcore.toml` when it
/// exists) under `XCORE_…` environment variables, and the file that was read.
///
/// # Errors
///
/// [`LoadError::NoFile`] for a named file that does not exist.
pub fn layers(file: Option<&Path>) -> Result<(Figment, Option<PathBuf>), LoadError> {
    let file = match file {
        Some(path) if !path.is_file() => return Err(LoadError::NoFile(path.to_path_buf())),
        Some(path) => Some(path.to_path_buf()),
        None => Some(PathBuf::from(DEFAULT_FILE)).filter(|path| path.is_file()),
    };
    let mut figment = Figment::new();
    if let Some(path) = &file {
        figment = figment.merge(Toml::file_exact(path));
    }
    let figment = figment
        // Only `XCORE_<SECTION>__<KEY>` variables are config: `XCORE_CONFIG` and the
        // `XCORE_TEST_*` variables of the test suites have no `__` and are left alone.
        .merge(
            Env::prefixed(ENV_PREFIX)
                .filter(|key| key.as_str().contains(ENV_SEPARATOR))
                .split(ENV_SEPARATOR),
        );
    Ok((figment, file))
}

impl Loaded {
    /// Reads the server's sections from `figment`, which was read from `file`.
    ///
    /// # Errors
    ///
    /// [`LoadError::Invalid`] with every problem of the server's sections.
    pub fn from_figment(figment: Figment, file: Option<PathBuf>) -> Result<Self, LoadError> {
        let mut errors = Vec::new();
        let server = read::<ServerConfig>(&figment, "server").map_err(|e| errors.extend(e)).ok();
        let log = read::<LogConfig>(&figment, "log").map_err(|e| errors.extend(e)).ok();
        let middleware =
            read::<MiddlewareConfig>(&figment, "middleware").map_err(|e| errors.extend(e)).ok();
        match (server, log, middleware) {
            (Some(server), Some(log), Some(middleware)) if errors.is_empty() => {
                Ok(Self { config: Config { server, log, middleware }, figment, file })
            }
            _ => Err(LoadError::Invalid(errors)),
        }
    }
}

/// The effective configuration as TOML, with secrets replaced by `"***"`: the server's
/// sections and every section the application's plugins read (`sections`, by dotted key).
///
/// # Errors
///
/// When the configuration cannot be represented as TOML.
pub fn show(
    config: &Config,
    sections: &std::collections::BTreeMap<String, serde_json::Value>,
) -> Result<String, toml::ser::Error> {
    let mut value = serde_json::to_value(config).unwrap_or_default();
    for (key, section) in sections {
        let mut table = &mut value;
        for part in key.split('.') {
            if !table.is_object() {
                *table = serde_json::Value::Object(serde_json::Map::new());
            }
            table = &mut table[part];
        }
        *table = section.clone();
    }
    toml::to_string_pretty(&xcore_core::config::redacted(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` with the working directory's `xcore.toml` out of the way and with exactly
    /// the given `XCORE_*` variables, using figment's jail (which serialises such tests).
    #[allow(clippy::result_large_err)]
    fn jail(file: Option<&str>, env: &[(&str, &str)], f: impl FnOnce(Result<Loaded, LoadError>)) {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            if let Some(contents) = file {
                jail.create_file("xcore.toml", contents)?;
            }
            for (key, value) in env {
                jail.set_env(key, value);
            }
            f(load(None));
            Ok(())
        });
    }

    #[test]
    fn precedence_is_default_then_file_then_env() {
        jail(None, &[], |loaded| assert_eq!(loaded.unwrap().config.server.port, 8080));
        jail(Some("[server]\nport = 9000\nhost = \"0.0.0.0\""), &[], |loaded| {
            let config = loaded.unwrap().config;
            assert_eq!((config.server.host.as_str(), config.server.port), ("0.0.0.0", 9000));
        });
        jail(Some("[server]\nport = 9000"), &[("XCORE_SERVER__PORT", "9100")], |loaded| {
            assert_eq!(loaded.unwrap().config.server.port, 9100);
        });
        jail(None, &[("XCORE_PLUGINS__DISABLED", "[\"hello\"]")], |loaded| {
            let disabled: Vec<String> =
                loaded.unwrap().figment.extract_inner("plugins.disabled").unwrap();
            assert_eq!(disabled, ["hello"]);
        });
    }

    #[test]
    fn variables_without_a_section_are_not_config() {
        jail(
            None,
            &[("XCORE_CONFIG", "elsewhere.toml"), ("XCORE_TEST_DATABASE_URL", "postgres://x")],
            |loaded| assert!(loaded.is_ok()),
        );
    }

    fn errors(loaded: Result<Loaded, LoadError>) -> Vec<String> {
        match loaded {
            Ok(_) => Vec::new(),
            Err(LoadError::Invalid(errors)) => errors.iter().map(ToString::to_string).collect(),
            Err(other) => vec![other.to_string()],
        }
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn a_named_file_must_exist() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            let error = load(Some(Path::new("missing.toml"))).unwrap_err();
            assert_eq!(error.to_string(), "the config file missing.toml does not exist");
            jail.create_file("present.toml", "[server]\nport = 9001")?;
            assert_eq!(load(Some(Path::new("present.toml"))).unwrap().config.server.port, 9001);
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_bad_values_name_key_and_origin() {
        jail(Some("[server]\nprot = 1"), &[], |loaded| {
            assert_eq!(
                errors(loaded),
                [
                    "`server.prot`: unknown key `prot`; expected one of: environment, data_dir, host, port, body_limit_bytes, \
                 request_timeout_secs, shutdown_grace_secs, idle_timeout_secs, max_connections, access_log, cors (from file xcore.toml)"
                ]
            );
        });
        jail(None, &[("XCORE_SERVER__PORT", "high")], |loaded| {
            let errors = errors(loaded);
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(errors[0].starts_with("`server.port`: invalid type"), "{errors:?}");
            assert!(
                errors[0].ends_with("(from environment variable XCORE_SERVER__PORT)"),
                "{errors:?}"
            );
        });
        jail(
            Some(
                "[log]\nlevel = \"info,,=x\"\n[server.cors]\nallowed_origins = [\"*\"]\nallow_credentials = true",
            ),
            &[],
            |loaded| {
                let errors = errors(loaded);
                assert_eq!(errors.len(), 2, "{errors:?}");
                assert!(errors[0].starts_with("`server.cors.allow_credentials`"), "{errors:?}");
                assert!(errors[1].starts_with("`log.level`: not a valid log filter"), "{errors:?}");
            },
        );
    }

    /// Issue "Hardening", point 11: every bad key is named, several in one section too.
    #[test]
    fn every_bad_key_of_the_server_sections_is_named() {
        jail(
            Some(
                "[server]\nprot = 1\nport = \"x\"\nidle_timeout_secs = 0\n[log]\nformat = \"xml\"",
            ),
            &[("XCORE_SERVER__CORS__MAX_AGE_SECS", "soon")],
            |loaded| {
                let errors = errors(loaded);
                let keys: Vec<&str> =
                    errors.iter().map(|error| error.split('`').nth(1).unwrap_or("")).collect();
                assert_eq!(
                    keys,
                    [
                        "server.cors.max_age_secs",
                        "server.port",
                        "server.prot",
                        "server.idle_timeout_secs",
                        "log.format"
                    ],
                    "{errors:#?}"
                );
            },
        );
    }

    #[test]
    fn show_redacts_secrets() {
        let sections = std::collections::BTreeMap::from([
            (
                "database".to_owned(),
                serde_json::json!({"url": "postgres://app:hunter2@db:5432/app"}),
            ),
            ("cache".to_owned(), serde_json::json!({"url": "redis://app:hunter2@cache:6379/0"})),
            (
                "plugins.mail".to_owned(),
                serde_json::json!({"smtp_password": "hunter2", "api_key": "k", "host": "smtp"}),
            ),
            (
                "auth".to_owned(),
                serde_json::json!({"secret": "hunter2hunter2", "password": {"memory_kib": 19456}}),
            ),
        ]);
        let mut config = Config::default();
        config.server.cors.allow_credentials = true;
        let shown = show(&config, &sections).unwrap();
        // Issue "Hardening", point 11: a switch about credentials is not a secret.
        assert!(shown.contains("allow_credentials = true"), "{shown}");
        assert!(shown.contains("secret = \"***\""), "{shown}");
        assert!(shown.contains("memory_kib = 19456"), "the password table is settings: {shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("postgres://app:***@db:5432/app"), "{shown}");
        assert!(shown.contains("redis://app:***@cache:6379/0"), "{shown}");
        assert!(shown.contains("smtp_password = \"***\""), "{shown}");
        assert!(shown.contains("host = \"smtp\""), "{shown}");
        assert!(shown.contains("[server]") && shown.contains("[plugins.mail]"), "{shown}");
    }
}
