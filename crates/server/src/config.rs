//! Loading the layered configuration: built-in defaults, then `xcore.toml`, then
//! `XCORE_<SECTION>__<KEY>` environment variables.
//!
//! Each crate owns its section's struct; this module only assembles them, checks what serde
//! cannot (a log filter that parses, CORS settings browsers accept) and prints the result
//! with secrets redacted.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use xcore_auth::AuthConfig;
use xcore_cache::CacheConfig;
use xcore_core::config::{ConfigError, ENV_PREFIX, ENV_SEPARATOR, PluginsConfig, extract_section};
use xcore_db::DatabaseConfig;
use xcore_middleware::MiddlewareConfig;

/// The file read when neither `--config` nor `XCORE_CONFIG` names one.
pub const DEFAULT_FILE: &str = "xcore.toml";

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub cache: CacheConfig,
    pub auth: AuthConfig,
    pub middleware: MiddlewareConfig,
    pub log: LogConfig,
    pub plugins: PluginsConfig,
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
            access_log: false,
            cors: CorsConfig::default(),
        }
    }
}

/// What the server is run for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Development: missing secrets are generated and kept in the data directory.
    Dev,
    /// Production: missing secrets stop startup.
    Prod,
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

/// The loaded configuration and the figment it came from (plugins read their sections
/// from the latter).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub figment: Figment,
    /// The file that was looked for, and whether it existed.
    pub file: (PathBuf, bool),
}

/// Loads the configuration. `file` is the `--config` path (or `XCORE_CONFIG`), defaulting
/// to `xcore.toml`; a missing file is not an error.
///
/// # Errors
///
/// Every invalid value and unknown key, each naming its key and origin.
pub fn load(file: Option<&Path>) -> Result<Loaded, Vec<ConfigError>> {
    let path = file.map_or_else(|| PathBuf::from(DEFAULT_FILE), Path::to_path_buf);
    let exists = path.is_file();
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    if exists {
        figment = figment.merge(Toml::file_exact(&path));
    }
    let figment = figment
        // Only `XCORE_<SECTION>__<KEY>` variables are config: `XCORE_CONFIG` and the
        // `XCORE_TEST_*` variables of the test suites have no `__` and are left alone.
        .merge(
            Env::prefixed(ENV_PREFIX)
                .filter(|key| key.as_str().contains(ENV_SEPARATOR))
                .split(ENV_SEPARATOR),
        );
    let config: Config = extract_section(&figment, "")?;
    let problems = validate(&config, &figment);
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Loaded { config, figment, file: (path, exists) })
}

fn validate(config: &Config, figment: &Figment) -> Vec<ConfigError> {
    let mut problems = Vec::new();
    let mut problem = |key: &str, message: String| {
        let origin = xcore_core::config::origin(figment, key);
        problems.push(ConfigError { key: key.to_owned(), origin, message });
    };
    if let Err(error) = tracing_subscriber::EnvFilter::try_new(&config.log.level) {
        problem("log.level", format!("not a valid log filter: {error}"));
    }
    if let Err(error) = config.database.check_url() {
        problem("database.url", error.to_string());
    }
    if config.database.pool_size == 0 {
        problem("database.pool_size", "must be at least 1".to_owned());
    }
    for (key, message) in config.cache.problems() {
        problem(key, message);
    }
    for (key, message) in config.auth.problems() {
        problem(&format!("auth.{key}"), message);
    }
    for (key, message) in config.middleware.problems() {
        problem(&format!("middleware.{key}"), message);
    }
    let auth = &config.auth;
    if config.server.environment == Environment::Prod
        && auth.secret.is_none()
        && !auth.uses_key_files()
    {
        problem(
            "auth.secret",
            "production (`server.environment = \"prod\"`) needs a token signing secret: set \
             `auth.secret` (or XCORE_AUTH__SECRET) to at least 32 random bytes, for example \
             `openssl rand -base64 48`, or set `auth.private_key_file` and \
             `auth.public_key_file` to sign with Ed25519"
                .to_owned(),
        );
    }
    if config.server.request_timeout_secs == 0 {
        problem("server.request_timeout_secs", "must be at least 1".to_owned());
    }
    let cors = &config.server.cors;
    let any_origin = cors.allowed_origins.iter().any(|origin| origin == "*");
    if any_origin && cors.allowed_origins.len() > 1 {
        problem("server.cors.allowed_origins", "`*` cannot be combined with other origins".into());
    }
    if any_origin && cors.allow_credentials {
        problem(
            "server.cors.allow_credentials",
            "browsers refuse credentials with `allowed_origins = [\"*\"]`: list the origins".into(),
        );
    }
    for origin in cors.allowed_origins.iter().filter(|origin| *origin != "*") {
        if !(origin.starts_with("http://") || origin.starts_with("https://"))
            || origin.ends_with('/')
            || axum::http::HeaderValue::from_str(origin).is_err()
        {
            problem(
                "server.cors.allowed_origins",
                format!("`{origin}` is not an origin such as `https://app.example.com`"),
            );
        }
    }
    for method in &cors.allowed_methods {
        if axum::http::Method::from_bytes(method.as_bytes()).is_err() {
            problem("server.cors.allowed_methods", format!("`{method}` is not an HTTP method"));
        }
    }
    for header in &cors.allowed_headers {
        if axum::http::HeaderName::from_bytes(header.as_bytes()).is_err() {
            problem("server.cors.allowed_headers", format!("`{header}` is not a header name"));
        }
    }
    problems
}

/// Keys whose values are never printed.
const SECRET_WORDS: [&str; 6] =
    ["secret", "password", "token", "private_key", "api_key", "credential"];

/// The effective configuration as TOML, with secrets replaced by `"***"`: any key naming
/// a secret, and the password of any URL.
///
/// # Errors
///
/// When the configuration cannot be represented as TOML.
pub fn show(config: &Config) -> Result<String, toml::ser::Error> {
    let mut value = serde_json::to_value(config).unwrap_or_default();
    redact(&mut value);
    toml::to_string_pretty(&value)
}

fn redact(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            // TOML has no null: an unset optional key is left out.
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
        serde_json::Value::String(text) if text.contains("://") => {
            *text = xcore_db::redact_url(text);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` with the working directory's `xcore.toml` out of the way and with exactly
    /// the given `XCORE_*` variables, using figment's jail (which serialises such tests).
    #[allow(clippy::result_large_err)]
    fn jail(
        file: Option<&str>,
        env: &[(&str, &str)],
        f: impl FnOnce(Result<Loaded, Vec<ConfigError>>),
    ) {
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
            assert_eq!(loaded.unwrap().config.plugins.disabled, ["hello"]);
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

    fn errors(loaded: Result<Loaded, Vec<ConfigError>>) -> Vec<String> {
        loaded.map(|_| Vec::new()).unwrap_or_else(|e| e.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn unknown_keys_and_bad_values_name_key_and_origin() {
        jail(Some("[server]\nprot = 1"), &[], |loaded| {
            assert_eq!(
                errors(loaded),
                [
                    "`server.prot`: unknown key `prot`; expected one of: environment, data_dir, host, port, body_limit_bytes, \
                 request_timeout_secs, shutdown_grace_secs, access_log, cors (from file xcore.toml)"
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
        jail(None, &[("XCORE_DATABASE__URL", "mysql://db/app")], |loaded| {
            let errors = errors(loaded);
            assert!(
                errors[0].starts_with("`database.url`: unsupported database URL"),
                "{errors:?}"
            );
            assert!(
                errors[0].ends_with("(from environment variable XCORE_DATABASE__URL)"),
                "{errors:?}"
            );
        });
        jail(None, &[("XCORE_LOGG__LEVEL", "info")], |loaded| {
            let errors = errors(loaded);
            assert!(errors[0].starts_with("`logg`: unknown key `logg`"), "{errors:?}");
        });
        jail(
            Some(
                "[log]\nlevel = \"info,,=x\"\n[server.cors]\nallowed_origins = [\"*\"]\nallow_credentials = true",
            ),
            &[],
            |loaded| {
                let errors = errors(loaded);
                assert_eq!(errors.len(), 2, "{errors:?}");
                assert!(errors[0].starts_with("`log.level`: not a valid log filter"), "{errors:?}");
                assert!(errors[1].starts_with("`server.cors.allow_credentials`"), "{errors:?}");
            },
        );
    }

    #[test]
    fn show_redacts_secrets() {
        let mut config = Config::default();
        config.database.url = "postgres://app:hunter2@db:5432/app".to_owned();
        config.cache.url = Some("redis://app:hunter2@cache:6379/0".to_owned());
        config.plugins.sections.insert(
            "mail".to_owned(),
            serde_json::json!({"smtp_password": "hunter2", "api_key": "k", "host": "smtp"}),
        );
        config.auth.secret = Some("hunter2".repeat(5));
        let shown = show(&config).unwrap();
        assert!(shown.contains("secret = \"***\""), "{shown}");
        assert!(shown.contains("memory_kib = 19456"), "the password table is settings: {shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("postgres://app:***@db:5432/app"), "{shown}");
        assert!(shown.contains("redis://app:***@cache:6379/0"), "{shown}");
        assert!(shown.contains("smtp_password = \"***\""), "{shown}");
        assert!(shown.contains("host = \"smtp\""), "{shown}");
    }
}
