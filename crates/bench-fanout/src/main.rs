//! `fanout`: the load client of `cargo xtask bench fanout`.
//!
//! It opens one WebSocket per member of one group, has one member send 100-byte messages
//! at a fixed rate, and measures, per delivery, the time from send to receipt (the send
//! time travels in the body, on this process's own clock, so no clocks need agreeing),
//! and per send the time to its acknowledgement. The same client speaks xcore's gateway
//! protocol (`docs/protocol.md`) and Socket.IO v5 over Engine.IO v4 on a bare WebSocket, so
//! both servers are driven by identical code; the rounds of the two alternate, rate by rate,
//! in one process so that both see the same machine state.
//!
//! Server CPU time and memory come from `/proc/<pid>` of the server processes, whose ids
//! the caller passes. Results are printed as one JSON object per line for `xtask` to turn
//! into a table.

#![allow(clippy::print_stdout, reason = "the results are the program's output")]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Bytes of every message body, the issue's figure.
const BODY_BYTES: usize = 100;
/// How long a round waits after its last send for deliveries still on their way.
const DRAIN: Duration = Duration::from_secs(3);
/// Connections opened at once during setup.
const CONCURRENCY: usize = 64;
/// The Socket.IO room that plays the group.
const ROOM: &str = "fanout";

/// The instant all send times count from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Microseconds since [`epoch`].
fn now_micros() -> u64 {
    u64::try_from(epoch().elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// The two protocols the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Xcore,
    SocketIo,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Xcore => "xcore",
            Self::SocketIo => "socket.io",
        }
    }
}

/// The command line: `--key value` pairs.
#[derive(Debug)]
struct Args(HashMap<String, String>);

impl Args {
    fn parse() -> Result<Self> {
        let mut map = HashMap::new();
        let mut args = std::env::args().skip(1);
        while let Some(key) = args.next() {
            let Some(key) = key.strip_prefix("--") else { bail!("unexpected argument `{key}`") };
            let value = args.next().with_context(|| format!("--{key} needs a value"))?;
            map.insert(key.to_owned(), value);
        }
        Ok(Self(map))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn number<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T> {
        self.get(key).map_or(Ok(default), |value| {
            value.parse().map_err(|_| anyhow::anyhow!("--{key}: `{value}` is not a number"))
        })
    }
}

/// One server under test and everything the client holds open on it.
#[derive(Debug)]
struct Target {
    kind: Kind,
    /// `ws://host:port`.
    ws: String,
    pid: u32,
    /// xcore's access tokens, one per member; empty for Socket.IO.
    tokens: Vec<String>,
    /// xcore's group id.
    conversation: i64,
    shared: Arc<Shared>,
    /// Frames for the sender's socket.
    outbox: Option<mpsc::UnboundedSender<Message>>,
    /// Send times by request number, until acknowledged.
    pending: Arc<Mutex<HashMap<u64, u64>>>,
    next_ref: u64,
    members: usize,
    /// Set once a round missed its targets; later rates are skipped.
    done: bool,
}

/// What the socket tasks record for the round under way.
#[derive(Debug, Default)]
struct Shared {
    round: AtomicU64,
    delivered: AtomicU64,
    closed: AtomicU64,
    /// Latest delivery time of the round, in µs since the epoch.
    last_delivery: AtomicU64,
    /// Delivery latencies in µs, one shard per socket to keep the locks uncontended.
    latencies: Mutex<Vec<Arc<Mutex<Vec<u32>>>>>,
    acks: Mutex<Vec<u32>>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse()?;
    let members: usize = args.number("members", 1000)?;
    let seconds: f64 = args.number("seconds", 10.0)?;
    let idle: usize = args.number("idle", 0)?;
    let p99_limit_ms: f64 = args.number("p99-ms", 100.0)?;
    let rates: Vec<f64> = args
        .get("rates")
        .unwrap_or("")
        .split(',')
        .filter(|rate| !rate.is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("--rates: deliveries per second, separated by commas")?;
    epoch();

    let mut targets = Vec::new();
    if let Some(url) = args.get("xcore") {
        let pid = args.number("xcore-pid", 0)?;
        targets.push(setup_xcore(url, pid, members).await?);
    }
    if let Some(url) = args.get("socketio") {
        let pid = args.number("socketio-pid", 0)?;
        targets.push(setup_socketio(url, pid, members).await?);
    }
    if targets.is_empty() {
        bail!("name a server: --xcore http://host:port and/or --socketio http://host:port");
    }

    for (index, &rate) in rates.iter().enumerate() {
        for target in &mut targets {
            if target.done {
                continue;
            }
            let round = u64::try_from(index).unwrap_or(0) + 1;
            let result = run_round(target, round, rate, seconds).await?;
            let p99 = result["p99_ms"].as_f64().unwrap_or(f64::INFINITY);
            let sustained = result["sustained"].as_bool().unwrap_or(false);
            if !sustained || p99 >= p99_limit_ms {
                target.done = true;
            }
            println!("{result}");
        }
    }
    if idle > 0 {
        for target in &targets {
            println!("{}", idle_memory(target, idle).await?);
        }
    }
    Ok(())
}

/// One HTTP/1.1 request to the server at `base` (`http://host:port`) on a connection of
/// its own: the JSON answer of a 2xx, an error otherwise.
async fn call(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<Value> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let host = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let bearer =
        token.map(|token| format!("authorization: Bearer {token}\r\n")).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n{bearer}\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").context("a malformed answer")?;
    let status: u16 = head.get(9..12).and_then(|code| code.parse().ok()).context("no status")?;
    if !(200..300).contains(&status) {
        bail!("{method} {path} answered {status}: {body}");
    }
    Ok(serde_json::from_str(body).unwrap_or(Value::Null))
}

/// `http://host:port` as `ws://host:port`.
fn ws_base(url: &str) -> String {
    url.trim_end_matches('/').replacen("http://", "ws://", 1)
}

/// Registers `members` accounts, signs them in, puts them in one group and connects and
/// subscribes one socket each.
///
/// Password hashing is the cost of registering: the caller lowers xcore's argon2
/// parameters through `[auth.password]` for the benchmark, and accounts are registered
/// `CONCURRENCY` at a time.
async fn setup_xcore(url: &str, pid: u32, members: usize) -> Result<Target> {
    let base = url.trim_end_matches('/').to_owned();
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..members {
        let (base, permits) = (base.clone(), permits.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            let account = json!({
                "email": format!("fanout{index}@example.com"),
                "password": format!("fanout password {index}"),
            });
            call(&base, "POST", "/auth/register", None, Some(&account)).await?;
            let login = call(&base, "POST", "/auth/login", None, Some(&account)).await?;
            let token = login["access_token"].as_str().context("no access_token")?.to_owned();
            let me = call(&base, "GET", "/messaging/me", Some(&token), None).await?;
            let id = match &me["user"]["id"] {
                Value::String(id) => id.clone(),
                other => other.to_string(),
            };
            anyhow::Ok((index, token, id))
        });
    }
    let mut accounts = vec![(String::new(), String::new()); members];
    while let Some(joined) = tasks.join_next().await {
        let (index, token, id) = joined??;
        accounts[index] = (token, id);
    }
    let (tokens, ids): (Vec<String>, Vec<String>) = accounts.into_iter().unzip();
    let owner = tokens.first().context("--members must be at least 1")?;
    let body = json!({"name": "fanout", "members": &ids[1..]});
    let group = call(&base, "POST", "/messaging/groups", Some(owner), Some(&body)).await?;
    let conversation = group["id"].as_i64().context("the new group has no id")?;
    let mut target = Target {
        kind: Kind::Xcore,
        ws: ws_base(url),
        pid,
        tokens,
        conversation,
        shared: Arc::default(),
        outbox: None,
        pending: Arc::default(),
        next_ref: 1,
        members,
        done: false,
    };
    connect_members(&mut target).await?;
    Ok(target)
}

/// Connects `members` sockets to the Socket.IO peer and has each join the room.
async fn setup_socketio(url: &str, pid: u32, members: usize) -> Result<Target> {
    let mut target = Target {
        kind: Kind::SocketIo,
        ws: ws_base(url),
        pid,
        tokens: Vec::new(),
        conversation: 0,
        shared: Arc::default(),
        outbox: None,
        pending: Arc::default(),
        next_ref: 1,
        members,
        done: false,
    };
    connect_members(&mut target).await?;
    Ok(target)
}

/// Opens and subscribes every member's socket; member 0's becomes the sender's.
async fn connect_members(target: &mut Target) -> Result<()> {
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..target.members {
        let (kind, ws, permits) = (target.kind, target.ws.clone(), permits.clone());
        let token = target.tokens.get(index).cloned();
        let conversation = target.conversation;
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            let mut socket = open(kind, &ws, token.as_deref()).await?;
            subscribe(kind, &mut socket, conversation).await?;
            anyhow::Ok((index, socket))
        });
    }
    let mut sockets: Vec<Option<Ws>> = (0..target.members).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        let (index, socket) = joined??;
        sockets[index] = Some(socket);
    }
    for (index, socket) in sockets.into_iter().enumerate() {
        let socket = socket.context("a member's socket is missing")?;
        let shard = Arc::new(Mutex::new(Vec::new()));
        target.shared.latencies.lock().map_err(poisoned)?.push(shard.clone());
        let (sink, stream) = socket.split();
        let (outbox, inbox) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(sink, inbox));
        tokio::spawn(read_loop(
            target.kind,
            stream,
            outbox.clone(),
            shard,
            target.shared.clone(),
            target.pending.clone(),
        ));
        if index == 0 {
            target.outbox = Some(outbox);
        }
    }
    Ok(())
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> anyhow::Error {
    anyhow::anyhow!("a socket task panicked")
}

/// Opens one socket and completes the protocol's handshake.
async fn open(kind: Kind, ws: &str, token: Option<&str>) -> Result<Ws> {
    match kind {
        Kind::Xcore => {
            let token = token.context("no token")?;
            let (mut socket, _) =
                tokio_tungstenite::connect_async(format!("{ws}/ws?token={token}"))
                    .await
                    .context("cannot open a socket to xcore")?;
            wait_for(kind, &mut socket, |text| text.contains(r#""type":"ready""#)).await?;
            Ok(socket)
        }
        Kind::SocketIo => {
            let url = format!("{ws}/socket.io/?EIO=4&transport=websocket");
            let (mut socket, _) = tokio_tungstenite::connect_async(url)
                .await
                .context("cannot open a socket to Socket.IO")?;
            // Engine.IO's open packet, then Socket.IO's connect to the main namespace.
            wait_for(kind, &mut socket, |text| text.starts_with('0')).await?;
            socket.send(Message::text("40")).await?;
            wait_for(kind, &mut socket, |text| text.starts_with("40")).await?;
            Ok(socket)
        }
    }
}

/// Subscribes a socket to the group (xcore) or joins the room (Socket.IO, with an ack).
async fn subscribe(kind: Kind, socket: &mut Ws, conversation: i64) -> Result<()> {
    match kind {
        Kind::Xcore => {
            let frame = json!({"type": "subscribe", "ref": 0, "conversation": conversation});
            socket.send(Message::text(frame.to_string())).await?;
            wait_for(kind, socket, |text| text.contains(r#""type":"subscribed""#)).await
        }
        Kind::SocketIo => {
            socket.send(Message::text(format!(r#"420["join","{ROOM}"]"#))).await?;
            wait_for(kind, socket, |text| text.starts_with("430")).await
        }
    }
}

/// Reads until a text frame satisfies `done`, answering Engine.IO pings on the way.
async fn wait_for(kind: Kind, socket: &mut Ws, done: impl Fn(&str) -> bool) -> Result<()> {
    let deadline = Duration::from_secs(30);
    loop {
        let frame = tokio::time::timeout(deadline, socket.next())
            .await
            .context("no answer within 30 s")?
            .context("the server closed the socket")??;
        if let Message::Text(text) = frame {
            if done(text.as_str()) {
                return Ok(());
            }
            if text.as_str().contains(r#""type":"error""#) {
                bail!("the server answered {text}");
            }
            if kind == Kind::SocketIo && text.as_str() == "2" {
                socket.send(Message::text("3")).await?;
            }
        } else if let Message::Close(close) = frame {
            bail!("the server closed the socket: {close:?}");
        }
    }
}

async fn write_loop(
    mut sink: futures_util::stream::SplitSink<Ws, Message>,
    mut inbox: mpsc::UnboundedReceiver<Message>,
) {
    while let Some(frame) = inbox.recv().await {
        if sink.send(frame).await.is_err() {
            return;
        }
    }
}

/// Records deliveries and acknowledgements until the socket ends.
async fn read_loop(
    kind: Kind,
    mut stream: futures_util::stream::SplitStream<Ws>,
    outbox: mpsc::UnboundedSender<Message>,
    shard: Arc<Mutex<Vec<u32>>>,
    shared: Arc<Shared>,
    pending: Arc<Mutex<HashMap<u64, u64>>>,
) {
    while let Some(Ok(frame)) = stream.next().await {
        let Message::Text(text) = frame else { continue };
        let text = text.as_str();
        if let Some((round, sent)) = body_stamp(text) {
            if round == shared.round.load(Ordering::Relaxed) {
                let now = now_micros();
                let latency = u32::try_from(now.saturating_sub(sent)).unwrap_or(u32::MAX);
                if let Ok(mut shard) = shard.lock() {
                    shard.push(latency);
                }
                shared.delivered.fetch_add(1, Ordering::Relaxed);
                shared.last_delivery.fetch_max(now, Ordering::Relaxed);
            }
        } else if let Some(number) = ack_ref(kind, text) {
            let sent = pending.lock().ok().and_then(|mut pending| pending.remove(&number));
            if let (Some(sent), Ok(mut acks)) = (sent, shared.acks.lock()) {
                acks.push(u32::try_from(now_micros().saturating_sub(sent)).unwrap_or(u32::MAX));
            }
        } else if kind == Kind::SocketIo && text == "2" {
            let _ = outbox.send(Message::text("3"));
        }
    }
    shared.closed.fetch_add(1, Ordering::Relaxed);
}

/// The round and send time a message body carries: `"body":"RRRRRR TTTTTTTTTTTTTT …`.
fn body_stamp(text: &str) -> Option<(u64, u64)> {
    let start = text.find(r#""body":""#)? + 8;
    let stamp = text.get(start..start + 21)?;
    Some((stamp[..6].parse().ok()?, stamp[7..].parse().ok()?))
}

/// The request number an acknowledgement answers, if `text` is one.
fn ack_ref(kind: Kind, text: &str) -> Option<u64> {
    let digits = match kind {
        Kind::Xcore => text.strip_prefix(r#"{"type":"ack","ref":"#)?,
        // `43<id>[…]`: an ack of the main namespace.
        Kind::SocketIo => text.strip_prefix("43")?,
    };
    let end = digits.find(|c: char| !c.is_ascii_digit())?;
    digits[..end].parse().ok()
}

/// A 100-byte body stamped with the round and the send time.
fn body(round: u64, sent: u64) -> String {
    let mut body = format!("{round:06} {sent:014} ");
    body.extend(std::iter::repeat_n('x', BODY_BYTES - body.len()));
    body
}

/// Sends at `rate` deliveries per second (the message rate times the members) for
/// `seconds`, waits for the stragglers, and reports the round.
async fn run_round(target: &mut Target, round: u64, rate: f64, seconds: f64) -> Result<Value> {
    let shared = target.shared.clone();
    for shard in shared.latencies.lock().map_err(poisoned)?.iter() {
        shard.lock().map_err(poisoned)?.clear();
    }
    shared.acks.lock().map_err(poisoned)?.clear();
    shared.delivered.store(0, Ordering::Relaxed);
    shared.last_delivery.store(0, Ordering::Relaxed);
    let closed_before = shared.closed.load(Ordering::Relaxed);
    shared.round.store(round, Ordering::Relaxed);
    #[allow(clippy::cast_precision_loss, reason = "a member count is far below 2^52")]
    let per_second = rate / target.members as f64;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "positive, small")]
    let total = (per_second * seconds).round().max(1.0) as u64;
    let interval = Duration::from_secs_f64(1.0 / per_second);
    let outbox = target.outbox.clone().context("no sender socket")?;

    let cpu_before = cpu_ticks(target.pid)?;
    let start = tokio::time::Instant::now();
    let start_micros = now_micros();
    for index in 0..total {
        let due = start + interval.mul_f64(index as f64);
        tokio::time::sleep_until(due).await;
        let number = target.next_ref;
        target.next_ref += 1;
        let sent = now_micros();
        let body = body(round, sent);
        let frame = match target.kind {
            Kind::Xcore => format!(
                r#"{{"type":"send","ref":{number},"conversation":{},"body":"{body}"}}"#,
                target.conversation
            ),
            Kind::SocketIo => format!(r#"42{number}["send","{body}"]"#),
        };
        target.pending.lock().map_err(poisoned)?.insert(number, sent);
        outbox.send(Message::text(frame)).context("the sender's socket is closed")?;
    }
    let send_end = now_micros();
    let expected = total * u64::try_from(target.members)?;
    let drain_until = tokio::time::Instant::now() + DRAIN;
    while shared.delivered.load(Ordering::Relaxed) < expected
        && tokio::time::Instant::now() < drain_until
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cpu_after = cpu_ticks(target.pid)?;
    // Later deliveries of this round are not counted.
    shared.round.store(0, Ordering::Relaxed);

    let mut latencies = Vec::new();
    for shard in shared.latencies.lock().map_err(poisoned)?.iter() {
        latencies.extend_from_slice(&shard.lock().map_err(poisoned)?);
    }
    latencies.sort_unstable();
    let mut acks = std::mem::take(&mut *shared.acks.lock().map_err(poisoned)?);
    acks.sort_unstable();
    target.pending.lock().map_err(poisoned)?.clear();
    let delivered = latencies.len() as u64;
    let last = shared.last_delivery.load(Ordering::Relaxed).max(send_end);
    #[allow(clippy::cast_precision_loss, reason = "counts and µs are far below 2^52")]
    let (achieved, cpu_us) = (
        delivered as f64 / ((last - start_micros) as f64 / 1e6),
        (cpu_after - cpu_before) as f64 * 10_000.0 / delivered.max(1) as f64,
    );
    let send_seconds = Duration::from_micros(send_end - start_micros).as_secs_f64();
    // Sustained: (nearly) every delivery arrived, at (nearly) the rate asked for, and the
    // sender kept to its schedule.
    #[allow(clippy::cast_precision_loss, reason = "counts are far below 2^52")]
    let sustained = delivered as f64 >= 0.999 * expected as f64
        && achieved >= 0.95 * rate
        && send_seconds <= seconds * 1.05;
    Ok(json!({
        "kind": "round",
        "server": target.kind.name(),
        "members": target.members,
        "rate": rate,
        "seconds": seconds,
        "sent": total,
        "expected": expected,
        "delivered": delivered,
        "deliveries_per_sec": achieved,
        // Missing deliveries count as slower than any that came.
        "p50_ms": quantile_ms(&latencies, expected, 0.50),
        "p99_ms": quantile_ms(&latencies, expected, 0.99),
        "ack_p50_ms": quantile_ms(&acks, total, 0.50),
        "ack_p99_ms": quantile_ms(&acks, total, 0.99),
        "cpu_us_per_delivery": cpu_us,
        "closed_sockets": shared.closed.load(Ordering::Relaxed) - closed_before,
        "sustained": sustained,
    }))
}

/// The `q` quantile (nearest rank) of `sorted` µs among `of` samples in ms; the samples
/// missing from `sorted` count as infinitely slow (JSON `null`).
fn quantile_ms(sorted: &[u32], of: u64, q: f64) -> Value {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "small, positive")]
    #[allow(clippy::cast_precision_loss, reason = "counts are far below 2^52")]
    let rank = ((q * of as f64).ceil() as usize).max(1);
    sorted.get(rank - 1).map_or(Value::Null, |&micros| json!(f64::from(micros) / 1000.0))
}

/// User plus system CPU time of `pid`, in clock ticks (USER_HZ, 100 on Linux).
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).context("malformed stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |index: usize| -> Result<u64> {
        fields.get(index).and_then(|value| value.parse().ok()).context("malformed stat")
    };
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    Ok(field(11)? + field(12)?)
}

/// The resident set size of `pid`, in KiB.
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

/// Opens `count` idle sockets (authenticated on xcore, connected to the main namespace on
/// Socket.IO; subscribed to nothing) and reports the server's RSS growth per socket.
async fn idle_memory(target: &Target, count: usize) -> Result<Value> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_kib(target.pid)?;
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..count {
        let (kind, ws, permits) = (target.kind, target.ws.clone(), permits.clone());
        let token = if target.tokens.is_empty() {
            None
        } else {
            Some(target.tokens[index % target.tokens.len()].clone())
        };
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            open(kind, &ws, token.as_deref()).await
        });
    }
    let mut sockets = Vec::with_capacity(count);
    while let Some(joined) = tasks.join_next().await {
        sockets.push(joined??);
    }
    // Keep reading so pings are answered, as an idle client would.
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|socket| {
            let kind = target.kind;
            tokio::spawn(async move {
                let (mut sink, mut stream) = socket.split();
                while let Some(Ok(frame)) = stream.next().await {
                    if let Message::Text(text) = frame
                        && kind == Kind::SocketIo
                        && text.as_str() == "2"
                        && sink.send(Message::text("3")).await.is_err()
                    {
                        return;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(target.pid)?;
    for reader in &readers {
        reader.abort();
    }
    #[allow(clippy::cast_precision_loss, reason = "KiB and counts are far below 2^52")]
    let per_connection = after.saturating_sub(before) as f64 * 1024.0 / count as f64;
    Ok(json!({
        "kind": "idle",
        "server": target.kind.name(),
        "connections": count,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "bytes_per_connection": per_connection,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_their_stamp_and_are_100_bytes() {
        let body = body(7, 123_456_789);
        assert_eq!(body.len(), BODY_BYTES);
        let frame = format!(r#"{{"type":"message","message":{{"seq":1,"body":"{body}"}}}}"#);
        assert_eq!(body_stamp(&frame), Some((7, 123_456_789)));
        let frame = format!(r#"42["message",{{"seq":1,"body":"{body}"}}]"#);
        assert_eq!(body_stamp(&frame), Some((7, 123_456_789)));
    }

    #[test]
    fn acks_are_recognised() {
        assert_eq!(ack_ref(Kind::Xcore, r#"{"type":"ack","ref":42,"seq":1}"#), Some(42));
        assert_eq!(ack_ref(Kind::SocketIo, r#"4317[{"seq":3}]"#), Some(17));
        assert_eq!(ack_ref(Kind::SocketIo, r#"42["message",{}]"#), None);
    }

    #[test]
    fn missing_samples_count_as_slowest() {
        assert_eq!(quantile_ms(&[1000, 2000], 2, 0.5), json!(1.0));
        assert_eq!(quantile_ms(&[1000, 2000], 4, 0.99), Value::Null);
    }
}
