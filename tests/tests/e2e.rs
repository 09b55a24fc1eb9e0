//! The real `xcore` binary, started on a random port.

// Test helpers outside `#[test]` functions may fail loudly too.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use xcore_tests::{Server, read_response, request, request_as, sign_in, workspace_root, xcore};

#[test]
fn serves_on_a_random_port_and_stops_cleanly_on_sigterm() {
    let mut server =
        Server::start(&[("XCORE_PLUGINS__HELLO__GREETING", "Hello from the environment")]);
    let health = request(server.addr, "GET", "/health", None).unwrap();
    assert_eq!((health.status, health.json()), (200, serde_json::json!({"status": "ok"})));
    assert!(health.header("x-request-id").is_some_and(|id| !id.is_empty()));

    let hello = request(server.addr, "GET", "/plugins/hello/", None).unwrap();
    assert_eq!(hello.json(), serde_json::json!({"message": "Hello from the environment"}));
    let ready = request(server.addr, "GET", "/ready", None).unwrap();
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert!(server.dir.path().join("data/xcore.db").is_file(), "the default database is created");
    // In dev, a token signing secret and a key for two-factor secrets are generated once;
    // they and the database are readable by their owner only (Hardening, point 10).
    let mode = |path: &str| {
        let metadata = std::fs::metadata(server.dir.path().join(path)).unwrap();
        std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o777
    };
    for file in ["data/auth-secret", "data/auth-otp-key", "data/xcore.db", "data/xcore.db-wal"] {
        assert_eq!(mode(file), 0o600, "{file}");
    }
    assert_eq!(mode("data"), 0o700);
    assert!(
        server.output().contains("generated a secret to sign access tokens"),
        "{}",
        server.output()
    );

    server.terminate();
    let status = server.wait(Duration::from_secs(15)).expect("the server exits after SIGTERM");
    assert!(status.success(), "{status:?}\n{}", server.output());
    assert!(server.output().contains("received SIGTERM"), "{}", server.output());
}

#[test]
fn prod_refuses_to_start_without_a_token_secret() {
    let dir = tempfile::tempdir().unwrap();
    let output = xcore(dir.path()).env("XCORE_SERVER__ENVIRONMENT", "prod").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`auth.secret`") && stderr.contains("XCORE_AUTH__SECRET"), "{stderr}");
    assert!(!dir.path().join("data/auth-secret").exists(), "prod never generates one");
    // The key for two-factor secrets is missing too, and said so in the same run.
    assert!(stderr.contains("`auth.otp_secret_key`: production"), "{stderr}");
    assert!(!dir.path().join("data/auth-otp-key").exists(), "prod never generates one");

    let output = xcore(dir.path())
        .env("XCORE_SERVER__ENVIRONMENT", "prod")
        .env("XCORE_AUTH__SECRET", "too short")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("at least 32") && stderr.contains("XCORE_AUTH__SECRET"), "{stderr}");
}

/// A request whose body is still arriving when SIGTERM comes is answered, not dropped.
#[test]
fn an_in_flight_request_completes_after_sigterm() {
    let mut server = Server::start(&[]);
    let token = sign_in(server.addr, "slow@example.com");
    let body = r#"{"name": "Slow", "message": "still typing"}"#;
    let (first, rest) = body.split_at(10);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    write!(
        stream,
        "POST /plugins/hello/guestbook HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\
         authorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{first}",
        body.len()
    )
    .unwrap();
    stream.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));

    server.terminate();
    // Wait until the server has begun draining before the body is finished.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !server.output().contains("shutting down") {
        assert!(std::time::Instant::now() < deadline, "no shutdown log:\n{}", server.output());
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(server.child.try_wait().unwrap().is_none(), "the server quit with a request in flight");
    stream.write_all(rest.as_bytes()).unwrap();
    let response = read_response(&mut stream).unwrap();
    assert_eq!(response.status, 201, "{}", response.body);
    assert_eq!(response.json()["name"], "Slow");

    let status = server.wait(Duration::from_secs(15)).expect("the server exits once drained");
    assert!(status.success(), "{status:?}");
    // New connections are refused once the server has stopped accepting.
    assert!(request(server.addr, "GET", "/health", None).is_err());
}

#[test]
fn invalid_configuration_exits_with_code_2_naming_the_key_and_origin() {
    let dir = tempfile::tempdir().unwrap();
    let output = xcore(dir.path()).env("XCORE_SERVER__PROT", "80").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`server.prot`: unknown key `prot`"), "{stderr}");
    assert!(stderr.contains("environment variable XCORE_SERVER__PROT"), "{stderr}");

    std::fs::write(dir.path().join("custom.toml"), "[plugins.hello]\ngreeting = 5\n").unwrap();
    let output = xcore(dir.path()).args(["--config", "custom.toml", "plugins"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`plugins.hello.greeting`: invalid type: found signed int `5`, expected a string (from file custom.toml)"), "{stderr}");

    // A file the user names must exist: no silent fallback to the defaults.
    let output = xcore(dir.path()).args(["--config", "missing.toml"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("the config file missing.toml does not exist"), "{stderr}");
    let output = xcore(dir.path()).arg("no-such-command").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown command `no-such-command`"));
}

/// Issue "Hardening", point 11: a file with bad keys in several sections (the server's,
/// the log's and a plugin's or a module's, two in one section) names every one of them in
/// one run, whether serving, checking or showing.
#[test]
fn every_config_problem_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let host = "[server]\nprot = 80\nport = \"high\"\n[log]\nrequest_span = \"yes\"\n";
    let host_problems = [
        "`server.prot`: unknown key `prot`",
        "`server.port`: invalid type: found string \"high\", expected u16 (from file bad.toml)",
        "`log.request_span`: invalid type: found string \"yes\", expected a boolean (from file bad.toml)",
    ];
    let check = |sections: &str, problems: &[&str]| {
        std::fs::write(dir.path().join("bad.toml"), format!("{host}{sections}")).unwrap();
        for command in [&["serve"][..], &["config", "check"], &["config", "show"]] {
            let output =
                xcore(dir.path()).args(["--config", "bad.toml"]).args(command).output().unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{command:?}: {stderr}");
            for expected in host_problems.iter().chain(problems) {
                assert!(
                    stderr.contains(expected),
                    "{command:?} does not name {expected:?}: {stderr}"
                );
            }
        }
    };
    check(
        "[plugins.hello]\nmax_entries = 0\ngreting = \"hi\"\n",
        &[
            "`plugins.hello.greting`: unknown key `greting`",
            "`plugins.hello.max_entries`: must be at least 1 (from file bad.toml)",
        ],
    );
    check(
        "[auth]\naccess_ttl_secs = \"long\"\nissuer = \"\"\n",
        &[
            "`auth.access_ttl_secs`: invalid type: found string \"long\", expected u64 (from file bad.toml)",
            "`auth.issuer`: must not be empty (from file bad.toml)",
        ],
    );

    std::fs::write(dir.path().join("good.toml"), "[plugins.hello]\ngreeting = \"hi\"\n").unwrap();
    let output =
        xcore(dir.path()).args(["--config", "good.toml", "config", "check"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("the configuration is valid"));
}

/// Issue "Hardening", point 11: `config show` hides secrets by what a key means, so a
/// switch named after credentials is shown and real secrets are not.
#[test]
fn config_show_hides_secrets_and_only_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("xcore.toml"),
        "[server.cors]\nallowed_origins = [\"https://app.example.com\"]\nallow_credentials = true\n\
         [auth]\nsecret = \"hunter2-hunter2-hunter2-hunter2-hunter2\"\n\
         [auth.notifier.smtp]\nusername = \"mailer\"\npassword = \"hunter2\"\n",
    )
    .unwrap();
    let output = xcore(dir.path())
        .args(["config", "show"])
        .env("XCORE_DATABASE__URL", "postgres://app:hunter2@db.example.com/app?password=hunter2")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let shown = String::from_utf8(output.stdout).unwrap();
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("allow_credentials = true"), "{shown}");
    assert!(shown.contains("secret = \"***\""), "{shown}");
    assert!(shown.contains("password = \"***\""), "{shown}");
    assert!(shown.contains("username = \"mailer\""), "{shown}");
    assert!(
        shown.contains("url = \"postgres://app:***@db.example.com/app?password=***\""),
        "{shown}"
    );
}

#[test]
fn cli_lists_plugins_migrations_and_config() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let output = xcore(dir.path())
            .args(args)
            .env("XCORE_DATABASE__URL", "sqlite://db/x.db")
            .output()
            .unwrap();
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let plugins: serde_json::Value = serde_json::from_str(&run(&["plugins", "--json"])).unwrap();
    let listed: Vec<(&str, &str, &str)> = plugins
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["enabled"], true, "{p}");
            (
                p["name"].as_str().unwrap(),
                p["section"].as_str().unwrap(),
                p["prefix"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("advanced_logging", "plugins.advanced_logging", "-"),
            ("auth", "auth", "/auth"),
            ("cache", "cache", "-"),
            ("database", "database", "-"),
            ("hello", "plugins.hello", "/plugins/hello"),
            ("message_rate_limiter", "plugins.message_rate_limiter", "-"),
            ("messaging", "messaging", "/messaging"),
            ("moderation", "plugins.moderation", "/plugins/moderation"),
            ("quotas", "plugins.quotas", "-"),
            ("welcome", "plugins.welcome", "-"),
        ]
    );
    let table = run(&["plugins"]);
    assert!(table.contains("xcore migrate"), "the database module's command is listed: {table}");
    assert!(table.contains("xcore auth"), "the auth module's command is listed: {table}");

    let status = run(&["migrate", "--status"]);
    assert!(status.contains("0 applied, 9 pending"), "{status}");
    assert!(run(&["migrate"]).contains("9 migration(s) applied"));
    assert!(run(&["migrate"]).contains("0 migration(s) applied"));
    let status = run(&["migrate", "--status"]);
    assert!(
        status.contains("applied    auth")
            && status.contains("applied    hello")
            && status.contains("applied    welcome")
            && status.contains("9 applied, 0 pending"),
        "{status}"
    );
    assert!(
        status.find("auth").unwrap() < status.find("hello").unwrap(),
        "the server's tables come first: {status}"
    );
    // Commands that never sign a token or seal a secret leave no key behind.
    assert!(!dir.path().join("data/auth-secret").exists());
    assert!(!dir.path().join("data/auth-otp-key").exists());

    let shown = run(&["config", "show"]);
    assert!(shown.contains("url = \"sqlite://db/x.db\""), "{shown}");
    assert!(shown.contains("[auth]\naccess_ttl_secs = 900"), "{shown}");
    assert!(shown.contains("[auth.password]\niterations = 2"), "{shown}");
    assert!(shown.contains("[cache]\nbackend = \"memory\""), "{shown}");
    assert!(shown.contains("[plugins]\ndisabled = []"), "{shown}");
    assert!(shown.contains("[plugins.hello]\ngreeting = "), "{shown}");
    assert!(shown.contains("environment = \"dev\""), "{shown}");
    assert!(run(&["--version"]).starts_with("xcore "));
}

/// With `LISTEN_FDS`, the server serves on the socket it is given and binds nothing.
#[test]
fn serves_on_an_inherited_socket() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::start_with(
        // A configured port other than the inherited socket's: answering on the latter
        // shows the configured one was not bound.
        &[("XCORE_SERVER__PORT", "1"), ("LISTEN_FDS", "1"), ("LISTEN_FDS_FIRST_FD", "0")],
        |command| {
            command.stdin(std::process::Stdio::from(std::os::fd::OwnedFd::from(listener)));
        },
    );
    assert_eq!(server.addr, addr);
    assert!(server.output().contains("inherited through LISTEN_FDS"), "{}", server.output());
    assert_eq!(request(addr, "GET", "/health", None).unwrap().status, 200);
}

#[test]
fn json_logs_are_one_object_per_line() {
    let server = Server::start(&[("XCORE_LOG__FORMAT", "json")]);
    request(server.addr, "GET", "/health", None).unwrap();
    request(server.addr, "GET", "/plugins/hello/", None).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let output = server.output();
    let lines: Vec<serde_json::Value> = output
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    assert!(
        lines.iter().any(|line| line["target"] == "xcore::access"
            && line["fields"]["status"] == 200
            && line["fields"]["path"] == "/health"
            && line["request_id"].as_str().is_some_and(|id| id.len() == 32)),
        "{output}"
    );
    assert!(
        lines.iter().any(|line| line["target"] == "xcore::access"
            && line["fields"]["path"] == "/plugins/hello/"
            && line["plugin"] == "hello"),
        "{output}"
    );
}

/// With `log.request_span`, the request id and plugin come from a real `tracing` span.
#[test]
fn a_request_span_is_opened_when_asked() {
    let server =
        Server::start(&[("XCORE_LOG__FORMAT", "json"), ("XCORE_LOG__REQUEST_SPAN", "true")]);
    request(server.addr, "GET", "/plugins/hello/", None).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let output = server.output();
    let access = output
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["target"] == "xcore::access")
        .unwrap_or_else(|| panic!("no access line: {output}"));
    assert_eq!(access["span"]["name"], "request", "{access}");
    assert_eq!(access["span"]["plugin"], "hello", "{access}");
    assert!(access["span"]["id"].as_str().is_some_and(|id| id.len() == 32), "{access}");
    assert!(access.get("request_id").is_none(), "{access}");
}

/// Logins are limited by client address out of the box: the eleventh within a minute gets
/// 429 with `Retry-After`, and other routes are not affected.
#[test]
fn logins_are_rate_limited_by_client_address() {
    let server = Server::start(&[]);
    let login = r#"{"email": "nobody@example.com", "password": "not the password"}"#;
    for attempt in 1..=10 {
        let answer = request(server.addr, "POST", "/auth/login", Some(login)).unwrap();
        assert_eq!(answer.status, 401, "attempt {attempt}: {}", answer.body);
        assert_eq!(answer.header("ratelimit-remaining"), Some((10 - attempt).to_string().as_str()));
    }
    let limited = request(server.addr, "POST", "/auth/login", Some(login)).unwrap();
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert_eq!(limited.json()["error"]["code"], "too_many_requests");
    assert!(limited.json()["error"]["request_id"].is_string());
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=6).contains(&retry), "one login every 6 s: {retry}");
    assert_eq!(request(server.addr, "GET", "/health", None).unwrap().status, 200);
    // The tenth failure locked this client out of the email: a security event (the log is
    // written in the background, so it may take a moment).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let event = loop {
        let log = server.output();
        if let Some(line) = log.lines().find(|line| line.contains("login_locked")) {
            break line.to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "no lock event: {log}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(event.contains("nobody@example.com") && event.contains("security"), "{event}");
}

/// Issue "Hardening", point 12: the guestbook takes signatures from signed-in users only,
/// each within a quota, and says when they were made with an offset (issue "OpenAPI
/// truth", point 1).
#[test]
fn the_guestbook_takes_signatures_from_signed_in_users_within_a_quota() {
    let server = Server::start(&[
        ("XCORE_PLUGINS__HELLO__SIGN_QUOTA__REQUESTS", "2"),
        ("XCORE_PLUGINS__HELLO__SIGN_QUOTA__PER_SECS", "60"),
        ("XCORE_PLUGINS__HELLO__SIGN_QUOTA__KEY", "user"),
    ]);
    let entry = Some(r#"{"name": "Ada", "message": "hello"}"#);
    let sign = |token: Option<&str>| {
        request_as(server.addr, token, "POST", "/plugins/hello/guestbook", entry).unwrap()
    };
    let anonymous = sign(None);
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    assert_eq!(anonymous.json()["error"]["code"], "invalid_token");

    let ada = sign_in(server.addr, "ada@example.com");
    let me = request_as(server.addr, Some(&ada), "GET", "/auth/me", None).unwrap();
    let signed = sign(Some(&ada));
    assert_eq!(signed.status, 201, "{}", signed.body);
    assert_eq!(signed.json()["author_id"], me.json()["id"], "{}", me.body);
    let created_at = signed.json()["created_at"].as_str().unwrap().to_owned();
    assert!(
        created_at.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(&created_at).is_ok(),
        "{created_at}"
    );
    assert_eq!(sign(Some(&ada)).status, 201);
    let limited = sign(Some(&ada));
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert_eq!(limited.json()["error"]["code"], "too_many_requests");
    assert!(limited.header("retry-after").is_some_and(|secs| secs.parse::<u64>().is_ok()));

    let bob = sign_in(server.addr, "bob@example.com");
    assert_eq!(sign(Some(&bob)).status, 201, "another user has a quota of their own");
    let listing = request(server.addr, "GET", "/plugins/hello/guestbook", None).unwrap();
    assert_eq!(listing.json()["entries"].as_array().unwrap().len(), 3, "{}", listing.body);
}

/// A default quota is turned off from the environment; the other defaults stay.
#[test]
fn a_default_quota_can_be_turned_off() {
    let routes = r#"{"/auth/login" = { enabled = false }}"#;
    let server = Server::start(&[("XCORE_MIDDLEWARE__RATE_LIMIT__ROUTES", routes)]);
    for attempt in 0..12 {
        // Another email each time: the lockout counts by email.
        let login = format!(r#"{{"email": "n{attempt}@example.com", "password": "not it"}}"#);
        let answer = request(server.addr, "POST", "/auth/login", Some(&login)).unwrap();
        assert_eq!(answer.status, 401, "attempt {attempt}: {}", answer.body);
        assert_eq!(answer.header("ratelimit-limit"), None);
    }
    let reset = r#"{"email": "nobody@example.com"}"#;
    let limited = request(server.addr, "POST", "/auth/password/reset/request", Some(reset));
    assert!(limited.unwrap().header("ratelimit-limit").is_some(), "the other quotas stay");
}

/// Passwords and the tokens a request carries stay out of the log, even at debug level
/// with the access log on.
#[test]
fn passwords_and_tokens_never_reach_the_log() {
    let server =
        Server::start(&[("XCORE_LOG__LEVEL", "debug"), ("XCORE_SERVER__ACCESS_LOG", "true")]);
    let password = "pw-9f8e7d6c5b4a";
    let credentials = format!(r#"{{"email": "ada@example.com", "password": "{password}"}}"#);
    let created = request(server.addr, "POST", "/auth/register", Some(&credentials)).unwrap();
    assert_eq!(created.status, 201, "{}", created.body);
    let wrong = r#"{"email": "ada@example.com", "password": "wrong-0a1b2c3d"}"#;
    assert_eq!(request(server.addr, "POST", "/auth/login", Some(wrong)).unwrap().status, 401);
    let login = request(server.addr, "POST", "/auth/login", Some(&credentials)).unwrap();
    let (access, refresh) = (
        login.json()["access_token"].as_str().unwrap().to_owned(),
        login.json()["refresh_token"].as_str().unwrap().to_owned(),
    );
    let body = format!(r#"{{"refresh_token": "{refresh}"}}"#);
    let rotated = request(server.addr, "POST", "/auth/refresh", Some(&body)).unwrap();
    assert_eq!(rotated.status, 200);
    let next = rotated.json()["refresh_token"].as_str().unwrap().to_owned();
    let next = format!(r#"{{"refresh_token": "{next}"}}"#);
    assert_eq!(request(server.addr, "POST", "/auth/refresh", Some(&next)).unwrap().status, 200);
    // Reusing the rotated token once its successor was used is logged as an incident,
    // without the token.
    assert_eq!(request(server.addr, "POST", "/auth/refresh", Some(&body)).unwrap().status, 401);
    // A token in the query string is not logged either: the access log has the path only.
    let query = format!("/auth/me?access_token={access}");
    assert_eq!(request(server.addr, "GET", &query, None).unwrap().status, 401);
    let forged = format!("/auth/me?token={access}x");
    request(server.addr, "GET", &forged, None).unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let log = server.output();
    assert!(log.contains("xcore::access"), "the access log is on: {log}");
    assert!(log.contains("session revoked"), "{log}");
    for secret in [password, "wrong-0a1b2c3d", &access, &refresh] {
        assert!(!log.contains(secret), "`{secret}` is in the log:\n{log}");
    }
    // Not even a recognisable part of a token.
    assert!(!log.contains(&access[access.len() - 20..]), "{log}");
}

/// `xcore messaging import` takes the original engine's `engine_state.json` as it is;
/// `xcore messaging export` writes it back, extended, to a private file or to standard
/// output, with no log line in the way.
#[test]
fn messaging_state_imports_the_original_file_and_exports_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| xcore(dir.path()).args(args).output().unwrap();
    let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).unwrap();
    let original = workspace_root().join("crates/messaging/tests/fixtures/engine_state.json");

    let imported = run(&["messaging", "import", original.to_str().unwrap()]);
    let report = text(&imported.stdout);
    assert!(imported.status.success(), "{}", text(&imported.stderr));
    assert!(
        report.contains("users: 4 created") && report.contains("groups: 2 created"),
        "{report}"
    );
    // The tables were created first, as the server does when it starts.
    assert!(text(&imported.stderr).contains("migration applied"), "logs go to standard error");

    let exported = run(&["messaging", "export", "state.json"]);
    assert!(exported.status.success(), "{}", text(&exported.stderr));
    assert!(text(&exported.stdout).contains("exported 4 users, 2 groups"));
    let file = dir.path().join("state.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(&file.metadata().unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the file holds every message");
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["data", "state.json"], "no temporary file is left");
    let saved = std::fs::read_to_string(&file).unwrap();
    let state: serde_json::Value = serde_json::from_str(&saved).unwrap();
    assert_eq!(state["version"], 2);
    let ids: Vec<&str> =
        state["users"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["123", "456", "7", "zoé"]);
    assert_eq!(state["groups"][0]["name"], "général");
    assert_eq!(state["groups"][0]["roles"]["123"], "owner", "the first member owns the group");

    let piped = run(&["messaging", "export"]);
    assert!(piped.status.success(), "{}", text(&piped.stderr));
    assert_eq!(text(&piped.stdout), saved, "standard output carries the same file");
    let again = run(&["messaging", "import", "state.json"]);
    assert!(
        text(&again.stdout).contains("imported state.json: nothing new"),
        "{}",
        text(&again.stdout)
    );

    std::fs::write(
        dir.path().join("bad.json"),
        "{\n  \"users\": [\n    {\"id\": \"x\", \"username\": \"X\"},\n    {\"id\": \"x\", \"username\": \"Y\"}\n  ]\n}\n",
    )
    .unwrap();
    let bad = run(&["messaging", "import", "bad.json"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains(
            "bad.json: line 4, column 12 (/users/1/id): a second user has the id `x`: ids are \
             unique; nothing was imported"
        ),
        "{}",
        text(&bad.stderr)
    );
    let usage = run(&["messaging", "export", "a", "b"]);
    assert!(!usage.status.success());
    assert!(
        text(&usage.stderr)
            .contains("usage: xcore messaging export [FILE] | xcore messaging import FILE"),
        "{}",
        text(&usage.stderr)
    );
}
