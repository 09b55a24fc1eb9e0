//! Engine.IO's long-polling transport: the packets for a client wait in a bounded queue
//! that its `GET` requests take; its `POST` requests carry its packets to the reader.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message as WsMessage, Utf8Bytes, WebSocket};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures_util::stream::SplitSink;
use tokio::sync::{Notify, mpsc};

use super::packet::RECORD_SEPARATOR;

/// A long-polling session's two directions.
#[derive(Debug)]
pub(crate) struct Polling {
    state: Mutex<State>,
    /// Packets are waiting, the session paused or closed: a pending poll answers.
    ready: Notify,
    /// A poll took the packets: a writer waiting for room goes on.
    room: Notify,
    /// The client upgraded to this WebSocket.
    upgrade: Mutex<Option<SplitSink<WebSocket, WsMessage>>>,
    upgraded: Notify,
    /// What the client POSTs, for the connection's reader; taken by an upgrade.
    incoming: Mutex<Option<mpsc::Sender<WsMessage>>>,
    /// Bytes the queue holds before a writer waits for a poll.
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Utf8Bytes>,
    bytes: usize,
    /// A poll is waiting.
    polling: bool,
    /// An upgrade is under way: polls answer at once.
    paused: bool,
    closed: bool,
}

impl Polling {
    pub fn new(incoming: mpsc::Sender<WsMessage>, max_bytes: usize) -> Self {
        Self {
            state: Mutex::default(),
            ready: Notify::new(),
            room: Notify::new(),
            upgrade: Mutex::new(None),
            upgraded: Notify::new(),
            incoming: Mutex::new(Some(incoming)),
            max_bytes,
        }
    }

    /// Queues a packet, waiting while the queue is full (a client that does not poll is a
    /// slow consumer, as one that does not read its socket). `Err` once closed.
    pub async fn push(&self, text: Utf8Bytes) -> Result<(), ()> {
        loop {
            let room = self.room.notified();
            {
                let mut state = lock(&self.state);
                if state.closed {
                    return Err(());
                }
                if state.bytes < self.max_bytes || state.queue.is_empty() {
                    state.bytes += text.len();
                    state.queue.push_back(text);
                    return Ok(());
                }
            }
            room.await;
        }
    }

    /// Hands what is queued to the pending poll.
    pub fn flush(&self) {
        self.ready.notify_one();
    }

    /// Ends the session: the next poll gets Engine.IO's close packet.
    pub fn close(&self) {
        let mut state = lock(&self.state);
        if !state.closed {
            state.closed = true;
            state.queue.push_back(Utf8Bytes::from_static("1"));
        }
        drop(state);
        self.ready.notify_one();
        self.room.notify_waiters();
    }

    /// Waits until a poll took every queued packet.
    pub async fn drained(&self) {
        loop {
            let room = self.room.notified();
            if lock(&self.state).queue.is_empty() {
                return;
            }
            room.await;
        }
    }

    /// Takes every queued packet.
    pub fn take_all(&self) -> Vec<Utf8Bytes> {
        let mut state = lock(&self.state);
        state.bytes = 0;
        let taken = state.queue.drain(..).collect();
        drop(state);
        self.room.notify_waiters();
        taken
    }

    /// The client probes a WebSocket: the pending poll answers now.
    pub fn pause(&self) {
        lock(&self.state).paused = true;
        self.ready.notify_one();
    }

    /// The probe failed: polls wait again.
    pub fn resume(&self) {
        lock(&self.state).paused = false;
    }

    /// The client upgraded to the WebSocket of `sink`: the writer switches to it, and what
    /// the socket receives goes to the reader through the sender returned.
    pub fn switch(&self, sink: SplitSink<WebSocket, WsMessage>) -> Option<mpsc::Sender<WsMessage>> {
        let incoming = lock(&self.incoming).take()?;
        *lock(&self.upgrade) = Some(sink);
        self.upgraded.notify_one();
        Some(incoming)
    }

    /// Waits until the client upgraded, unless it did already.
    pub async fn upgrading(&self) {
        let upgraded = self.upgraded.notified();
        if lock(&self.upgrade).is_some() {
            return;
        }
        upgraded.await;
    }

    /// The upgrade's WebSocket, if the client upgraded and no one took it yet.
    pub fn take_upgrade(&self) -> Option<SplitSink<WebSocket, WsMessage>> {
        lock(&self.upgrade).take()
    }

    /// Hands the packets of a POST body to the reader; `Err` once the session closed or
    /// upgraded.
    pub async fn receive(&self, body: &str) -> Result<(), ()> {
        let incoming = lock(&self.incoming).clone().ok_or(())?;
        for packet in body.split(RECORD_SEPARATOR) {
            let message = WsMessage::Text(Utf8Bytes::from(packet));
            incoming.send(message).await.map_err(|_| ())?;
        }
        Ok(())
    }
}

/// Answers a poll: the queued packets, waiting up to `within` for some.
pub(crate) async fn poll(polling: &Arc<Polling>, within: Duration) -> Response {
    {
        let mut state = lock(&polling.state);
        if state.polling {
            drop(state);
            polling.close();
            return super::http::bad_request("a poll is already pending: the session is closed");
        }
        state.polling = true;
    }
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let ready = polling.ready.notified();
        {
            let state = lock(&polling.state);
            if !state.queue.is_empty() || state.paused || state.closed {
                break;
            }
        }
        if tokio::time::timeout_at(deadline, ready).await.is_err() {
            break;
        }
    }
    let packets = polling.take_all();
    lock(&polling.state).polling = false;
    let mut body = String::new();
    for (index, packet) in packets.iter().enumerate() {
        if index > 0 {
            body.push(RECORD_SEPARATOR);
        }
        body.push_str(packet);
    }
    if body.is_empty() {
        // Nothing in time, or an upgrade: a noop keeps the client polling (or lets it
        // upgrade).
        body.push('6');
    }
    answer(body)
}

/// A `text/plain` answer of Engine.IO packets.
pub(crate) fn answer(body: String) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=UTF-8"))], body)
        .into_response()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
