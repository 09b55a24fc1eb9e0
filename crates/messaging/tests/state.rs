//! The state file: export, import, and what an import refuses, on SQLite and, when
//! `XCORE_TEST_DATABASE_URL` is set, on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};
use xcore_db::{Database, DatabaseConfig};
use xcore_messaging::{
    Actor, ConversationKind, Counts, Draft, Engine, MessagingConfig, Position, Role, StateError,
    UserId,
};

/// What the original engine writes (`json.dump(state, f, indent=4)`): ids as strings and
/// numbers, non-ASCII text escaped, `connected` flags, a `null` metadata.
const ORIGINAL: &str = include_str!("fixtures/engine_state.json");

/// A small file of the current version, one value per line where the tests need it.
const BASE: &str = r#"{
  "version": 2,
  "users": [
    {"id": "ada", "username": "Ada", "metadata": {}},
    {"id": "bob", "username": "Bob", "metadata": {"lang": "fr"}},
    {"id": "cy", "username": "Cy"}
  ],
  "groups": [
    {
      "name": "tea",
      "members": ["ada", "bob"],
      "roles": {"ada": "owner"},
      "read": {"bob": 1},
      "messages": [
        {"seq": 1, "sender": "ada", "body": "hi", "created_at": "2024-05-01T12:00:00Z"},
        {"seq": 2, "sender": "bob", "body": "hello", "created_at": "2024-05-01T12:01:00Z"}
      ]
    }
  ],
  "direct": [
    {
      "members": ["ada", "cy"],
      "messages": [
        {"seq": 1, "sender": "cy", "body": "psst", "created_at": "2024-05-01T13:00:00Z"}
      ]
    }
  ],
  "lobby": {"read": {"ada": 1}, "messages": [{"seq": 1, "sender": "bob", "body": "all", "created_at": "2024-05-01T09:00:00Z"}]}
}"#;

/// An engine on a fresh database: SQLite in a temporary file, or PostgreSQL.
async fn engine_on(postgres: bool) -> Option<(Engine, Option<tempfile::TempDir>)> {
    let (url, dir) = if postgres {
        (xcore_db::testing::fresh_postgres_url("state").await?, None)
    } else {
        let dir = tempfile::tempdir().unwrap();
        (format!("sqlite://{}", dir.path().join("chat.db").display()), Some(dir))
    };
    let db = Database::new(&DatabaseConfig { url, ..DatabaseConfig::default() }).unwrap();
    let engine = Engine::new(db, MessagingConfig::default());
    engine.migrate().await.unwrap();
    Some((engine, dir))
}

/// Runs `check` with a fresh engine (and a factory of more) on SQLite, then on
/// PostgreSQL when it is configured.
macro_rules! on_both {
    ($name:ident, $check:ident) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $check(false).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if engine_on(true).await.is_none() {
                    return;
                }
                $check(true).await;
            }
        }
    };
}

async fn export(engine: &Engine) -> String {
    let mut out = Vec::new();
    engine.export_state(&mut out).await.unwrap();
    String::from_utf8(out).unwrap()
}

fn id(text: &str) -> UserId {
    UserId::from(text)
}

fn counts(created: u64, updated: u64, unchanged: u64) -> Counts {
    Counts { created, updated, unchanged }
}

/// The conversation of `kind` named `name` (any name for direct ones) that `user` is in.
async fn find(engine: &Engine, user: &str, kind: ConversationKind, name: Option<&str>) -> i64 {
    engine
        .conversations(&id(user))
        .await
        .unwrap()
        .into_iter()
        .find(|c| {
            c.conversation.kind == kind
                && (name.is_none() || c.conversation.name.as_deref() == name)
        })
        .unwrap_or_else(|| panic!("{user} is in no {kind:?} {name:?}"))
        .conversation
        .id
}

async fn roles(engine: &Engine, user: &str, group: i64) -> Vec<(String, Role)> {
    let mut members: Vec<(String, Role)> = engine
        .members(&id(user), group)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.user_id.to_string(), m.role))
        .collect();
    members.sort();
    members
}

on_both!(a_file_written_by_the_original_engine_imports, original_imports);
async fn original_imports(postgres: bool) {
    let (engine, _dir) = engine_on(postgres).await.unwrap();
    let report = engine.import_state(ORIGINAL).await.unwrap();
    assert_eq!(report.users, counts(4, 0, 0));
    assert_eq!(report.groups, counts(2, 0, 0));
    assert_eq!(report.messages, counts(0, 0, 0));

    // Numeric ids are read as their text; escaped text (a surrogate pair too) decoded.
    let zoe = engine.user(&id("zoé")).await.unwrap();
    assert_eq!(zoe.username, "Zoé Ōkami 🐺");
    assert_eq!(
        zoe.metadata,
        json!({"ville": "Montréal", "tags": ["thé", "café"], "age": 31, "vip": null})
    );
    assert_eq!(engine.user(&id("456")).await.unwrap().metadata, json!({"role": "admin"}));
    assert_eq!(engine.user(&id("7")).await.unwrap().metadata, json!({}), "null metadata is empty");
    // Nobody is connected: presence belongs to the running engine.
    assert!(!engine.presence(&id("123")).online);

    // The original had no roles: the first listed member owns each group.
    let general = find(&engine, "zoé", ConversationKind::Group, Some("général")).await;
    let members = roles(&engine, "123", general).await;
    assert_eq!(
        members,
        [("123".into(), Role::Owner), ("456".into(), Role::Member), ("zoé".into(), Role::Member)]
    );
    let cafe = find(&engine, "7", ConversationKind::Group, Some("Café ☕")).await;
    assert_eq!(
        roles(&engine, "7", cafe).await,
        [("123".into(), Role::Member), ("7".into(), Role::Owner)]
    );
    // Every user is in the lobby, where the original's `send_message` goes.
    engine.connect_user("7", "Sam", json!({})).await.unwrap();
    let sent = engine.send_message("7", "bonjour").await.unwrap();
    assert_eq!(sent.seq, 1);

    let exported: Value = serde_json::from_str(&export(&engine).await).unwrap();
    assert_eq!(exported["version"], 2);
    let user = &exported["users"][3];
    assert_eq!((&user["id"], &user["connected"]), (&json!("zoé"), &json!(false)));
    assert_eq!(exported["groups"][0]["members"], json!(["123", "456", "zoé"]));
    assert_eq!(exported["lobby"]["messages"][0]["body"], "bonjour");

    // Importing it again changes nothing, though `connected` says otherwise.
    let again = engine.import_state(ORIGINAL).await.unwrap();
    assert!(!again.changed(), "{again:?}");
    assert_eq!(again.users, counts(0, 0, 4));
    assert_eq!(again.groups, counts(0, 0, 2));
}

/// Builds a state with every kind of thing the file holds.
async fn populate(engine: &Engine) {
    for (user, name) in [("ada", "Ada"), ("bob", "Bob"), ("cy", "Cy ✨"), ("dee", "Dee")] {
        engine
            .register_user(user, name, json!({"n": name, "nested": {"a": [1, 2]}}))
            .await
            .unwrap();
    }
    engine.connect_user("ada", "Ada", json!({})).await.unwrap();
    engine.disconnect_user("ada").await.unwrap();
    let tea = engine.create_group("ada", "tea", &[id("bob"), id("cy")]).await.unwrap().id;
    engine.set_role(&id("ada"), tea, &id("bob"), Role::Admin).await.unwrap();
    engine.send("ada", tea, "first").await.unwrap();
    engine
        .send("cy", tea, Draft { body: "look".into(), attachment: Some(json!({"file": "a.png"})) })
        .await
        .unwrap();
    engine.send("bob", tea, "line\nbreak \"quoted\" \u{1F375}").await.unwrap();
    engine.edit_message(&Actor::user("ada"), tea, 1, "first, edited").await.unwrap();
    engine.delete_message(&Actor::user("bob"), tea, 2).await.unwrap();
    // A former member's messages stay.
    engine.leave_group(&id("cy"), tea).await.unwrap();
    engine.mark_read(&id("bob"), tea, 3).await.unwrap();
    engine.create_group("dee", "empty", &[]).await.unwrap();
    let direct = engine.direct(&id("bob"), &id("ada")).await.unwrap().id;
    engine.send("bob", direct, "psst").await.unwrap();
    engine.send("ada", direct, "yes?").await.unwrap();
    engine.mark_read(&id("ada"), direct, 1).await.unwrap();
    let lobby = find(engine, "ada", ConversationKind::Lobby, None).await;
    engine.send("dee", lobby, "hello all").await.unwrap();
    engine.mark_read(&id("cy"), lobby, 1).await.unwrap();
}

on_both!(an_export_imported_into_a_fresh_database_exports_the_same, round_trip);
async fn round_trip(postgres: bool) {
    let (source, _a) = engine_on(postgres).await.unwrap();
    populate(&source).await;
    let first = export(&source).await;
    let parsed: Value = serde_json::from_str(&first).unwrap();
    let tea = &parsed["groups"][0];
    assert_eq!(tea["members"], json!(["ada", "bob"]));
    assert_eq!(tea["roles"], json!({"ada": "owner", "bob": "admin"}));
    assert_eq!(tea["read"], json!({"bob": 3}));
    assert_eq!(tea["messages"][1]["deleted"], true);
    assert_eq!(tea["messages"][1]["sender"], "cy");
    assert!(tea["messages"][0]["edited_at"].is_string());
    assert_eq!(parsed["direct"][0]["members"], json!(["ada", "bob"]));
    assert_eq!(parsed["lobby"]["read"], json!({"cy": 1}));
    assert!(parsed["users"][0]["last_seen"].is_string(), "{}", parsed["users"][0]);

    let (copy, _b) = engine_on(postgres).await.unwrap();
    let report = copy.import_state(&first).await.unwrap();
    assert_eq!(report.users, counts(4, 0, 0));
    assert_eq!(report.groups, counts(2, 0, 0));
    assert_eq!(report.direct, counts(1, 0, 0));
    assert_eq!(report.messages, counts(6, 0, 0));
    assert_eq!(report.read_markers, 3);
    assert_eq!(export(&copy).await, first);

    // The copy works as the engine expects: numbering continues, roles hold.
    let tea_id = find(&copy, "ada", ConversationKind::Group, Some("tea")).await;
    assert_eq!(copy.send("bob", tea_id, "more").await.unwrap().seq, 4);
    let removed = copy.remove_member(&id("bob"), tea_id, &id("ada")).await;
    assert!(removed.is_err(), "an admin cannot remove the owner");

    // Both sides take the file again without a change.
    assert!(!source.import_state(&first).await.unwrap().changed());
    let again = copy.import_state(&first).await.unwrap();
    assert!(!again.changed(), "{again:?}");
    assert_eq!(again.messages, counts(0, 0, 6));
}

on_both!(an_import_merges_into_what_is_stored, merges);
async fn merges(postgres: bool) {
    let (engine, _dir) = engine_on(postgres).await.unwrap();
    engine.import_state(BASE).await.unwrap();
    engine
        .mark_read(&id("bob"), find(&engine, "bob", ConversationKind::Group, Some("tea")).await, 2)
        .await
        .unwrap();
    let later = BASE
        .replace(r#""username": "Cy"}"#, r#""username": "Cyrus", "metadata": {"x": 1}}"#)
        .replace(r#""members": ["ada", "bob"]"#, r#""members": ["ada", "bob", "cy"]"#)
        .replace(r#""roles": {"ada": "owner"}"#, r#""roles": {"ada": "member", "cy": "admin"}"#)
        .replace(
            r#""body": "hello", "created_at": "2024-05-01T12:01:00Z"}"#,
            r#""body": "hello!", "created_at": "2024-05-01T12:01:00Z", "edited_at": "2024-05-02T00:00:00Z"},
        {"seq": 3, "sender": "cy", "body": "new", "created_at": "2024-05-03T00:00:00Z"}"#,
        );
    let report = engine.import_state(&later).await.unwrap();
    assert_eq!(report.users, counts(0, 1, 2));
    assert_eq!(report.groups, counts(0, 1, 0));
    assert_eq!(report.direct, counts(0, 0, 1));
    assert_eq!(report.messages, counts(1, 1, 3));
    assert_eq!(report.read_markers, 0, "bob read further than the file says");

    let cy = engine.user(&id("cy")).await.unwrap();
    assert_eq!((cy.username.as_str(), cy.metadata), ("Cyrus", json!({"x": 1})));
    let tea = find(&engine, "cy", ConversationKind::Group, Some("tea")).await;
    // The file's roles win; the group left without an owner is given its first member.
    assert_eq!(
        roles(&engine, "ada", tea).await,
        [("ada".into(), Role::Owner), ("bob".into(), Role::Member), ("cy".into(), Role::Admin)]
    );
    let history = engine
        .history(&Actor::user("ada"), tea, xcore_messaging::Page::Latest { limit: 10 })
        .await
        .unwrap();
    let bodies: Vec<&str> = history.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["hi", "hello!", "new"]);
    let summary = engine.conversations(&id("bob")).await.unwrap();
    let tea_summary = summary.iter().find(|s| s.conversation.id == tea).unwrap();
    assert_eq!((tea_summary.conversation.last_seq, tea_summary.last_read_seq), (3, 2));
    assert_eq!(engine.send("ada", tea, "after").await.unwrap().seq, 4);

    // An older edit than the stored one does not win.
    let older =
        later.replace("2024-05-02T00:00:00Z", "2024-05-01T12:30:00Z").replace("hello!", "stale");
    let report = engine.import_state(&older).await.unwrap();
    assert_eq!(report.messages, counts(0, 0, 5));
    assert!(!report.changed(), "{report:?}");
}

/// Imports `text`, which must be refused at `line` (and at the column of `token` in that
/// line, when given) for a reason containing `reason`, and checks nothing changed.
async fn refused(engine: &Engine, text: &str, line: usize, token: Option<&str>, reason: &str) {
    let before = export(engine).await;
    let error = engine.import_state(text).await.expect_err(reason);
    let message = error.to_string();
    assert!(message.contains(reason), "expected `{reason}` in: {message}");
    let found = match &error {
        StateError::Malformed { line, column, .. } => Position { line: *line, column: *column },
        StateError::Inconsistent { position: Some(position), .. } => *position,
        other => panic!("not a refusal: {other:?}"),
    };
    assert_eq!(found.line, line, "{message}");
    if let Some(token) = token {
        let text_line = text.lines().nth(line - 1).unwrap();
        let column =
            text_line.find(token).unwrap_or_else(|| panic!("`{token}` not in {text_line}"));
        assert_eq!(found.column, text_line[..column].chars().count() + 1, "{message}");
    }
    assert!(message.starts_with(&format!("line {line}, column ")), "{message}");
    assert_eq!(export(engine).await, before, "a refused import changed nothing: {message}");
}

on_both!(an_inconsistent_file_is_refused_at_its_line_and_changes_nothing, inconsistent);
async fn inconsistent(postgres: bool) {
    let (engine, _dir) = engine_on(postgres).await.unwrap();
    // (replace, with, line, the token the column points at, reason)
    let cases: &[(&str, &str, usize, Option<&str>, &str)] = &[
        (
            r#"{"id": "cy""#,
            r#"{"id": "bob""#,
            6,
            Some(r#""bob""#),
            "a second user has the id `bob`",
        ),
        (
            r#"["ada", "bob"]"#,
            r#"["ada", "dan"]"#,
            11,
            Some(r#""dan""#),
            "`dan` is not one of the file's users",
        ),
        (
            r#"["ada", "bob"]"#,
            r#"["ada", "bob", "ada"]"#,
            11,
            Some(r#""ada"]"#),
            "`ada` is listed twice",
        ),
        (r#"["ada", "bob"]"#, "[]", 11, Some("[]"), "at least one member"),
        (
            r#"{"ada": "owner"}"#,
            r#"{"cy": "owner"}"#,
            12,
            Some(r#""owner""#),
            "`cy` has a role but is not a member",
        ),
        (
            r#"{"ada": "owner"}"#,
            r#"{"ada": "boss"}"#,
            12,
            None,
            "unknown variant `boss`, expected one of `member`, `admin`, `owner`",
        ),
        (
            r#"{"seq": 1, "sender": "ada""#,
            r#"{"seq": 0, "sender": "ada""#,
            15,
            Some("0,"),
            "the first message has seq 0",
        ),
        (
            r#"{"seq": 2, "sender": "bob""#,
            r#"{"seq": 3, "sender": "bob""#,
            16,
            Some("3,"),
            "seq 3 follows seq 1: sequence numbers have no gap",
        ),
        (
            r#"{"seq": 2, "sender": "bob""#,
            r#"{"seq": 1, "sender": "bob""#,
            16,
            Some("1,"),
            "seq 1 follows seq 1",
        ),
        (
            r#""sender": "ada", "body": "hi""#,
            r#""sender": "eve", "body": "hi""#,
            15,
            Some(r#""eve""#),
            "the sender `eve` is not one of the file's users",
        ),
        (
            r#""body": "hello","#,
            r#""body": "hello", "deleted": true,"#,
            16,
            Some(r#""hello""#),
            "a deleted message keeps no body",
        ),
        (
            r#""read": {"bob": 1}"#,
            r#""read": {"bob": 5}"#,
            13,
            Some("5}"),
            "read marker 5 is not 0 to 2",
        ),
        (
            r#""read": {"bob": 1}"#,
            r#""read": {"cy": 1}"#,
            13,
            Some("1}"),
            "`cy` is not a member of the group",
        ),
        (
            r#""read": {"bob": 1}"#,
            r#""read": {"bob": 1, "bob": 2}"#,
            13,
            None,
            "the key `bob` appears twice",
        ),
        (
            r#"["ada", "cy"]"#,
            r#"["ada", "cy", "bob"]"#,
            22,
            Some("["),
            "exactly two members, not 3",
        ),
        (r#"["ada", "cy"]"#, r#"["cy", "cy"]"#, 22, Some(r#""cy"]"#), "two different users"),
        (
            r#""sender": "cy", "body": "psst""#,
            r#""sender": "bob", "body": "psst""#,
            24,
            Some(r#""bob""#),
            "is not one of the conversation's two members",
        ),
        (
            r#""sender": "bob", "body": "all""#,
            r#""sender": "zed", "body": "all""#,
            28,
            Some(r#""zed""#),
            "the sender `zed` is not one of the file's users",
        ),
        (
            r#""lobby": {"read": {"ada": 1}"#,
            r#""lobby": {"read": {"ada": 2}"#,
            28,
            Some("2}"),
            "read marker 2 is not 0 to 1",
        ),
        (
            r#""metadata": {"lang": "fr"}"#,
            r#""metadata": "fr""#,
            5,
            Some(r#""fr""#),
            "metadata must be an object",
        ),
        (
            r#"{"id": "cy", "username": "Cy"}"#,
            r#"{"id": "cy", "username": " "}"#,
            6,
            Some(r#"" ""#),
            "the username must be 1 to 64 characters",
        ),
        (
            r#""name": "tea""#,
            r#""name": """#,
            10,
            Some(r#""""#),
            "the group's name must be 1 to 100 characters",
        ),
        (
            r#""version": 2"#,
            r#""version": 3"#,
            2,
            Some("3"),
            "format version 3 is not one this xcore reads",
        ),
        // Malformed: serde_json's own position and words.
        (r#""version": 2,"#, r#""version": 2,,"#, 2, None, "key must be a string"),
        (r#""username": "Cy""#, r#""usernme": "Cy""#, 6, None, "unknown field `usernme`"),
        (r#"{"id": "cy""#, r#"{"id": 1.5"#, 6, None, "a user id (a string or an integer)"),
        ("2024-05-01T12:00:00Z", "yesterday", 15, None, "`yesterday` is not an RFC 3339 time"),
        (r#""users": ["#, r#""users": {"#, 3, None, "invalid type: map, expected a sequence"),
    ];
    for (from, to, line, token, reason) in cases {
        assert!(BASE.contains(from), "{from}");
        refused(&engine, &BASE.replacen(from, to, 1), *line, *token, reason).await;
    }
    let error =
        engine.import_state(&BASE.replacen(r#""version": 2,"#, r#""version": 2,,"#, 1)).await;
    assert!(
        matches!(error, Err(StateError::Malformed { line: 2, column: 16, .. })),
        "serde_json's column, at the second comma: {error:?}"
    );
    // A second group of the same name comes later in the file, at the original's line.
    let twice = BASE.replace(r#""groups": ["#, r#""groups": [{"name": "tea", "members": ["cy"]},"#);
    refused(&engine, &twice, 10, Some(r#""tea""#), "a second group is named `tea`").await;
    assert_eq!(
        export(&engine).await,
        export(&engine_on(postgres).await.unwrap().0).await,
        "still empty"
    );

    // Against what is stored: the file's message 1 must be the stored message 1.
    engine.import_state(BASE).await.unwrap();
    let with_new_user = BASE.replace(
        r#"{"id": "cy", "username": "Cy"}"#,
        r#"{"id": "cy", "username": "Cy"}, {"id": "dan", "username": "Dan"}"#,
    );
    let other_sender = with_new_user
        .replace(r#""sender": "ada", "body": "hi""#, r#""sender": "bob", "body": "hi""#);
    refused(
        &engine,
        &other_sender,
        15,
        Some("{"),
        "message 1 is stored as sent by `ada` at 2024-05-01T12:00:00.000000Z",
    )
    .await;
    let other_time = with_new_user.replace("2024-05-01T13:00:00Z", "2024-05-01T13:00:00.5Z");
    refused(&engine, &other_time, 24, Some("{"), "message 1 is stored as sent by `cy`").await;
    assert!(engine.user(&id("dan")).await.is_err(), "the refused file's new user was not kept");

    // Groups are matched by name: a name several stored groups share is ambiguous.
    let second = engine.create_group("bob", "tea", &[]).await.unwrap().id;
    let first = find(&engine, "ada", ConversationKind::Group, Some("tea")).await;
    refused(
        &engine,
        BASE,
        10,
        Some(r#""tea""#),
        &format!("2 stored groups are named `tea` (ids {first}, {second})"),
    )
    .await;
}

#[tokio::test]
async fn a_message_without_a_time_is_matched_by_its_body() {
    let engine = Engine::in_memory().await.unwrap();
    let text = BASE.replace(r#", "created_at": "2024-05-01T12:00:00Z""#, "");
    engine.import_state(&text).await.unwrap();
    assert!(!engine.import_state(&text).await.unwrap().changed());
    let other = text.replace(r#""body": "hi""#, r#""body": "ho""#);
    let error = engine.import_state(&other).await.unwrap_err();
    assert!(error.to_string().starts_with("line 15, column 9 (/groups/0/messages/0): "), "{error}");
}

#[tokio::test]
async fn an_empty_object_imports_nothing_and_a_byte_order_mark_is_skipped() {
    let engine = Engine::in_memory().await.unwrap();
    assert!(!engine.import_state("{}").await.unwrap().changed());
    let report = engine.import_state(&format!("\u{feff}{ORIGINAL}")).await.unwrap();
    assert_eq!(report.users.created, 4);
}

#[tokio::test]
async fn an_export_of_groups_sharing_a_name_says_so() {
    let engine = Engine::in_memory().await.unwrap();
    engine.register_user("ada", "Ada", json!({})).await.unwrap();
    for name in ["tea", "tea", "cake"] {
        engine.create_group("ada", name, &[]).await.unwrap();
    }
    let mut out = Vec::new();
    let report = engine.export_state(&mut out).await.unwrap();
    assert_eq!((report.users, report.groups, report.messages), (1, 3, 0));
    assert_eq!(report.shared_group_names, ["tea"]);
}
