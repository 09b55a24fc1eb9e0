//! The Socket.IO endpoint with real Socket.IO clients: the official Node `socket.io-client`
//! and Python's `python-socketio`, installed from their registries on first use, each
//! driven line by line by a script in `tests/clients/`, beside native-gateway users.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use xcore_messaging::ConversationKind;

use super::*;

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// Runs `program` with `args` in `dir`, failing the test on an error.
fn run(dir: &Path, program: &str, args: &[&str]) {
    let status = std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .status()
        .unwrap_or_else(|error| panic!("running {program}: {error}"));
    assert!(status.success(), "{program} {args:?} failed: {status}");
}

/// Whether `program --version` runs; says why the test is skipped when not, unless
/// `XCORE_TEST_CLIENTS` is set (as CI sets it), which makes a missing program a failure.
fn available(program: &str) -> bool {
    let found = std::process::Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        assert!(
            std::env::var_os("XCORE_TEST_CLIENTS").is_none(),
            "`{program}` is not installed, and XCORE_TEST_CLIENTS asks for the client tests"
        );
        eprintln!("skipped: `{program}` is not installed");
    }
    found
}

/// Installs once: the tests run in parallel processes, so the first takes a lock (a
/// directory, created or not atomically) and the others wait; a lock left by a process
/// killed while installing is taken over after ten minutes.
fn installed(marker: &Path, install: impl FnOnce()) {
    let lock = marker.with_extension("installing");
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    loop {
        if marker.exists() {
            return;
        }
        match std::fs::create_dir(&lock) {
            Ok(()) => break,
            Err(_) => {
                let stale = std::fs::metadata(&lock)
                    .and_then(|meta| meta.modified())
                    .is_ok_and(|at| at.elapsed().is_ok_and(|age| age.as_secs() > 600));
                if stale {
                    let _ = std::fs::remove_dir(&lock);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    if !marker.exists() {
        install();
    }
    std::fs::remove_dir(&lock).unwrap();
}

/// A client library driven by its script: commands in, events out, as JSON lines.
struct Driver {
    _child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    /// Events read while looking for another, in order.
    backlog: std::collections::VecDeque<Value>,
}

impl Driver {
    /// The Node client, once `npm` installed `socket.io-client`; `None` without Node.
    async fn node() -> Option<Self> {
        if !available("node") || !available("npm") {
            return None;
        }
        let dir = clients_dir();
        let marker = dir.join("node_modules/.xcore-installed");
        installed(&marker, || {
            run(&dir, "npm", &["install", "--no-audit", "--no-fund", "--loglevel=error"]);
            std::fs::write(&marker, "").unwrap();
        });
        Some(Self::spawn(Command::new("node").arg(dir.join("socketio-client.mjs"))))
    }

    /// The Python client, in a virtual environment `pip` filled; `None` without Python.
    async fn python() -> Option<Self> {
        if !available("python3") {
            return None;
        }
        let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("socketio-venv");
        let python = venv.join("bin/python");
        installed(&venv.join("installed"), || {
            let dir = clients_dir();
            run(&dir, "python3", &["-m", "venv", venv.to_str().unwrap()]);
            let requirements = dir.join("requirements.txt");
            run(
                &dir,
                python.to_str().unwrap(),
                &["-m", "pip", "install", "--quiet", "-r", requirements.to_str().unwrap()],
            );
            std::fs::write(venv.join("installed"), "").unwrap();
        });
        let mut command = Command::new(python);
        command.arg("-u").arg(clients_dir().join("socketio_client.py"));
        Some(Self::spawn(&mut command))
    }

    fn spawn(command: &mut Command) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self { _child: child, stdin, lines, backlog: Default::default() }
    }

    async fn command(&mut self, command: Value) {
        let line = format!("{command}\n");
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// The first event of client `id` named `event` not taken yet: the others stay for
    /// later calls.
    async fn expect(&mut self, id: &str, event: &str) -> Value {
        let matches = |line: &Value| line["id"] == id && line["event"] == event;
        if let Some(index) = self.backlog.iter().position(matches) {
            return self.backlog.remove(index).unwrap();
        }
        loop {
            let line = tokio::time::timeout(Duration::from_secs(20), self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no `{event}` for `{id}` within 20 s"))
                .unwrap()
                .expect("the client script is running");
            eprintln!("client: {line}");
            let line: Value = serde_json::from_str(&line).unwrap();
            if matches(&line) {
                return line;
            }
            self.backlog.push_back(line);
        }
    }
}

/// The Socket.IO URL of a served application, for `namespace`.
fn url(served: &Served, namespace: &str) -> String {
    format!("http://{}{namespace}", served.address)
}

/// The direct conversation of native user 1 and user 2, with 1 connected natively and
/// subscribed to it.
async fn native_direct(served: &Served) -> (Client, i64) {
    served.engine().connect_user("2", "bob", json!({})).await.unwrap();
    served.engine().disconnect_user("2").await.unwrap();
    let mut ada = served.connect("user:1").await;
    send(&mut ada, json!({"type": "direct", "ref": 1, "user": "2"})).await;
    let direct = next(&mut ada).await;
    let conversation = direct["conversation"]["id"].as_i64().unwrap();
    send(&mut ada, json!({"type": "subscribe", "ref": 2, "conversation": conversation})).await;
    assert_eq!(next(&mut ada).await["type"], "subscribed");
    (ada, conversation)
}

async fn lobby(engine: &Engine) -> i64 {
    let conversations = engine.conversations(&"1".into()).await.unwrap();
    let lobby = conversations.iter().find(|c| c.conversation.kind == ConversationKind::Lobby);
    lobby.unwrap().conversation.id
}

/// The next `message` frame of a native client with `body`, skipping the others.
async fn next_message(client: &mut Client, body: &str) -> Value {
    loop {
        let frame = next(client).await;
        if frame["type"] == "message" && frame["message"]["body"] == body {
            return frame;
        }
    }
}

#[tokio::test]
async fn the_node_client_talks_with_native_users_and_recovers_its_session() {
    let Some(mut node) = Driver::node().await else { return };
    let served = serve("").await;
    let (mut ada, conversation) = native_direct(&served).await;

    // Polling first, then the upgrade to a WebSocket, as the client does by default.
    let chat = url(&served, "/chat");
    node.command(json!({"op": "connect", "id": "bob", "url": chat, "auth": {"token": "user:2"}}))
        .await;
    let connected = node.expect("bob", "connect").await;
    assert_eq!(connected["recovered"], false);
    if connected["transport"] == "polling" {
        node.expect("bob", "upgrade").await;
    }
    node.command(json!({"op": "emit", "id": "bob", "event": "subscribe", "ack": "s",
        "payload": {"conversation": conversation}}))
        .await;
    let subscribed = node.expect("bob", "ack").await;
    assert_eq!(subscribed["args"][0]["type"], "subscribed", "{subscribed}");

    // Native → Socket.IO: the native frame, and the offset the client keeps.
    send(&mut ada, json!({"type": "send", "conversation": conversation, "body": "from ada"})).await;
    let message = node.expect("bob", "message").await;
    assert_eq!(message["args"][0]["message"]["body"], "from ada");
    assert_eq!(message["args"][1], format!("{conversation}:1"), "the offset");

    // Socket.IO → native, acknowledged with the committed id and sequence number.
    node.command(json!({"op": "emit", "id": "bob", "event": "send", "ack": "m",
        "payload": {"conversation": conversation, "body": "from bob"}}))
        .await;
    let ack = node.expect("bob", "ack").await;
    assert_eq!(ack["args"][0]["type"], "ack", "{ack}");
    assert_eq!(ack["args"][0]["seq"], 2);
    assert!(ack["args"][0]["id"].is_i64());
    let delivered = next_message(&mut ada, "from bob").await;
    assert_eq!(delivered["message"]["sender_id"], "2");
    assert_eq!(node.expect("bob", "message").await["args"][0]["message"]["seq"], 2);

    // A dropped connection: what is sent meanwhile comes after the reconnection, once,
    // in order, and the client is told its session was recovered.
    node.command(json!({"op": "drop", "id": "bob"})).await;
    node.expect("bob", "disconnect").await;
    for n in 3..=5 {
        let body = format!("missed {n}");
        send(&mut ada, json!({"type": "send", "conversation": conversation, "body": body})).await;
    }
    let reconnected = node.expect("bob", "connect").await;
    assert_eq!(reconnected["recovered"], true, "{reconnected}");
    let mut seqs = Vec::new();
    while seqs.len() < 3 {
        let message = node.expect("bob", "message").await;
        seqs.push(message["args"][0]["message"]["seq"].as_i64().unwrap());
    }
    assert_eq!(seqs, [3, 4, 5]);
    send(&mut ada, json!({"type": "send", "conversation": conversation, "body": "live"})).await;
    let live = node.expect("bob", "message").await;
    assert_eq!(live["args"][0]["message"]["seq"], 6, "no duplicate, no gap: {live}");
}

#[tokio::test]
async fn the_original_events_work_in_the_default_namespace() {
    let Some(mut node) = Driver::node().await else { return };
    let served = serve("").await;
    served.engine().connect_user("1", "ada", json!({})).await.unwrap();
    served.engine().disconnect_user("1").await.unwrap();
    let root = url(&served, "/");
    node.command(json!({"op": "connect", "id": "bob", "url": root, "auth": {"token": "user:2"},
        "transports": ["websocket"]}))
        .await;
    node.expect("bob", "connect").await;

    // Ada comes online: the original's `user_connected`.
    let mut ada = served.connect("user:1").await;
    // (Bob's own arrival may come first: everyone in the lobby is told.)
    let connected = loop {
        let connected = node.expect("bob", "user_connected").await;
        if connected["args"][0]["user_id"] != "2" {
            break connected;
        }
    };
    assert_eq!(connected["args"][0], json!({"user_id": "1", "username": "ada"}));

    // `send_message {id, content}` reaches the lobby, where every user is.
    let lobby = lobby(&served.engine()).await;
    send(&mut ada, json!({"type": "subscribe", "conversation": lobby})).await;
    while next(&mut ada).await["type"] != "subscribed" {}
    node.command(json!({"op": "emit", "id": "bob", "event": "send_message",
        "payload": {"id": "2", "content": "hi all"}}))
        .await;
    next_message(&mut ada, "hi all").await;
    let echoed = node.expect("bob", "new_message").await;
    assert_eq!(echoed["args"][0]["user_id"], "2");
    assert_eq!(echoed["args"].as_array().unwrap().len(), 1, "no offset unless asked");

    // …and so does a native send: `new_message {user_id, username, content, timestamp}`.
    send(&mut ada, json!({"type": "send", "conversation": lobby, "body": "hello bob"})).await;
    let new_message = node.expect("bob", "new_message").await;
    let payload = &new_message["args"][0];
    assert_eq!(
        (&payload["user_id"], &payload["username"], &payload["content"]),
        (&json!("1"), &json!("ada"), &json!("hello bob"))
    );
    assert!(payload["timestamp"].as_str().unwrap().contains('T'), "{payload}");

    // Someone else's id is refused with the original's `error` event.
    node.command(json!({"op": "emit", "id": "bob", "event": "send_message",
        "payload": {"id": "1", "content": "spoofed"}}))
        .await;
    let error = node.expect("bob", "error").await;
    assert_eq!(error["args"][0]["code"], "invalid_frame", "{error}");

    drop(ada);
    let gone = node.expect("bob", "user_disconnected").await;
    assert_eq!(gone["args"][0]["user_id"], "1");
}

#[tokio::test]
async fn long_polling_alone_carries_everything() {
    let Some(mut node) = Driver::node().await else { return };
    let served = serve("").await;
    let (mut ada, conversation) = native_direct(&served).await;
    let chat = url(&served, "/chat");
    node.command(json!({"op": "connect", "id": "bob", "url": chat, "auth": {"token": "user:2"},
        "transports": ["polling"]}))
        .await;
    assert_eq!(node.expect("bob", "connect").await["transport"], "polling");
    node.command(json!({"op": "emit", "id": "bob", "event": "subscribe", "ack": "s",
        "payload": {"conversation": conversation}}))
        .await;
    node.expect("bob", "ack").await;
    for n in 1..=20 {
        let body = format!("poll {n}");
        send(&mut ada, json!({"type": "send", "conversation": conversation, "body": body})).await;
    }
    for seq in 1..=20 {
        let message = node.expect("bob", "message").await;
        assert_eq!(message["args"][0]["message"]["seq"], seq);
    }
    node.command(json!({"op": "emit", "id": "bob", "event": "send", "ack": "m",
        "payload": {"conversation": conversation, "body": "polled"}}))
        .await;
    assert_eq!(node.expect("bob", "ack").await["args"][0]["seq"], 21);
    next_message(&mut ada, "polled").await;
}

#[tokio::test]
async fn a_refused_handshake_is_a_connect_error_with_the_code() {
    let Some(mut node) = Driver::node().await else { return };
    let served = serve("").await;
    for (id, auth, code) in [
        ("bad", json!({"token": "nonsense"}), "invalid_token"),
        ("none", json!({}), "invalid_token"),
        ("old", json!({"token": "until:1:2"}), "token_expired"),
    ] {
        let chat = url(&served, "/chat");
        node.command(json!({"op": "connect", "id": id, "url": chat, "auth": auth})).await;
        let refused = node.expect(id, "connect_error").await;
        assert_eq!(refused["data"]["code"], code, "{refused}");
        node.command(json!({"op": "close", "id": id})).await;
    }
    assert_eq!(served.gateway().connections(), 0);
}

#[tokio::test]
async fn the_python_client_talks_with_native_users_and_resumes() {
    let Some(mut python) = Driver::python().await else { return };
    let served = serve("").await;
    let (mut ada, conversation) = native_direct(&served).await;
    let connect = json!({"op": "connect", "id": "bob", "url": url(&served, ""),
        "namespace": "/chat", "auth": {"token": "user:2", "recover": false}});
    python.command(connect.clone()).await;
    python.expect("bob", "connect").await;
    python
        .command(json!({"op": "emit", "id": "bob", "event": "subscribe", "ack": "s",
            "payload": {"conversation": conversation}}))
        .await;
    assert_eq!(python.expect("bob", "ack").await["args"][0]["type"], "subscribed");

    send(&mut ada, json!({"type": "send", "conversation": conversation, "body": "to python"}))
        .await;
    let message = python.expect("bob", "message").await;
    assert_eq!(message["args"][0]["message"]["body"], "to python");
    assert_eq!(message["args"].as_array().unwrap().len(), 1, "no offset when not recovering");

    python
        .command(json!({"op": "emit", "id": "bob", "event": "send", "ack": "m",
            "payload": {"conversation": conversation, "body": "from python"}}))
        .await;
    assert_eq!(python.expect("bob", "ack").await["args"][0]["seq"], 2);
    assert_eq!(python.expect("bob", "message").await["args"][0]["message"]["seq"], 2);
    assert_eq!(next_message(&mut ada, "from python").await["message"]["sender_id"], "2");

    // python-socketio keeps no offsets: it resumes the native way, from the last sequence
    // number it saw.
    python.command(json!({"op": "close", "id": "bob"})).await;
    python.expect("bob", "disconnect").await;
    for n in 3..=4 {
        let body = format!("missed {n}");
        send(&mut ada, json!({"type": "send", "conversation": conversation, "body": body})).await;
    }
    python.command(connect).await;
    python.expect("bob", "connect").await;
    python
        .command(json!({"op": "emit", "id": "bob", "event": "subscribe",
            "payload": {"conversation": conversation, "after": 2}}))
        .await;
    let mut seqs = Vec::new();
    while seqs.len() < 2 {
        let message = python.expect("bob", "message").await;
        seqs.push(message["args"][0]["message"]["seq"].as_i64().unwrap());
    }
    assert_eq!(seqs, [3, 4]);
}

/// A bare Engine.IO client on a WebSocket, as any Socket.IO library speaks it: opened, its
/// open packet read.
async fn engine_io(served: &Served) -> Client {
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", served.address);
    let (mut client, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert!(next_packet(&mut client).await.starts_with("0{"), "the open packet first");
    client
}

/// The next Engine.IO packet, answering pings on the way.
async fn next_packet(client: &mut Client) -> String {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), client.next())
            .await
            .expect("a packet within 10 s")
            .expect("the socket is open")
            .unwrap();
        match frame {
            Message::Text(text) if text.as_str() == "2" => {
                client.send(Message::text("3")).await.unwrap();
            }
            Message::Text(text) => return text.as_str().to_owned(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// The arguments of the next `/chat` event named `name`, skipping other packets.
async fn next_event(client: &mut Client, name: &str) -> Vec<Value> {
    loop {
        let packet = next_packet(client).await;
        let Some(args) = packet.strip_prefix("42/chat,") else { continue };
        let args: Vec<Value> = serde_json::from_str(args).unwrap();
        if args[0] == name {
            return args[1..].to_vec();
        }
    }
}

/// Connection-state recovery across nodes: a Socket.IO client whose connection to one
/// node dropped reconnects to another with its `pid` and offset, and gets every message
/// it missed, once, in order, then live ones relayed by the broker.
async fn recovered_on_another_node(first: Served, second: Served) {
    let group = group(&first.engine(), &["2"]).await;
    let mut ada = first.connect("user:1").await;
    let mut bob = engine_io(&first).await;
    bob.send(Message::text(r#"40/chat,{"token":"user:2"}"#)).await.unwrap();
    let connected = next_packet(&mut bob).await;
    let connected: Value =
        serde_json::from_str(connected.strip_prefix("40/chat,").unwrap()).unwrap();
    let pid = connected["pid"].as_str().expect("a pid: the session can be recovered").to_owned();
    let subscribe = format!(r#"42/chat,["subscribe",{{"conversation":{group}}}]"#);
    bob.send(Message::text(subscribe)).await.unwrap();
    let subscribed = next_event(&mut bob, "subscribed").await;
    assert_eq!(subscribed[1], format!("{group}:0"), "the offset of a fresh subscription");
    send(&mut ada, json!({"type": "send", "conversation": group, "body": "m1"})).await;
    let message = next_event(&mut bob, "message").await;
    assert_eq!(message[0]["message"]["seq"], 1);
    let offset = message[1].as_str().unwrap().to_owned();
    drop(bob);

    for n in 2..=3 {
        send(&mut ada, json!({"type": "send", "conversation": group, "body": format!("m{n}")}))
            .await;
    }
    let mut bob = engine_io(&second).await;
    let auth = json!({"token": "user:2", "pid": pid, "offset": offset});
    bob.send(Message::text(format!("40/chat,{auth}"))).await.unwrap();
    let reconnected = next_packet(&mut bob).await;
    let reconnected: Value =
        serde_json::from_str(reconnected.strip_prefix("40/chat,").unwrap()).unwrap();
    assert_eq!(reconnected["pid"], pid, "the same pid: recovered");
    let mut seqs = Vec::new();
    for _ in 2..=3 {
        seqs.push(next_event(&mut bob, "message").await[0]["message"]["seq"].as_i64().unwrap());
    }
    send(&mut ada, json!({"type": "send", "conversation": group, "body": "m4"})).await;
    seqs.push(next_event(&mut bob, "message").await[0]["message"]["seq"].as_i64().unwrap());
    assert_eq!(seqs, [2, 3, 4], "every missed message once, in order, then live ones");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_works_across_nodes_on_redis() {
    let Ok(url) = std::env::var("XCORE_TEST_REDIS_URL") else {
        eprintln!("skipped: XCORE_TEST_REDIS_URL is not set");
        return;
    };
    let Some((first, second)) = super::nodes::two_nodes("redis", &url).await else { return };
    recovered_on_another_node(first, second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_works_across_nodes_on_nats() {
    let Ok(url) = std::env::var("XCORE_TEST_NATS_URL") else {
        eprintln!("skipped: XCORE_TEST_NATS_URL is not set");
        return;
    };
    let Some((first, second)) = super::nodes::two_nodes("nats", &url).await else { return };
    recovered_on_another_node(first, second).await;
}
