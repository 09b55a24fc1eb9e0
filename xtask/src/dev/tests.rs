//! What the supervisor decides, and the supervisor with the real server: swaps under load,
//! and sockets across swaps.

use std::io::{Read, Write};
use std::net::TcpStream;

use super::*;

#[test]
fn only_sources_trigger_a_rebuild() {
    for path in [
        "crates/plugins/hello/src/lib.rs",
        "Cargo.toml",
        "xcore.toml",
        "crates/auth/migrations/sqlite/x/up.sql",
    ] {
        assert!(relevant(Path::new(path)), "{path}");
    }
    for path in [
        "target/debug/xcore",
        ".git/index",
        "crates/core/src/.lib.rs.swp",
        "crates/core/src/lib.rs~",
        "crates/core/src/.#lib.rs",
        "crates/core/src/4913",
        "data/xcore.db-wal",
    ] {
        assert!(!relevant(Path::new(path)), "{path}");
    }
}

#[test]
fn config_files_restart_without_a_new_binary() {
    assert!(is_config(Path::new("xcore.toml")));
    assert!(is_config(Path::new("config/dev.toml")));
    assert!(!is_config(Path::new("Cargo.toml")));
    assert!(!is_config(Path::new("crates/plugins/hello/Cargo.toml")));
    assert!(!is_config(Path::new(".cargo/config.toml")));
    assert!(!is_config(Path::new("crates/core/src/lib.rs")));
}

/// `GET /health` on a new connection; whether it answered 200.
fn healthy(address: SocketAddr) -> std::io::Result<bool> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET /health HTTP/1.1\r\nhost: dev\r\nconnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response.starts_with("HTTP/1.1 200"))
}

/// A supervisor of a freshly built server on a free port, run from `dir`, logging
/// warnings only; it has not started the server yet.
fn supervised(dir: &Path) -> (Supervisor, SocketAddr) {
    build().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let supervisor = Supervisor::new(listener, binary(), Vec::new())
        .unwrap()
        .current_dir(dir)
        .env("XCORE_LOG__LEVEL", "warn");
    (supervisor, address)
}

#[test]
fn swaps_under_load_lose_no_request() {
    let scratch = tempfile::tempdir().unwrap();
    let (mut supervisor, address) = supervised(scratch.path());
    supervisor.swap().unwrap();

    let running = Arc::new(AtomicBool::new(true));
    let (ok, failed) = (
        Arc::new(std::sync::atomic::AtomicU64::new(0)),
        Arc::new(std::sync::atomic::AtomicU64::new(0)),
    );
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (running, ok, failed) = (running.clone(), ok.clone(), failed.clone());
            std::thread::spawn(move || {
                while running.load(Ordering::SeqCst) {
                    match healthy(address) {
                        Ok(true) => ok.fetch_add(1, Ordering::SeqCst),
                        _ => failed.fetch_add(1, Ordering::SeqCst),
                    };
                }
            })
        })
        .collect();
    let mut swaps = Vec::new();
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(200));
        swaps.push(supervisor.swap().unwrap());
    }
    std::thread::sleep(Duration::from_millis(200));
    running.store(false, Ordering::SeqCst);
    clients.into_iter().for_each(|client| client.join().unwrap());
    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    assert_eq!(failed, 0, "{ok} requests answered, {failed} failed over {swaps:?}");
    assert!(ok > 100, "the loop ran: {ok} requests");
    supervisor.stop();
}

/// Sends `request` on a new connection; the status and the body.
fn http(address: SocketAddr, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.get(9..12).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned());
    (status, body.unwrap_or_default())
}

fn post(address: SocketAddr, path: &str, body: &str) -> serde_json::Value {
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: dev\r\nconnection: close\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, body) = http(address, &request);
    assert!((200..300).contains(&status), "{path}: {status} {body}");
    serde_json::from_str(&body).unwrap_or(serde_json::Value::Null)
}

/// An account's access token.
fn sign_in(address: SocketAddr, email: &str) -> String {
    let credentials = format!(r#"{{"email": "{email}", "password": "correct horse battery"}}"#);
    post(address, "/auth/register", &credentials);
    let login = post(address, "/auth/login", &credentials);
    login["access_token"].as_str().unwrap().to_owned()
}

type Socket = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>;

/// A socket for `token`, once `ready`; retried while a swap is under way.
fn connect(address: SocketAddr, token: &str) -> Socket {
    for _ in 0..100 {
        if let Ok((mut socket, _)) =
            tungstenite::connect(format!("ws://{address}/ws?token={token}"))
        {
            if let tungstenite::stream::MaybeTlsStream::Plain(stream) = socket.get_mut() {
                stream.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            }
            if matches!(read(&mut socket), Received::Frame(ready) if ready["type"] == "ready") {
                return socket;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no socket within 5 s");
}

enum Received {
    Frame(serde_json::Value),
    /// Nothing within the socket's read timeout.
    Nothing,
    Closed,
}

fn read(socket: &mut Socket) -> Received {
    loop {
        match socket.read() {
            Ok(tungstenite::Message::Text(text)) => {
                return Received::Frame(serde_json::from_str(&text).unwrap());
            }
            Ok(tungstenite::Message::Close(_)) => return Received::Closed,
            Ok(_) => {}
            Err(tungstenite::Error::Io(error))
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Received::Nothing;
            }
            Err(_) => return Received::Closed,
        }
    }
}

fn send(socket: &mut Socket, frame: &serde_json::Value) -> bool {
    socket.send(tungstenite::Message::Text(frame.to_string().into())).is_ok()
}

fn get(address: SocketAddr, token: &str, path: &str) -> serde_json::Value {
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: dev\r\nconnection: close\r\n\
         authorization: Bearer {token}\r\n\r\n"
    );
    let (status, body) = http(address, &request);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// A sender and a receiver on the lobby while the server is swapped three times: the
/// sockets are closed (1001), reconnect to the next process and resume, and every
/// acknowledged message is received once, in order, with no gap.
#[test]
fn sockets_resume_across_swaps_and_lose_no_acknowledged_message() {
    use std::sync::atomic::AtomicI64;

    let scratch = tempfile::tempdir().unwrap();
    let (supervisor, address) = supervised(scratch.path());
    let mut supervisor = supervisor
        .env("XCORE_AUTH__SECRET", "a secret of at least thirty-two bytes, for swaps")
        // The sender sends as fast as it is answered.
        .env("XCORE_PLUGINS__MESSAGE_RATE_LIMITER__PER_USER__MESSAGES", "1000000")
        .env("XCORE_PLUGINS__MESSAGE_RATE_LIMITER__PER_USER__PER_SECS", "1")
        .env("XCORE_PLUGINS__MESSAGE_RATE_LIMITER__PER_GROUP__MESSAGES", "1000000")
        .env("XCORE_PLUGINS__MESSAGE_RATE_LIMITER__PER_GROUP__PER_SECS", "1")
        .env("XCORE_MESSAGING__GATEWAY__FRAMES_PER_SEC", "1000000")
        .env("XCORE_MESSAGING__GATEWAY__FRAMES_BURST", "1000000");
    supervisor.swap().unwrap();
    let ada = sign_in(address, "ada@example.com");
    let bob = sign_in(address, "bob@example.com");
    let conversations = get(address, &bob, "/messaging/conversations");
    let lobby = conversations["conversations"][0]["id"].as_i64().unwrap();

    let running = Arc::new(AtomicBool::new(true));
    let sending = {
        let (running, ada) = (running.clone(), ada.clone());
        std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut socket = connect(address, &ada);
            let mut n = 0;
            while running.load(Ordering::SeqCst) {
                n += 1;
                let body = format!("m{n}");
                let message = serde_json::json!(
                    {"type": "send", "ref": n, "conversation": lobby, "body": body});
                let answer =
                    if send(&mut socket, &message) { read(&mut socket) } else { Received::Closed };
                match answer {
                    Received::Frame(ack) if ack["type"] == "ack" => {
                        acked.push(ack["seq"].as_i64().unwrap());
                    }
                    Received::Frame(other) => panic!("{other}"),
                    // Closed by a swap: that message was not acknowledged (stored or
                    // not); go on with the next process.
                    Received::Closed | Received::Nothing => socket = connect(address, &ada),
                }
            }
            acked
        })
    };
    // The last sequence number the receiver must reach, once the sender has stopped.
    let target = Arc::new(AtomicI64::new(i64::MAX));
    let receiving = {
        let (target, bob) = (target.clone(), bob.clone());
        std::thread::spawn(move || {
            let mut seen: Vec<i64> = Vec::new();
            let mut socket = connect(address, &bob);
            let subscribe = |socket: &mut Socket, after: i64| {
                let frame = serde_json::json!(
                    {"type": "subscribe", "conversation": lobby, "after": after});
                send(socket, &frame);
            };
            subscribe(&mut socket, 0);
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            while seen.last().copied().unwrap_or(0) < target.load(Ordering::SeqCst)
                && std::time::Instant::now() < deadline
            {
                match read(&mut socket) {
                    Received::Frame(frame) if frame["type"] == "message" => {
                        seen.push(frame["message"]["seq"].as_i64().unwrap());
                    }
                    Received::Frame(_) | Received::Nothing => {}
                    Received::Closed => {
                        socket = connect(address, &bob);
                        subscribe(&mut socket, seen.last().copied().unwrap_or(0));
                    }
                }
            }
            seen
        })
    };
    let mut swaps = Vec::new();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(500));
        swaps.push(supervisor.swap().unwrap());
    }
    std::thread::sleep(Duration::from_millis(500));
    running.store(false, Ordering::SeqCst);
    let acked = sending.join().unwrap();
    let stored = get(address, &bob, &format!("/messaging/conversations/{lobby}"));
    let last = stored["last_seq"].as_i64().unwrap();
    target.store(last, Ordering::SeqCst);
    let seen = receiving.join().unwrap();
    supervisor.stop();

    assert!(acked.len() > 20, "the sender ran: {} acknowledged", acked.len());
    assert_eq!(seen, (1..=last).collect::<Vec<_>>(), "everything stored, once, in order");
    let missing: Vec<_> = acked.iter().filter(|seq| !seen.contains(seq)).collect();
    assert!(missing.is_empty(), "acknowledged and never received: {missing:?} ({swaps:?})");
}
