//! The reading half of a connection: the client's requests.

use super::*;

/// The reading half: answers the client's frames one after another, so a client's sends
/// are committed in the order it sent them.
pub(crate) struct Reader {
    pub(super) gateway: Gateway,
    pub(super) connection: Arc<Connection>,
    pub(super) actor: Actor,
    pub(super) dialect: Dialect,
    pub(super) subscribed: std::collections::HashSet<ConversationId>,
    /// The token the socket was opened (or last renewed) with.
    pub(super) token: String,
    /// When the socket closes unless a fresh token comes, once its token expired.
    pub(super) grace_until: Option<Instant>,
    pub(super) invalid: u32,
    /// The frame budget (a token bucket refilled at `frames_per_sec`).
    pub(super) tokens: f64,
    pub(super) refilled: Instant,
}

impl Reader {
    /// Answers the client's frames from `stream` until the connection closes, then removes
    /// it and disconnects its user once `writing` has sent what it could.
    pub(crate) async fn serve<S>(mut self, stream: &mut S, writing: JoinHandle<()>)
    where
        S: futures_util::Stream<Item = Result<WsMessage, axum::Error>> + Unpin,
    {
        let idle = self.gateway.config().idle_timeout();
        self.run(stream, idle).await;
        let Self { gateway, connection, actor, subscribed, .. } = self;
        gateway.hub().remove(&connection, subscribed.iter().copied());
        if connection.closer.code().is_none() {
            connection.closer.close(close::NORMAL);
        }
        // A writer stuck sending to a peer that does not read cannot send a close frame
        // either: the socket is dropped.
        let mut writing = writing;
        if timeout(WRITER_GRACE, &mut writing).await.is_err() {
            writing.abort();
        }
        if let Err(error) = Box::pin(gateway.engine().disconnect_user(actor.user)).await {
            tracing::debug!(plugin = "messaging", %error, "disconnecting a socket's user");
        }
    }

    async fn run<S>(&mut self, stream: &mut S, idle: Duration)
    where
        S: futures_util::Stream<Item = Result<WsMessage, axum::Error>> + Unpin,
    {
        let every = self.gateway.config().token_check();
        let mut checks = tokio::time::interval_at(Instant::now() + every, every);
        let mut last_frame = Instant::now();
        loop {
            let next = tokio::select! {
                biased;
                _ = self.connection.closer.wait() => return,
                _ = checks.tick() => {
                    self.check_token();
                    if last_frame.elapsed() >= idle {
                        self.connection.closer.close(close::IDLE);
                    }
                    continue;
                }
                next = timeout(idle, stream.next()) => next,
            };
            last_frame = Instant::now();
            let frame = match next {
                Err(_) => {
                    self.connection.closer.close(close::IDLE);
                    return;
                }
                Ok(None | Some(Err(_))) => return,
                Ok(Some(Ok(frame))) => frame,
            };
            match frame {
                WsMessage::Text(text) => match self.dialect {
                    Dialect::Native => self.on_text(&text).await,
                    Dialect::SocketIo(mode) => {
                        if let Some(frame) = socketio::on_packet(self, mode, &text) {
                            self.on_valid(frame).await;
                        }
                    }
                },
                WsMessage::Binary(_) => {
                    self.invalid(None, "binary frames are not part of the protocol: send text")
                }
                WsMessage::Close(_) => return,
                WsMessage::Ping(_) | WsMessage::Pong(_) => {}
            }
            if self.connection.closer.code().is_some() {
                return;
            }
        }
    }

    /// Checks the socket's token again: an expired one starts the grace period (the
    /// client is told), one whose session or account was ended closes the socket.
    fn check_token(&mut self) {
        match self.gateway.authenticate(&self.token) {
            Ok(_) => self.grace_until = None,
            Err(xcore_middleware::Rejection::Expired) => match self.grace_until {
                None => {
                    let grace = self.gateway.config().token_grace();
                    self.grace_until = Some(Instant::now() + grace);
                    self.reply(&ServerFrame::TokenExpired { grace_secs: grace.as_secs() });
                }
                Some(until) if Instant::now() >= until => {
                    self.connection.closer.close(close::TOKEN_EXPIRED);
                }
                Some(_) => {}
            },
            Err(_) => self.connection.closer.close(close::UNAUTHORIZED),
        }
    }

    fn reply(&self, frame: &ServerFrame<'_>) {
        self.connection.push(Outbound::Text(self.dialect.encode(frame)));
    }

    /// Queues `text`, already in the connection's dialect.
    pub(crate) fn push_text(&self, text: String) {
        self.connection.push(Outbound::Text(text));
    }

    pub(crate) fn close(&self, code: u16) {
        self.connection.closer.close(code);
    }

    pub(crate) fn user(&self) -> &crate::UserId {
        &self.actor.user
    }

    pub(crate) fn lobby(&self) -> Option<ConversationId> {
        self.gateway.hub().lobby()
    }

    pub(crate) fn invalid(&mut self, reference: Option<&Ref>, message: &str) {
        self.reply(&ServerFrame::Error { reference, code: "invalid_frame", message });
        self.invalid += 1;
        if self.invalid >= MAX_INVALID {
            self.connection.closer.close(close::POLICY);
        }
    }

    /// Takes one frame from the budget.
    pub(crate) fn spend(&mut self) -> bool {
        let config = self.gateway.config();
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens =
            (self.tokens + elapsed * f64::from(config.frames_per_sec)).min(config.frames_burst());
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Refuses a frame over the connection's budget.
    pub(crate) fn rate_limited(&mut self) {
        let message = "too many frames: slow down";
        self.reply(&ServerFrame::Error { reference: None, code: "rate_limited", message });
        self.invalid += 1;
        if self.invalid >= MAX_INVALID {
            self.connection.closer.close(close::POLICY);
        }
    }

    async fn on_text(&mut self, text: &str) {
        if !self.spend() {
            return self.rate_limited();
        }
        let frame = match serde_json::from_str::<ClientFrame>(text) {
            Ok(frame) => frame,
            Err(error) => {
                let reference = serde_json::from_str::<serde_json::Value>(text)
                    .ok()
                    .and_then(|value| value.get("ref").cloned())
                    .filter(valid_ref);
                return self.invalid(reference.as_ref(), &format!("not a valid frame: {error}"));
            }
        };
        self.on_valid(frame).await;
    }

    /// Answers a well-formed frame.
    pub(crate) async fn on_valid(&mut self, frame: ClientFrame) {
        // Boxed: the engine calls behind a frame hold much more state than waiting for
        // the next frame does, and an idle connection should only pay for the latter.
        Box::pin(self.on_frame(frame)).await;
    }

    async fn on_frame(&mut self, frame: ClientFrame) {
        let engine = self.gateway.engine().clone();
        match frame {
            ClientFrame::Auth { reference, token } => {
                // A fresh token for the same account keeps the socket going; one for
                // another account ends it; a bad one is refused and changes nothing.
                match self.gateway.authenticate(&token) {
                    Ok(user) if crate::UserId::from(user.user_id) == self.actor.user => {
                        self.token = token;
                        self.grace_until = None;
                        self.reply(&ServerFrame::Ready { user: self.actor.user.as_str() });
                    }
                    Ok(_) => self.connection.closer.close(close::UNAUTHORIZED),
                    Err(rejection) => {
                        let message = rejection.to_string();
                        let code = rejection.code();
                        self.reply(&ServerFrame::Error {
                            reference: reference.as_ref(),
                            code,
                            message: &message,
                        });
                    }
                }
            }
            ClientFrame::Ping { reference } => {
                self.reply(&ServerFrame::Pong { reference: reference.as_ref() })
            }
            ClientFrame::Send { reference, conversation, body, attachment } => {
                let draft = Draft { body, attachment };
                match engine.send(self.actor.user.clone(), conversation, draft).await {
                    Ok(message) => self.reply(&ServerFrame::Ack {
                        reference: reference.as_ref(),
                        conversation,
                        id: message.id,
                        seq: message.seq,
                        ts: message.created_at,
                    }),
                    Err(error) => self.error(reference.as_ref(), &error),
                }
            }
            ClientFrame::Edit { reference, conversation, seq, body, attachment } => {
                let draft = Draft { body, attachment };
                let edited = engine.edit_message(&self.actor, conversation, seq, draft).await;
                self.changed(reference.as_ref(), conversation, edited);
            }
            ClientFrame::Delete { reference, conversation, seq } => {
                let deleted = engine.delete_message(&self.actor, conversation, seq).await;
                self.changed(reference.as_ref(), conversation, deleted);
            }
            ClientFrame::Presence { reference, users } => {
                let users = match users {
                    Some(users) if users.len() > MAX_PRESENCE_USERS => {
                        let reason = format!("must be at most {MAX_PRESENCE_USERS}");
                        return self.error(reference.as_ref(), &Error::invalid("users", reason));
                    }
                    Some(users) => users,
                    // The first online users by id: all of them are on the REST API.
                    None => engine.online_users().into_iter().take(MAX_PRESENCE_USERS).collect(),
                };
                let users: Vec<UserPresence> = users
                    .into_iter()
                    .map(|user| UserPresence { presence: engine.presence(&user), user })
                    .collect();
                self.reply(&ServerFrame::Presence { reference: reference.as_ref(), users: &users });
            }
            ClientFrame::Conversations { reference } => {
                match engine.conversations(&self.actor.user).await {
                    Ok(conversations) => self.reply(&ServerFrame::Conversations {
                        reference: reference.as_ref(),
                        conversations: &conversations,
                    }),
                    Err(error) => self.error(reference.as_ref(), &error),
                }
            }
            ClientFrame::Direct { reference, user } => {
                let direct = engine.direct(&self.actor.user, &user).await;
                self.conversation(reference.as_ref(), direct);
            }
            ClientFrame::GroupCreate { reference, name, members } => {
                let created = engine.create_group(self.actor.user.clone(), &name, &members).await;
                self.conversation(reference.as_ref(), created);
            }
            ClientFrame::GroupRename { reference, conversation, name } => {
                let renamed = engine.rename_group(&self.actor.user, conversation, &name).await;
                self.conversation(reference.as_ref(), renamed);
            }
            ClientFrame::GroupDelete { reference, conversation } => {
                let deleted = engine.delete_group(&self.actor.user, conversation).await;
                self.done(reference.as_ref(), deleted);
            }
            ClientFrame::Members { reference, conversation } => {
                match engine.members(&self.actor.user, conversation).await {
                    Ok(members) => self.reply(&ServerFrame::Members {
                        reference: reference.as_ref(),
                        conversation,
                        members: &members,
                    }),
                    Err(error) => self.error(reference.as_ref(), &error),
                }
            }
            ClientFrame::MemberAdd { reference, conversation, user, role } => {
                let role = role.unwrap_or(crate::Role::Member);
                let added = engine.add_member(&self.actor.user, conversation, &user, role).await;
                self.member(reference.as_ref(), conversation, added);
            }
            ClientFrame::MemberRole { reference, conversation, user, role } => {
                let changed = engine.set_role(&self.actor.user, conversation, &user, role).await;
                self.member(reference.as_ref(), conversation, changed);
            }
            ClientFrame::MemberRemove { reference, conversation, user } => {
                let removed = engine.remove_member(&self.actor.user, conversation, &user).await;
                self.done(reference.as_ref(), removed);
            }
            ClientFrame::Leave { reference, conversation } => {
                let left = engine.leave_group(&self.actor.user, conversation).await;
                self.done(reference.as_ref(), left);
            }
            ClientFrame::Profile { reference, username, metadata } => {
                let user = if username.is_some() || metadata.is_some() {
                    engine.update_user(&self.actor.user, username.as_deref(), metadata).await
                } else {
                    engine.user(&self.actor.user).await
                };
                match user {
                    Ok(user) => self.reply(&ServerFrame::Profile {
                        reference: reference.as_ref(),
                        presence: engine.presence(&self.actor.user),
                        user: &user,
                    }),
                    Err(error) => self.error(reference.as_ref(), &error),
                }
            }
            ClientFrame::Subscribe { reference, conversation, after } => {
                if let Err(error) = last_seq(&engine, &self.actor, conversation).await {
                    return self.error(reference.as_ref(), &error);
                }
                // Registered before the writer reads where the conversation is, so that
                // nothing committed in between is missed (duplicates are dropped).
                self.gateway.hub().subscribe(conversation, &self.connection);
                self.subscribed.insert(conversation);
                self.connection.push(Outbound::Subscribe(Box::new(Subscribe {
                    conversation,
                    after,
                    reference,
                })));
            }
            ClientFrame::Unsubscribe { reference, conversation } => {
                self.gateway.hub().unsubscribe(conversation, self.connection.id);
                self.subscribed.remove(&conversation);
                self.connection.push(Outbound::unsubscribe(conversation, reference, "asked"));
            }
            ClientFrame::History { reference, conversation, before, after, limit } => {
                let limit = limit.unwrap_or(50);
                let page = match (before, after) {
                    (None, None) => Page::Latest { limit },
                    (Some(seq), None) => Page::Before { seq, limit },
                    (None, Some(seq)) => Page::After { seq, limit },
                    (Some(before), Some(after)) => Page::Between { after, before, limit },
                };
                match engine.history(&self.actor, conversation, page).await {
                    Ok(messages) => self.reply(&ServerFrame::History {
                        reference: reference.as_ref(),
                        conversation,
                        messages: &messages,
                    }),
                    Err(error) => self.error(reference.as_ref(), &error),
                }
            }
            ClientFrame::Read { reference, conversation, seq } => {
                match engine.mark_read(&self.actor.user, conversation, seq).await {
                    Ok(seq) => self.reply(&ServerFrame::Read {
                        reference: reference.as_ref(),
                        conversation,
                        seq,
                    }),
                    Err(error) => self.error(reference.as_ref(), &error),
                }
            }
            ClientFrame::Typing { reference, conversation } => {
                if self.subscribed.contains(&conversation) {
                    let typing =
                        ServerFrame::Typing { conversation, user: self.actor.user.as_str() };
                    let frame = Utf8Bytes::from(typing.to_text());
                    self.gateway.hub().typing(conversation, self.connection.id, frame);
                } else {
                    let error = Error::UnknownConversation(conversation);
                    self.error(reference.as_ref(), &error);
                }
            }
        }
    }

    /// Answers an edit or a deletion: `ack` with the time of the change, or the error.
    fn changed(
        &self,
        reference: Option<&Ref>,
        conversation: ConversationId,
        changed: crate::Result<crate::Message>,
    ) {
        match changed {
            Ok(message) => self.reply(&ServerFrame::Ack {
                reference,
                conversation,
                id: message.id,
                seq: message.seq,
                ts: message.edited_at.unwrap_or(message.created_at),
            }),
            Err(error) => self.error(reference, &error),
        }
    }

    fn conversation(&self, reference: Option<&Ref>, result: crate::Result<crate::Conversation>) {
        match result {
            Ok(conversation) => {
                self.reply(&ServerFrame::Conversation { reference, conversation: &conversation });
            }
            Err(error) => self.error(reference, &error),
        }
    }

    fn member(
        &self,
        reference: Option<&Ref>,
        conversation: ConversationId,
        result: crate::Result<crate::Member>,
    ) {
        match result {
            Ok(member) => {
                self.reply(&ServerFrame::Member { reference, conversation, member: &member });
            }
            Err(error) => self.error(reference, &error),
        }
    }

    fn done(&self, reference: Option<&Ref>, result: crate::Result<()>) {
        match result {
            Ok(()) => self.reply(&ServerFrame::Done { reference }),
            Err(error) => self.error(reference, &error),
        }
    }

    fn error(&self, reference: Option<&Ref>, error: &Error) {
        if let Error::Store(detail) = error {
            tracing::warn!(plugin = "messaging", %detail, "a socket request failed: the store is unavailable");
        }
        self.connection.push(Outbound::Text(error_frame(self.dialect, reference, error)));
    }
}
