//! What `cargo xtask contract` hands the server and schemathesis: the command line, the
//! `schemathesis.toml` of each run and the server configuration that lifts its quotas.
//!
//! These are plain values, apart from the processes that use them, so each can be checked
//! without a server or a network.

use std::path::Path;

use toml::{Table, Value};

/// The schemathesis release the task installs; its virtual environment is built again
/// when this changes.
pub(super) const SCHEMATHESIS: &str = "4.32.5";
/// The seed of every run, so that two runs of one build send the same requests.
pub(super) const SEED: u64 = 1;
/// Test cases per operation in each generating phase: both runs take about 40 s together
/// on two cores.
pub(super) const MAX_EXAMPLES: u32 = 100;
/// Every phase: the document's examples, its boundaries (coverage), random requests
/// (fuzzing), and sequences that follow the links between operations (stateful).
pub(super) const PHASES: &str = "examples,coverage,fuzzing,stateful";
/// The account the authenticated run signs in as.
pub(super) const EMAIL: &str = "contract@example.com";
pub(super) const PASSWORD: &str = "contract run password";
/// The name under which the document declares its bearer tokens (`securitySchemes`).
const SCHEME: &str = "bearer";
/// A quota or lockout threshold no run comes near.
const LIFTED: i64 = 1_000_000;

/// One schemathesis run over the whole document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Run {
    /// No credentials: every operation that needs a session must say it answers 401.
    Anonymous,
    /// Signed in, signing in again whenever a request ends the session.
    Authenticated,
}

impl Run {
    pub(super) const ALL: [Self; 2] = [Self::Anonymous, Self::Authenticated];

    /// The run's name, also the name of its directory.
    pub(super) const fn name(self) -> &'static str {
        match self {
            Self::Anonymous => "anonymous",
            Self::Authenticated => "authenticated",
        }
    }
}

/// The arguments of `st` for one run against the server at `base` (`http://host:port`),
/// writing its JSON report to `report`; `extra` comes last, so it can add filters or
/// override any of the others.
pub(super) fn st_args(base: &str, config: &Path, report: &Path, extra: &[String]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--config-file".into(),
        config.display().to_string(),
        "run".into(),
        format!("{base}/openapi.json"),
        "--checks".into(),
        "all".into(),
        "--phases".into(),
        PHASES.into(),
        "--max-examples".into(),
        MAX_EXAMPLES.to_string(),
        "--seed".into(),
        SEED.to_string(),
        // One worker: the stateful phase and the server's state then follow one order.
        "--workers".into(),
        "1".into(),
        // Examples found in earlier runs would be tried first, so results would depend on
        // history as well as on the seed.
        "--generation-database".into(),
        "none".into(),
        // Report every failure of an operation, not only its first.
        "--continue-on-failure".into(),
        "--report".into(),
        "json".into(),
        "--report-json-path".into(),
        report.display().to_string(),
    ];
    args.extend(extra.iter().cloned());
    args
}

/// The `schemathesis.toml` of `run`.
///
/// The authenticated run logs in through `POST /auth/login` and, whenever an answer is
/// 401, logs in again and repeats the request once: the stateful phase ends sessions on
/// purpose (logout, `DELETE /auth/sessions/{id}`), and a run must not turn anonymous
/// halfway. Warnings that mean the run did not test what it meant to fail it: credentials
/// for a scheme the document does not declare, and answers that were rate limited.
pub(super) fn st_config(run: Run) -> String {
    let mut config = format!(
        "# `cargo xtask contract`, {} run.\n\
         \n\
         # Each run starts from nothing, so what it sends depends on the seed alone.\n\
         [cache]\n\
         enabled = false\n\
         \n\
         [warnings]\n\
         fail-on = [\"unused_openapi_auth\", \"rate_limited\"]\n\
         \n\
         [auth]\n\
         # Never sign up on its own: the anonymous run stays anonymous.\n\
         auto-signup = false\n\
         \n\
         # `GET /ws` answers a valid handshake with 101, then speaks WebSocket, which an\n\
         # HTTP fuzzer cannot follow: the gateway's own tests cover its handshake.\n\
         [[operations]]\n\
         include-path = \"/ws\"\n\
         enabled = false\n",
        run.name()
    );
    if run == Run::Authenticated {
        config.push_str(&format!(
            "\n\
             [auth.dynamic.openapi.{SCHEME}]\n\
             path = \"/auth/login\"\n\
             payload = {{ email = \"{EMAIL}\", password = \"{PASSWORD}\" }}\n\
             extract_selector = \"/access_token\"\n\
             retry_on = [401]\n"
        ));
    }
    config
}

/// The server configuration for a run: every quota in `effective` (the output of `xcore
/// config show`) lifted far above what the run sends, and the login lockout too, so that
/// 429 answers come only from a quota the run forgot, which its `rate_limited` warning
/// reports. Quotas are found by their shape (a count, `requests` or `messages`, and
/// `per_secs`), so a module's or plugin's quota is lifted without being named here.
/// Everything else keeps its default.
pub(super) fn lifted_limits(effective: &Table) -> Table {
    let mut lifted = lift_quotas(effective);
    if let Some(lockout) =
        effective.get("auth").and_then(|auth| auth.get("lockout")).and_then(Value::as_table)
    {
        let mut lockout = lockout.clone();
        for key in ["threshold", "account_threshold"] {
            lockout.insert(key.to_owned(), Value::Integer(LIFTED));
        }
        let auth = lifted.entry("auth").or_insert_with(|| Value::Table(Table::new()));
        if let Value::Table(auth) = auth {
            auth.insert("lockout".to_owned(), Value::Table(lockout));
        }
    }
    // The quotas plugin's daily message count and stored bytes: raised, still checked.
    let quotas = ["plugins", "quotas"]
        .into_iter()
        .try_fold(effective, |table, key| table.get(key).and_then(Value::as_table));
    if let Some(quotas) = quotas {
        let mut quotas = quotas.clone();
        for (key, max) in [("messages_per_day", LIFTED), ("stored_bytes", i64::MAX)] {
            if let Some(Value::Table(limit)) = quotas.get_mut(key) {
                limit.insert("enabled".to_owned(), Value::Boolean(true));
                limit.insert("max".to_owned(), Value::Integer(max));
            }
        }
        let plugins = lifted.entry("plugins").or_insert_with(|| Value::Table(Table::new()));
        if let Value::Table(plugins) = plugins {
            plugins.insert("quotas".to_owned(), Value::Table(quotas));
        }
    }
    lifted
}

/// What a quota counts per period: HTTP requests, or messages sent through the
/// messaging engine.
const COUNTS: [&str; 2] = ["requests", "messages"];

/// The quotas in `table` and the tables under it, lifted; nothing else.
fn lift_quotas(table: &Table) -> Table {
    let mut lifted = Table::new();
    for (key, value) in table {
        let Some(inner) = value.as_table() else { continue };
        let count =
            COUNTS.into_iter().find(|count| inner.get(*count).is_some_and(Value::is_integer));
        if let Some(count) = count
            && inner.get("per_secs").is_some_and(Value::is_integer)
        {
            let mut quota = inner.clone();
            quota.insert(count.to_owned(), Value::Integer(LIFTED));
            quota.insert("per_secs".to_owned(), Value::Integer(1));
            if quota.contains_key("burst") {
                quota.insert("burst".to_owned(), Value::Integer(LIFTED));
            }
            lifted.insert(key.clone(), Value::Table(quota));
        } else {
            let below = lift_quotas(inner);
            if !below.is_empty() {
                lifted.insert(key.clone(), Value::Table(below));
            }
        }
    }
    lifted
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value at the dotted `path` of `table`.
    fn at<'a>(table: &'a Table, path: &[&str]) -> Option<&'a Value> {
        let (last, parents) = path.split_last()?;
        let mut table = table;
        for key in parents {
            table = table.get(*key)?.as_table()?;
        }
        table.get(*last)
    }

    #[test]
    fn every_run_checks_everything_with_the_fixed_seed_and_bound() {
        let args = st_args(
            "http://127.0.0.1:9",
            Path::new("/c/schemathesis.toml"),
            Path::new("/c/report.json"),
            &["--include-path-regex".into(), "^/auth".into()],
        );
        let pairs = [
            ("--config-file", "/c/schemathesis.toml"),
            ("run", "http://127.0.0.1:9/openapi.json"),
            ("--checks", "all"),
            ("--phases", "examples,coverage,fuzzing,stateful"),
            ("--max-examples", "100"),
            ("--seed", "1"),
            ("--workers", "1"),
            ("--generation-database", "none"),
            ("--report", "json"),
            ("--report-json-path", "/c/report.json"),
        ];
        for (flag, value) in pairs {
            let position = args.iter().position(|arg| arg == flag);
            let given = position.and_then(|position| args.get(position + 1));
            assert_eq!(given.map(String::as_str), Some(value), "{flag} in {args:?}");
        }
        assert!(args.iter().any(|arg| arg == "--continue-on-failure"), "{args:?}");
        assert_eq!(args[args.len() - 2..], ["--include-path-regex", "^/auth"], "extra last");
    }

    #[test]
    fn only_the_authenticated_run_logs_in_and_it_logs_in_again_on_401() {
        for run in Run::ALL {
            let config: Table = toml::from_str(&st_config(run)).unwrap();
            assert_eq!(at(&config, &["auth", "auto-signup"]), Some(&Value::Boolean(false)));
            assert_eq!(at(&config, &["cache", "enabled"]), Some(&Value::Boolean(false)));
            let fail_on = at(&config, &["warnings", "fail-on"]).unwrap().as_array().unwrap();
            assert!(fail_on.contains(&Value::from("rate_limited")), "{fail_on:?}");
            let login = at(&config, &["auth", "dynamic", "openapi", SCHEME]);
            match run {
                Run::Anonymous => assert_eq!(login, None),
                Run::Authenticated => {
                    let login = login.unwrap().as_table().unwrap();
                    assert_eq!(login["path"].as_str(), Some("/auth/login"));
                    assert_eq!(login["extract_selector"].as_str(), Some("/access_token"));
                    assert_eq!(login["payload"]["email"].as_str(), Some(EMAIL));
                    assert_eq!(login["payload"]["password"].as_str(), Some(PASSWORD));
                    assert_eq!(login["retry_on"].as_array().unwrap(), &[Value::Integer(401)]);
                }
            }
        }
    }

    #[test]
    fn every_quota_and_the_lockout_are_lifted_and_nothing_else_is_set() {
        let effective: Table = toml::from_str(
            r#"
            [auth]
            issuer = "xcore"
            [auth.lockout]
            threshold = 10
            account_threshold = 100
            base_secs = 1
            [middleware.rate_limit]
            enabled = false
            [middleware.rate_limit.default]
            requests = 100
            per_secs = 1
            burst = 200
            key = "ip"
            [middleware.rate_limit.routes."/auth/login"]
            requests = 10
            per_secs = 60
            key = "ip"
            [plugins.hello]
            greeting = "Hello"
            [plugins.hello.sign_quota]
            requests = 10
            per_secs = 60
            key = "user"
            [plugins.quotas]
            exempt = ["welcome"]
            [plugins.quotas.messages_per_day]
            enabled = true
            max = 10000
            [plugins.quotas.stored_bytes]
            enabled = false
            max = 1000
            [plugins.message_rate_limiter]
            exempt = []
            [plugins.message_rate_limiter.per_user]
            enabled = true
            messages = 20
            per_secs = 10
            [server]
            port = 8080
            "#,
        )
        .unwrap();
        let lifted = lifted_limits(&effective);
        let check = |path: &[&str], expected: Option<Value>| {
            assert_eq!(at(&lifted, path), expected.as_ref(), "{path:?} in {lifted:#?}");
        };
        let login = ["middleware", "rate_limit", "routes", "/auth/login"];
        check(&[&login[..], &["requests"]].concat(), Some(Value::Integer(LIFTED)));
        check(&[&login[..], &["per_secs"]].concat(), Some(Value::Integer(1)));
        check(&[&login[..], &["key"]].concat(), Some(Value::from("ip")));
        check(&[&login[..], &["burst"]].concat(), None);
        check(&["middleware", "rate_limit", "default", "burst"], Some(Value::Integer(LIFTED)));
        check(&["plugins", "hello", "sign_quota", "requests"], Some(Value::Integer(LIFTED)));
        check(&["plugins", "hello", "sign_quota", "key"], Some(Value::from("user")));
        let per_user = ["plugins", "message_rate_limiter", "per_user"];
        check(&[&per_user[..], &["messages"]].concat(), Some(Value::Integer(LIFTED)));
        check(&[&per_user[..], &["per_secs"]].concat(), Some(Value::Integer(1)));
        check(&[&per_user[..], &["enabled"]].concat(), Some(Value::Boolean(true)));
        check(&["plugins", "message_rate_limiter", "exempt"], None);
        let quotas = ["plugins", "quotas"];
        check(&[&quotas[..], &["messages_per_day", "max"]].concat(), Some(Value::Integer(LIFTED)));
        check(&[&quotas[..], &["stored_bytes", "max"]].concat(), Some(Value::Integer(i64::MAX)));
        check(&[&quotas[..], &["stored_bytes", "enabled"]].concat(), Some(Value::Boolean(true)));
        check(&[&quotas[..], &["exempt"]].concat(), Some(Value::Array(vec!["welcome".into()])));
        check(&["auth", "lockout", "threshold"], Some(Value::Integer(LIFTED)));
        check(&["auth", "lockout", "account_threshold"], Some(Value::Integer(LIFTED)));
        check(&["auth", "lockout", "base_secs"], Some(Value::Integer(1)));
        check(&["auth", "issuer"], None);
        check(&["middleware", "rate_limit", "enabled"], None);
        check(&["plugins", "hello", "greeting"], None);
        check(&["server"], None);
        // What is written must read back as the same configuration.
        let written = toml::to_string(&lifted).unwrap();
        assert_eq!(toml::from_str::<Table>(&written).unwrap(), lifted, "{written}");
    }
}
