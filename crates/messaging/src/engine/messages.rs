//! Messages: send, edit, delete, history, read markers.

use chrono::Utc;
use diesel::{ExpressionMethods, OptionalExtension, QueryDsl, SelectableHelper};
use diesel_async::RunQueryDsl;
use xcore_db::with_conn;

use super::Engine;
use crate::commit::Pending;
use crate::error::{Error, Result};
use crate::hooks::{Event, Outgoing};
use crate::model::{Actor, ConversationId, ConversationKind, Draft, Message, Page, Role, UserId};
use crate::schema::{MessageRow, members, messages};

impl Engine {
    /// Sends `draft` from `sender` to a conversation they are a member of: the stored
    /// message once its transaction has committed. `before_message` hooks run first, in
    /// order; `on_message` fires after.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownConversation`] when it does not exist or `sender` is not a member;
    /// [`Error::Invalid`] for an empty or oversized body or attachment; [`Error::Refused`]
    /// when a hook refused it; [`Error::Store`] when it could not be stored.
    pub async fn send(
        &self,
        sender: impl Into<UserId>,
        conversation: ConversationId,
        draft: impl Into<Draft>,
    ) -> Result<Message> {
        let (sender, draft) = (sender.into(), draft.into());
        self.check_draft(&draft)?;
        let cached = self.inner().roles.get(&(conversation, sender.clone()));
        let kind = match cached {
            Some((_, kind)) => kind,
            None => self.seat(&sender, conversation).await?.kind,
        };
        let draft = if self.hooks().has_before() {
            let outgoing =
                Outgoing { sender: sender.clone(), conversation, kind, draft, edit_of: None };
            let draft = self.run_before_hooks(outgoing).await.map_err(Error::Refused)?;
            self.check_draft(&draft)?;
            draft
        } else {
            draft
        };
        let pending = Pending {
            conversation,
            sender,
            body: draft.body,
            attachment: draft.attachment.as_ref().map(serde_json::Value::to_string),
            created_at: Utc::now().naive_utc(),
        };
        let message = self.inner().committer.commit(pending).await;
        if let Err(Error::UnknownConversation(_)) = &message {
            // Removed since the cached check: forget it.
            self.inner().roles.invalidate_all();
        }
        let message = message?;
        self.notify(Event::Message { message: message.clone(), kind });
        Ok(message)
    }

    /// Sends `content` from a connected user to the lobby, where every user is: the
    /// original engine's `send_message(id, content)`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownUser`] for an unknown user, [`Error::Offline`] for one who is not
    /// connected; then as [`send`](Self::send).
    pub async fn send_message(&self, id: impl Into<UserId>, content: &str) -> Result<Message> {
        let id = id.into();
        if !self.presence(&id).online {
            self.user(&id).await?;
            return Err(Error::Offline(id));
        }
        let lobby = self.lobby().await?;
        self.send(id, lobby, content).await
    }

    /// Replaces a message's body (and attachment) and stamps `edited_at`: its sender, a
    /// group's owners and admins, or a moderator. `before_message` hooks see the edit.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownMessage`] for a missing or deleted message, [`Error::Forbidden`]
    /// for anyone else; then as [`send`](Self::send).
    pub async fn edit_message(
        &self,
        actor: &Actor,
        conversation: ConversationId,
        seq: i64,
        draft: impl Into<Draft>,
    ) -> Result<Message> {
        let draft = draft.into();
        self.check_draft(&draft)?;
        let (kind, original) = self.editable(actor, conversation, seq).await?;
        let draft = if self.hooks().has_before() {
            let outgoing = Outgoing {
                sender: actor.user.clone(),
                conversation,
                kind,
                draft,
                edit_of: Some(seq),
            };
            let draft = self.run_before_hooks(outgoing).await.map_err(Error::Refused)?;
            self.check_draft(&draft)?;
            draft
        } else {
            draft
        };
        let attachment = draft.attachment.as_ref().map(serde_json::Value::to_string);
        let change = Change::Edit { body: &draft.body, attachment: attachment.as_deref() };
        let (previous, message) = self.change(original, change).await?;
        self.notify(Event::MessageEdited {
            message: message.clone(),
            previous,
            by: actor.user.clone(),
        });
        Ok(message)
    }

    /// Deletes a message: its body and attachment are erased, its sequence number stays
    /// (so history has no gap) with `deleted` set. Same rights as
    /// [`edit_message`](Self::edit_message). Deleting a deleted message changes nothing.
    ///
    /// # Errors
    ///
    /// As [`edit_message`](Self::edit_message).
    pub async fn delete_message(
        &self,
        actor: &Actor,
        conversation: ConversationId,
        seq: i64,
    ) -> Result<Message> {
        let original = match self.editable(actor, conversation, seq).await {
            Ok((_, message)) => message,
            Err(Error::Conflict(_)) => return self.message(actor, conversation, seq).await,
            Err(error) => return Err(error),
        };
        match self.change(original, Change::Delete).await {
            Ok((previous, message)) => {
                let by = actor.user.clone();
                self.notify(Event::MessageDeleted { message: message.clone(), previous, by });
                Ok(message)
            }
            // Deleted by someone else meanwhile: as deleting a deleted message.
            Err(Error::UnknownMessage { .. }) => self.message(actor, conversation, seq).await,
            Err(error) => Err(error),
        }
    }

    /// One message, for a member (or a moderator).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownConversation`], [`Error::UnknownMessage`].
    pub async fn message(
        &self,
        actor: &Actor,
        conversation: ConversationId,
        seq: i64,
    ) -> Result<Message> {
        self.reader(actor, conversation).await?;
        self.load_message(conversation, seq).await
    }

    /// A page of a conversation's history, oldest first, for a member (or a moderator).
    /// Deleted messages keep their place, with an empty body.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownConversation`]; [`Error::Invalid`] for a limit of 0 or above
    /// `messaging.max_page`.
    pub async fn history(
        &self,
        actor: &Actor,
        conversation: ConversationId,
        page: Page,
    ) -> Result<Vec<Message>> {
        let max = self.config().max_page;
        if page.limit() == 0 || page.limit() > max {
            return Err(Error::invalid("limit", format!("must be 1 to {max}")));
        }
        self.reader(actor, conversation).await?;
        let limit = i64::from(page.limit());
        let mut conn = self.conn().await?;
        let mut rows = with_conn!(conn, c => {
            let query = messages::table
                .filter(messages::conversation_id.eq(conversation))
                .select(MessageRow::as_select())
                .limit(limit);
            match page {
                Page::Latest { .. } => query.order(messages::seq.desc()).load(c).await,
                Page::Before { seq, .. } => {
                    query.filter(messages::seq.lt(seq)).order(messages::seq.desc()).load(c).await
                }
                Page::After { seq, .. } => {
                    query.filter(messages::seq.gt(seq)).order(messages::seq.asc()).load(c).await
                }
                Page::Between { after, before, .. } => {
                    query
                        .filter(messages::seq.gt(after))
                        .filter(messages::seq.lt(before))
                        .order(messages::seq.asc())
                        .load(c)
                        .await
                }
            }
        })?;
        if matches!(page, Page::Latest { .. } | Page::Before { .. }) {
            rows.reverse();
        }
        Ok(rows.into_iter().map(Message::from).collect())
    }

    /// Marks a conversation read up to `seq` for `user` (a `seq` past the last message
    /// counts as the last). Markers only move forward: an older `seq` changes nothing.
    /// Returns the marker.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownConversation`]; [`Error::Invalid`] for a negative `seq`.
    pub async fn mark_read(
        &self,
        user: &UserId,
        conversation: ConversationId,
        seq: i64,
    ) -> Result<i64> {
        if seq < 0 {
            return Err(Error::invalid("seq", "must be at least 0"));
        }
        let seat = self.seat(user, conversation).await?;
        let seq = seq.min(seat.conversation.last_seq);
        let mut conn = self.conn().await?;
        let marker = with_conn!(conn, c => {
            diesel::update(
                members::table.find((conversation, user.as_str())).filter(members::last_read_seq.lt(seq)),
            )
            .set(members::last_read_seq.eq(seq))
            .execute(c)
            .await?;
            members::table
                .find((conversation, user.as_str()))
                .select(members::last_read_seq)
                .first::<i64>(c)
                .await
                .optional()
        })?;
        marker.ok_or(Error::UnknownConversation(conversation))
    }

    /// Checks the caller may read a conversation: a member, or a moderator of an existing
    /// one.
    async fn reader(&self, actor: &Actor, conversation: ConversationId) -> Result<Option<Role>> {
        match self.seat(&actor.user, conversation).await {
            Ok(seat) => Ok(Some(seat.role)),
            Err(Error::UnknownConversation(_)) if actor.moderator => {
                self.conversation_row(conversation).await?;
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// The conversation's kind and message `seq`, if `actor` may change it.
    async fn editable(
        &self,
        actor: &Actor,
        conversation: ConversationId,
        seq: i64,
    ) -> Result<(ConversationKind, Message)> {
        let role = self.reader(actor, conversation).await?;
        let kind = self.conversation_row(conversation).await?.kind()?;
        let message = self.load_message(conversation, seq).await?;
        let manager = kind == ConversationKind::Group && role.is_some_and(Role::manages);
        if message.sender_id != actor.user && !manager && !actor.moderator {
            return Err(Error::Forbidden(
                "only the sender, the group's owners and admins, or a moderator change a message",
            ));
        }
        if message.deleted {
            return Err(Error::Conflict("the message is deleted"));
        }
        Ok((kind, message))
    }

    async fn load_message(&self, conversation: ConversationId, seq: i64) -> Result<Message> {
        let mut conn = self.conn().await?;
        let row = with_conn!(conn, c => {
            messages::table
                .filter(messages::conversation_id.eq(conversation))
                .filter(messages::seq.eq(seq))
                .select(MessageRow::as_select())
                .first(c)
                .await
                .optional()
        })?;
        row.map(Message::from).ok_or(Error::UnknownMessage { conversation, seq })
    }

    /// Applies `change` to `original` if the stored message is still that version, or to
    /// the version stored meanwhile (the last change wins), and returns the version it
    /// replaced with the new one: what edit and delete events carry, so plugins that
    /// account for messages (quotas) see exactly what each change removed.
    async fn change(
        &self,
        mut original: Message,
        change: Change<'_>,
    ) -> Result<(Message, Message)> {
        const ATTEMPTS: usize = 8;
        let (conversation, seq) = (original.conversation_id, original.seq);
        for _ in 0..ATTEMPTS {
            let now = Utc::now().naive_utc();
            let read_edit = original.edited_at.map(|time| time.naive_utc());
            let (body, attachment, deleted) = match change {
                Change::Edit { body, attachment } => (body, attachment, false),
                Change::Delete => ("", None, true),
            };
            let mut conn = self.conn().await?;
            let row = with_conn!(conn, c => {
                let update = diesel::update(messages::table.find(original.id))
                    .set((
                        messages::body.eq(body),
                        messages::attachment.eq(attachment),
                        messages::deleted.eq(deleted),
                        messages::edited_at.eq(now),
                    ))
                    .filter(messages::deleted.eq(false))
                    .into_boxed();
                let update = match read_edit {
                    Some(time) => update.filter(messages::edited_at.eq(time)),
                    None => update.filter(messages::edited_at.is_null()),
                };
                update.returning(MessageRow::as_returning()).get_result(c).await.optional()
            })?;
            if let Some(row) = row {
                return Ok((original, Message::from(row)));
            }
            original = self.load_message(conversation, seq).await?;
            if original.deleted {
                return Err(Error::UnknownMessage { conversation, seq });
            }
        }
        Err(Error::Conflict("the message is being changed by others; try again"))
    }

    async fn conversation_row(&self, id: ConversationId) -> Result<crate::schema::ConversationRow> {
        let mut conn = self.conn().await?;
        let row = with_conn!(conn, c => {
            crate::schema::conversations::table
                .find(id)
                .select(crate::schema::ConversationRow::as_select())
                .first(c)
                .await
                .optional()
        })?;
        row.ok_or(Error::UnknownConversation(id))
    }

    fn check_draft(&self, draft: &Draft) -> Result<()> {
        let config = self.config();
        if draft.body.chars().count() > config.max_message_chars {
            return Err(Error::invalid(
                "body",
                format!("must be at most {} characters", config.max_message_chars),
            ));
        }
        if draft.body.trim().is_empty() && draft.attachment.is_none() {
            return Err(Error::invalid("body", "must not be blank without an attachment"));
        }
        if draft.attachment.as_ref().is_some_and(|value| !value.is_object()) {
            return Err(Error::invalid("attachment", "must be a JSON object or null"));
        }
        let attachment = draft.attachment.as_ref().map_or(0, |value| value.to_string().len());
        if attachment > config.max_attachment_bytes {
            return Err(Error::invalid(
                "attachment",
                format!("must be at most {} bytes of JSON", config.max_attachment_bytes),
            ));
        }
        Ok(())
    }
}

/// What [`Engine::change`] does to a message.
#[derive(Clone, Copy)]
enum Change<'a> {
    Edit { body: &'a str, attachment: Option<&'a str> },
    Delete,
}
