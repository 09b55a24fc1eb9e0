//! Fan-out across nodes: each node publishes what its engine commits (messages, edits,
//! deletions, membership changes that end subscriptions) and typing notices, once, on
//! one channel of a Redis server or one subject of a NATS server; every other node
//! delivers them to its own sockets.
//!
//! Sequence numbers still come from the database, so a message missed on the way (the
//! broker connection dropped: Redis and NATS publish at most once) is a gap each socket
//! fills from the store; after reconnecting, the node makes every subscribed
//! conversation catch up at once, not at its next message.

use std::time::Duration;

use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::model::{ConversationId, UserId};

/// Which broker connects the nodes (`messaging.broker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerKind {
    /// One node: nothing is published.
    #[default]
    Local,
    Redis,
    Nats,
}

/// What crosses from one node to the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Envelope {
    /// The publishing node, which ignores its own.
    pub node: String,
    pub relayed: Relayed,
}

/// An event a node's sockets need, as relayed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Relayed {
    /// A committed message, its frame as serialized by the publishing node.
    Message {
        conversation: ConversationId,
        seq: i64,
        frame: String,
    },
    /// An edit or a deletion.
    Change {
        conversation: ConversationId,
        frame: String,
    },
    /// A typing notice, or a lobby's `online`/`offline` notice: a frame for the
    /// conversation's subscribers, not kept.
    Typing {
        conversation: ConversationId,
        frame: String,
    },
    /// Who is online on the publishing node: everyone (`snapshot`, sent every third of
    /// `messaging.presence_ttl_secs`), or the users whose count changed (0 devices: gone).
    Presence {
        users: Vec<(UserId, u32)>,
        snapshot: bool,
    },
    /// A node that just started asks the others for their snapshots.
    PresenceRequest,
    MemberRemoved {
        conversation: ConversationId,
        user: UserId,
    },
    GroupDeleted {
        conversation: ConversationId,
    },
}

/// Frames waiting to be published before the oldest are dropped (the receiving sockets
/// then fill the gap from the store).
const OUTBOX: usize = 65_536;

/// Events published to Redis in one round trip at most.
const PIPELINE: usize = 256;

const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(5);

/// A connected broker.
#[derive(Debug, Clone)]
pub(crate) struct Broker {
    outbox: mpsc::Sender<Vec<u8>>,
}

/// What a broker hands the hub: a relayed event, or word that events may have been
/// missed (the connection was lost and is back).
#[derive(Debug)]
pub(crate) enum Inbound {
    Relayed { node: String, relayed: Relayed },
    Resynchronize,
}

impl Broker {
    /// Connects to `url` (checked once now, so a wrong address stops startup) and starts
    /// publishing and receiving on `channel`, handing other nodes' events to `inbound`.
    ///
    /// # Errors
    ///
    /// When the broker cannot be reached.
    pub async fn connect(
        kind: BrokerKind,
        url: &str,
        channel: &str,
        node: String,
        inbound: mpsc::UnboundedSender<Inbound>,
    ) -> Result<Option<Self>, String> {
        let (outbox, queued) = mpsc::channel(OUTBOX);
        match kind {
            BrokerKind::Local => return Ok(None),
            BrokerKind::Redis => {
                let client = redis::Client::open(url).map_err(|error| error.to_string())?;
                let publisher = redis::aio::ConnectionManager::new(client.clone())
                    .await
                    .map_err(|error| format!("connecting to Redis at {url}: {error}"))?;
                let pubsub = redis_subscribe(&client, channel)
                    .await
                    .map_err(|error| format!("subscribing to Redis at {url}: {error}"))?;
                tokio::spawn(redis_publish(publisher, channel.to_owned(), queued));
                tokio::spawn(redis_receive(client, pubsub, channel.to_owned(), node, inbound));
            }
            BrokerKind::Nats => {
                // The client reconnects and resubscribes by itself; each reconnection may
                // have missed events.
                let resynchronize = inbound.clone();
                let client = async_nats::ConnectOptions::new()
                    .event_callback(move |event| {
                        let resynchronize = resynchronize.clone();
                        async move {
                            if matches!(event, async_nats::Event::Connected) {
                                let _ = resynchronize.send(Inbound::Resynchronize);
                            }
                        }
                    })
                    .connect(url)
                    .await
                    .map_err(|error| format!("connecting to NATS at {url}: {error}"))?;
                let subscriber = client
                    .subscribe(channel.to_owned())
                    .await
                    .map_err(|error| format!("subscribing to NATS at {url}: {error}"))?;
                tokio::spawn(nats_publish(client.clone(), channel.to_owned(), queued));
                tokio::spawn(nats_receive(subscriber, node, inbound));
            }
        }
        Ok(Some(Self { outbox }))
    }

    /// Queues `envelope` for the other nodes; never waits.
    pub fn publish(&self, envelope: &Envelope) {
        let Ok(payload) = serde_json::to_vec(envelope) else { return };
        if self.outbox.try_send(payload).is_err() {
            tracing::warn!(
                plugin = "messaging",
                "the broker's outbox is full: an event was not relayed (sockets elsewhere fill the gap from the store)"
            );
        }
    }
}

/// Hands a received payload to the hub, unless this node published it.
fn receive(payload: &[u8], node: &str, inbound: &mpsc::UnboundedSender<Inbound>) -> bool {
    match serde_json::from_slice::<Envelope>(payload) {
        Ok(envelope) if envelope.node != node => inbound
            .send(Inbound::Relayed { node: envelope.node, relayed: envelope.relayed })
            .is_ok(),
        Ok(_) => !inbound.is_closed(),
        Err(error) => {
            tracing::debug!(plugin = "messaging", %error, "a malformed relayed event was ignored");
            !inbound.is_closed()
        }
    }
}

async fn redis_subscribe(
    client: &redis::Client,
    channel: &str,
) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}

async fn redis_publish(
    mut connection: redis::aio::ConnectionManager,
    channel: String,
    mut queued: mpsc::Receiver<Vec<u8>>,
) {
    let mut batch = Vec::with_capacity(PIPELINE);
    // What queued while the last batch was on its way goes out as one pipeline: one round
    // trip, however many events.
    while queued.recv_many(&mut batch, PIPELINE).await > 0 {
        let mut pipeline = redis::pipe();
        for payload in batch.drain(..) {
            pipeline.cmd("PUBLISH").arg(&channel).arg(payload).ignore();
        }
        let published: redis::RedisResult<()> = pipeline.query_async(&mut connection).await;
        if let Err(error) = published {
            // The connection manager reconnects; the receivers fill the gap.
            tracing::warn!(plugin = "messaging", %error, "publishing to Redis failed");
        }
    }
}

async fn redis_receive(
    client: redis::Client,
    first: redis::aio::PubSub,
    channel: String,
    node: String,
    inbound: mpsc::UnboundedSender<Inbound>,
) {
    let mut pubsub = Some(first);
    let mut retry = FIRST_RETRY;
    loop {
        let Some(current) = pubsub.take() else { return };
        let mut messages = current.into_on_message();
        while let Some(message) = messages.next().await {
            if !receive(message.get_payload_bytes(), &node, &inbound) {
                return;
            }
        }
        tracing::warn!(plugin = "messaging", "the Redis subscription was lost; reconnecting");
        loop {
            tokio::time::sleep(retry).await;
            if inbound.is_closed() {
                return;
            }
            match redis_subscribe(&client, &channel).await {
                Ok(next) => {
                    tracing::info!(plugin = "messaging", "the Redis subscription is back");
                    pubsub = Some(next);
                    retry = FIRST_RETRY;
                    let _ = inbound.send(Inbound::Resynchronize);
                    break;
                }
                Err(error) => {
                    tracing::debug!(plugin = "messaging", %error, "resubscribing to Redis failed");
                    retry = (retry * 2).min(LAST_RETRY);
                }
            }
        }
    }
}

async fn nats_publish(
    client: async_nats::Client,
    subject: String,
    mut queued: mpsc::Receiver<Vec<u8>>,
) {
    while let Some(payload) = queued.recv().await {
        if let Err(error) = client.publish(subject.clone(), payload.into()).await {
            tracing::warn!(plugin = "messaging", %error, "publishing to NATS failed");
        }
    }
}

async fn nats_receive(
    mut subscriber: async_nats::Subscriber,
    node: String,
    inbound: mpsc::UnboundedSender<Inbound>,
) {
    while let Some(message) = subscriber.next().await {
        if !receive(&message.payload, &node, &inbound) {
            return;
        }
    }
    tracing::warn!(plugin = "messaging", "the NATS subscription ended");
}
