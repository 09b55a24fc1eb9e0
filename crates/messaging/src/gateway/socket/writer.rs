//! The writing half of a connection.

use super::super::hub::{Queue, Shared};
use super::*;

/// The most frames a writer sends before it flushes and looks at pings and closes again.
const BATCH: usize = 256;

/// The writing half: sends what is queued, in order, with no gap in a subscribed
/// conversation's sequence numbers.
pub(crate) struct Writer {
    pub(super) sink: Out,
    pub(super) dialect: Dialect,
    pub(super) gateway: Gateway,
    pub(super) engine: crate::Engine,
    pub(super) actor: Actor,
    /// The last sequence number sent per subscribed conversation.
    pub(super) delivered: HashMap<ConversationId, i64>,
    pub(super) max_page: u32,
}

impl Writer {
    pub(super) async fn run(
        mut self,
        connection: Arc<Connection>,
        ping: Duration,
        coalesce: Duration,
    ) {
        let mut pings = tokio::time::interval_at(Instant::now() + ping, ping);
        // Deliveries queued before this instant wait for it, to share one write.
        let mut window_end = Instant::now();
        let code = loop {
            let sent = tokio::select! {
                biased;
                code = connection.closer.wait() => break code,
                outbound = connection.queue.recv() => {
                    if outbound.is_delivery() && Instant::now() < window_end {
                        // Until the window ends, or the queue is half full: waiting
                        // never makes a connection look like a slow consumer.
                        tokio::select! {
                            biased;
                            code = connection.closer.wait() => break code,
                            () = tokio::time::sleep_until(window_end) => {}
                            () = connection.pressure.notified() => {}
                        }
                    }
                    let sent = self.batch(outbound, &connection.queue).await;
                    window_end = Instant::now() + coalesce;
                    sent
                }
                _ = pings.tick() => self.sink.ping(self.dialect).await,
                () = self.sink.upgrading() => Box::pin(self.sink.follow_upgrade()).await,
            };
            if sent.is_err() {
                // The peer is gone: nothing more can be sent.
                connection.closer.close(close::NORMAL);
                return;
            }
        };
        self.sink.close(self.dialect, code, close::reason(code)).await;
    }

    /// Sends `first` and whatever else is queued already, up to [`BATCH`] frames, in one
    /// write when they fit the socket's buffer: under load a connection costs one system
    /// call per batch rather than per frame.
    async fn batch(&mut self, first: Outbound, queue: &Queue) -> Result<(), ()> {
        self.handle(first).await?;
        for _ in 1..BATCH {
            match queue.try_recv() {
                Some(outbound) => self.handle(outbound).await?,
                None => break,
            }
        }
        self.sink.flush().await
    }

    /// Deliveries, replies and pings are sent inline; what reads the store (a
    /// subscription, a gap to fill, a catch-up) runs boxed, so the task of an idle
    /// connection keeps the small state of the first and not the large one of the second.
    async fn handle(&mut self, outbound: Outbound) -> Result<(), ()> {
        match outbound {
            Outbound::Text(text) => self.send(text.into()).await,
            Outbound::Message { seq, shared } => {
                let conversation = shared.conversation;
                let Some(&last) = self.delivered.get(&conversation) else { return Ok(()) };
                if seq <= last {
                    return Ok(());
                }
                if seq > last + 1 {
                    Box::pin(self.fill(conversation, Some(seq - 1))).await?;
                }
                self.delivered.insert(conversation, seq);
                self.message(conversation, &shared.frame, Some(&shared)).await
            }
            Outbound::Change(shared) => {
                if !self.delivered.contains_key(&shared.conversation) {
                    return Ok(());
                }
                match self.dialect {
                    Dialect::Native => self.send(shared.frame.clone()).await,
                    Dialect::SocketIo(mode) => {
                        let encoded = match socketio::change(self, mode, &shared) {
                            Ok(encoded) => encoded,
                            Err(user) => {
                                Box::pin(self.learn_username(&user)).await;
                                socketio::change(self, mode, &shared).unwrap_or_default()
                            }
                        };
                        self.send_some(encoded).await
                    }
                }
            }
            Outbound::Subscribe(subscribe) => {
                let Subscribe { conversation, after, reference } = *subscribe;
                Box::pin(self.subscribe(conversation, after, reference.as_ref())).await
            }
            Outbound::Unsubscribe(unsubscribe) => {
                let Unsubscribe { conversation, reference, reason } = *unsubscribe;
                self.delivered.remove(&conversation);
                let frame = ServerFrame::Unsubscribed {
                    reference: reference.as_ref(),
                    conversation,
                    reason,
                };
                self.notice(&frame).await
            }
            Outbound::CatchUp(conversation) => {
                if self.delivered.contains_key(&conversation) {
                    // Events were missed, maybe by the window too: the store is the truth.
                    Box::pin(self.fill_from_store(conversation, None)).await?;
                }
                Ok(())
            }
        }
    }

    async fn subscribe(
        &mut self,
        conversation: ConversationId,
        after: Option<i64>,
        reference: Option<&Ref>,
    ) -> Result<(), ()> {
        let last_seq = match last_seq(&self.engine, &self.actor, conversation).await {
            Ok(last_seq) => last_seq,
            Err(error) => {
                self.delivered.remove(&conversation);
                return self.send(error_frame(self.dialect, reference, &error).into()).await;
            }
        };
        match after {
            Some(after) if after < 0 || after > last_seq => {
                let error = Error::invalid(
                    "after",
                    format!("must be 0 to the conversation's last sequence number ({last_seq})"),
                );
                self.send(error_frame(self.dialect, reference, &error).into()).await
            }
            Some(after) => {
                self.delivered.insert(conversation, after);
                self.fill(conversation, None).await?;
                let last_seq = self.delivered.get(&conversation).copied().unwrap_or(after);
                self.notice(&ServerFrame::Subscribed { reference, conversation, last_seq }).await
            }
            None => {
                self.delivered.insert(conversation, last_seq);
                self.notice(&ServerFrame::Subscribed { reference, conversation, last_seq }).await
            }
        }
    }

    /// Sends the messages of `conversation` past the last delivered, up to `until` (or
    /// every one there is): from the node's window of recent messages when it holds them,
    /// from the store otherwise. Messages newer than the window are on their way to this
    /// connection's queue, behind this call.
    async fn fill(&mut self, conversation: ConversationId, until: Option<i64>) -> Result<(), ()> {
        let Some(&last) = self.delivered.get(&conversation) else { return Ok(()) };
        match self.gateway.hub().recent(conversation, last, until) {
            Some(frames) => {
                for (seq, frame) in frames {
                    self.delivered.insert(conversation, seq);
                    self.message(conversation, &frame, None).await?;
                }
                Ok(())
            }
            None => self.fill_from_store(conversation, until).await,
        }
    }

    /// As [`fill`](Self::fill), from the store only.
    async fn fill_from_store(
        &mut self,
        conversation: ConversationId,
        until: Option<i64>,
    ) -> Result<(), ()> {
        loop {
            let Some(&last) = self.delivered.get(&conversation) else { return Ok(()) };
            if until.is_some_and(|until| last >= until) {
                return Ok(());
            }
            let page = Page::After { seq: last, limit: self.max_page };
            let messages = match self.engine.history(&self.actor, conversation, page).await {
                Ok(messages) => messages,
                Err(error) => {
                    // Removed meanwhile, or the store is down: the client is told, and
                    // resumes from what it has.
                    tracing::debug!(plugin = "messaging", %error, conversation, "catching a socket up failed");
                    self.delivered.remove(&conversation);
                    let frame = ServerFrame::Unsubscribed {
                        reference: None,
                        conversation,
                        reason: "unavailable",
                    };
                    return self.notice(&frame).await;
                }
            };
            let full = messages.len() == self.max_page as usize;
            for message in messages {
                if until.is_some_and(|until| message.seq > until) {
                    return Ok(());
                }
                self.delivered.insert(conversation, message.seq);
                let frame = Utf8Bytes::from(message_frame("message", &message));
                self.message(conversation, &frame, None).await?;
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Sends a message of `conversation` whose native frame is `frame`, the last delivered
    /// of its conversation. `shared` keeps its Socket.IO encodings for the other
    /// recipients.
    async fn message(
        &mut self,
        conversation: ConversationId,
        frame: &Utf8Bytes,
        shared: Option<&Shared>,
    ) -> Result<(), ()> {
        match self.dialect {
            Dialect::Native => self.send(frame.clone()).await,
            Dialect::SocketIo(mode) => {
                let encoded = match socketio::message(self, mode, conversation, frame, shared) {
                    Ok(encoded) => encoded,
                    Err(user) => {
                        Box::pin(self.learn_username(&user)).await;
                        socketio::message(self, mode, conversation, frame, shared)
                            .unwrap_or_default()
                    }
                };
                self.send_some(encoded).await
            }
        }
    }

    /// Sends a notice about the subscriptions: for Socket.IO clients that recover, also
    /// as an event carrying the new position (an acknowledgement does not).
    async fn notice(&mut self, frame: &ServerFrame<'_>) -> Result<(), ()> {
        let Dialect::SocketIo(mode) = self.dialect else {
            return self.send(frame.to_text().into()).await;
        };
        for text in socketio::notice(mode, frame, &self.delivered) {
            self.send(text.into()).await?;
        }
        Ok(())
    }

    async fn learn_username(&self, user: &crate::UserId) {
        socketio::learn_username(self.gateway.hub(), &self.engine, user).await;
    }

    async fn send_some(&mut self, text: Option<Utf8Bytes>) -> Result<(), ()> {
        match text {
            Some(text) => self.send(text).await,
            None => Ok(()),
        }
    }

    /// Queues `text` in the socket's buffer, written out once it is full and at the end of
    /// the batch.
    async fn send(&mut self, text: Utf8Bytes) -> Result<(), ()> {
        self.sink.feed(text).await
    }

    pub(crate) fn delivered(&self) -> &HashMap<ConversationId, i64> {
        &self.delivered
    }

    pub(crate) fn hub(&self) -> &super::super::hub::Hub {
        self.gateway.hub()
    }
}
