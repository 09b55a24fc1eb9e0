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

mod measure;
mod setup;
mod wire;

#[cfg(test)]
use measure::quantile_ms;
use measure::{idle_memory, run_round};
use setup::{setup_socketio, setup_xcore};
use wire::*;

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

/// The servers and protocols the client drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// xcore's gateway protocol at `/ws`.
    Xcore,
    /// xcore's Socket.IO endpoint, namespace `/chat`.
    XcoreSocketIo,
    /// Socket.IO 4 on Node.
    SocketIo,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Xcore => "xcore",
            Self::XcoreSocketIo => "xcore-socketio",
            Self::SocketIo => "socket.io",
        }
    }

    /// Whether the server speaks Engine.IO, and pings with `2`.
    fn engine_io(self) -> bool {
        self != Self::Xcore
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
    /// xcore's access tokens, one per member; empty for Node's Socket.IO.
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

impl Target {
    /// A target at `url` (`http://host:port`) before any socket is open.
    fn new(
        kind: Kind,
        url: &str,
        pid: u32,
        tokens: Vec<String>,
        conversation: i64,
        members: usize,
    ) -> Self {
        Self {
            kind,
            ws: setup::ws_base(url),
            pid,
            tokens,
            conversation,
            shared: Arc::default(),
            outbox: None,
            pending: Arc::default(),
            next_ref: 1,
            members,
            done: false,
        }
    }
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
        targets.push(setup_xcore(Kind::Xcore, url, pid, members).await?);
    }
    if let Some(url) = args.get("xcore-socketio") {
        let pid = args.number("xcore-socketio-pid", 0)?;
        targets.push(setup_xcore(Kind::XcoreSocketIo, url, pid, members).await?);
    }
    if let Some(url) = args.get("socketio") {
        let pid = args.number("socketio-pid", 0)?;
        targets.push(setup_socketio(url, pid, members).await?);
    }
    if targets.is_empty() {
        bail!("name a server: --xcore, --xcore-socketio and/or --socketio, each http://host:port");
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

fn poisoned<T>(_: std::sync::PoisonError<T>) -> anyhow::Error {
    anyhow::anyhow!("a socket task panicked")
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
        assert_eq!(ack_ref(Kind::XcoreSocketIo, r#"43/chat,17[{"seq":3}]"#), Some(17));
        assert_eq!(ack_ref(Kind::XcoreSocketIo, r#"42/chat,["message",{}]"#), None);
    }

    #[test]
    fn missing_samples_count_as_slowest() {
        assert_eq!(quantile_ms(&[1000, 2000], 2, 0.5), json!(1.0));
        assert_eq!(quantile_ms(&[1000, 2000], 4, 0.99), Value::Null);
    }
}
