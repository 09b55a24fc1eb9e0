//! Groups, their members and roles; direct conversations; a user's conversations.
//!
//! Only members see a conversation: to anyone else it does not exist
//! ([`Error::UnknownConversation`]). Members without the right get [`Error::Forbidden`].
//! Every change to a conversation's members first locks the conversation's row, as a
//! commit does, so a message and a removal are ordered one way or the other.

use chrono::Utc;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::{ExpressionMethods, OptionalExtension, QueryDsl, SelectableHelper};
use diesel_async::{AsyncConnection, RunQueryDsl};
use xcore_db::{Conn, with_conn};

use super::{Engine, check_name};
use crate::error::{Error, Result};
use crate::hooks::Event;
use crate::model::{
    Conversation, ConversationId, ConversationKind, ConversationSummary, Member, Role, UserId,
};
use crate::schema::{ConversationRow, MemberRow, conversations, members, messages, users};

/// The longest group name, in characters.
pub const MAX_GROUP_NAME: usize = 100;

/// A conversation and the caller's place in it.
pub(crate) struct Seat {
    pub conversation: ConversationRow,
    pub kind: ConversationKind,
    pub role: Role,
}

impl Engine {
    /// Creates a group owned by `owner`, with `members` as members.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownUser`] for an unknown owner or member; [`Error::Invalid`] for a
    /// blank or long name.
    pub async fn create_group(
        &self,
        owner: impl Into<UserId>,
        name: &str,
        members: &[UserId],
    ) -> Result<Conversation> {
        let owner = owner.into();
        check_name("name", name, MAX_GROUP_NAME)?;
        let mut everyone: Vec<(&UserId, Role)> = vec![(&owner, Role::Owner)];
        for member in members {
            if everyone.iter().all(|(known, _)| *known != member) {
                everyone.push((member, Role::Member));
            }
        }
        let now = Utc::now().naive_utc();
        let mut conn = self.conn().await?;
        self.require_users(&mut conn, everyone.iter().map(|(user, _)| *user)).await?;
        let row = with_conn!(conn, c => {
            c.transaction::<_, DieselError, _>(async |c| {
                let row: ConversationRow = diesel::insert_into(conversations::table)
                    .values((
                        conversations::kind.eq(ConversationKind::Group.as_str()),
                        conversations::name.eq(name),
                        conversations::created_at.eq(now),
                    ))
                    .returning(ConversationRow::as_returning())
                    .get_result(c)
                    .await?;
                for (user, role) in &everyone {
                    diesel::insert_into(members::table)
                        .values((
                            members::conversation_id.eq(row.id),
                            members::user_id.eq(user.as_str()),
                            members::role.eq(role.as_str()),
                            members::joined_at.eq(now),
                        ))
                        .execute(c)
                        .await?;
                }
                Ok(row)
            })
            .await
        })?;
        let group = row.into_conversation()?;
        self.notify(Event::GroupCreated { group: group.clone(), by: owner.clone() });
        for (user, role) in everyone {
            self.notify(Event::MemberAdded {
                group: group.id,
                user: user.clone(),
                role,
                by: owner.clone(),
            });
        }
        Ok(group)
    }

    /// Renames a group: owners and admins.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownConversation`] for a non-member, [`Error::Forbidden`] for a member
    /// without the right or a conversation that is not a group.
    pub async fn rename_group(
        &self,
        actor: &UserId,
        group: ConversationId,
        name: &str,
    ) -> Result<Conversation> {
        check_name("name", name, MAX_GROUP_NAME)?;
        let seat = self.group_seat(actor, group).await?;
        if !seat.role.manages() {
            return Err(Error::Forbidden("only the group's owners and admins rename it"));
        }
        let mut conn = self.conn().await?;
        let row = with_conn!(conn, c => {
            diesel::update(conversations::table.find(group))
                .set(conversations::name.eq(name))
                .returning(ConversationRow::as_returning())
                .get_result(c)
                .await
                .optional()
        })?;
        let renamed = row.ok_or(Error::UnknownConversation(group))?.into_conversation()?;
        self.notify(Event::GroupRenamed { group: renamed.clone(), by: actor.clone() });
        Ok(renamed)
    }

    /// Deletes a group with its messages: owners only.
    ///
    /// # Errors
    ///
    /// As [`rename_group`](Self::rename_group).
    pub async fn delete_group(&self, actor: &UserId, group: ConversationId) -> Result<()> {
        let seat = self.group_seat(actor, group).await?;
        if seat.role != Role::Owner {
            return Err(Error::Forbidden("only the group's owners delete it"));
        }
        let mut conn = self.conn().await?;
        with_conn!(conn, c => {
            c.transaction::<_, DieselError, _>(async |c| {
                lock_conversation!(c, group)?;
                // Explicit rather than by cascade: SQLite enforces foreign keys only per
                // connection setting, and the result must not depend on it.
                diesel::delete(messages::table.filter(messages::conversation_id.eq(group))).execute(c).await?;
                diesel::delete(members::table.filter(members::conversation_id.eq(group))).execute(c).await?;
                diesel::delete(conversations::table.find(group)).execute(c).await
            })
            .await
        })?;
        self.inner().roles.invalidate_all();
        self.notify(Event::GroupDeleted { group, by: actor.clone() });
        Ok(())
    }

    /// Adds `user` to a group as `role`. Owners and admins add members; only owners add
    /// admins and owners.
    ///
    /// # Errors
    ///
    /// As [`rename_group`](Self::rename_group); [`Error::UnknownUser`] for an unknown
    /// user; [`Error::Conflict`] when they are a member already.
    pub async fn add_member(
        &self,
        actor: &UserId,
        group: ConversationId,
        user: &UserId,
        role: Role,
    ) -> Result<Member> {
        let seat = self.group_seat(actor, group).await?;
        if !seat.role.manages() {
            return Err(Error::Forbidden("only the group's owners and admins add members"));
        }
        if role != Role::Member && seat.role != Role::Owner {
            return Err(Error::Forbidden("only the group's owners add admins and owners"));
        }
        let mut conn = self.conn().await?;
        let username = self.require_users(&mut conn, [user]).await?.pop().unwrap_or_default();
        let now = Utc::now().naive_utc();
        let inserted = with_conn!(conn, c => {
            c.transaction::<_, DieselError, _>(async |c| {
                lock_conversation!(c, group)?;
                diesel::insert_into(members::table)
                    .values((
                        members::conversation_id.eq(group),
                        members::user_id.eq(user.as_str()),
                        members::role.eq(role.as_str()),
                        members::joined_at.eq(now),
                    ))
                    .execute(c)
                    .await
            })
            .await
        });
        match inserted {
            Ok(_) => {}
            Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
                return Err(Error::Conflict("the user is a member already"));
            }
            Err(error) => return Err(error.into()),
        }
        self.inner().roles.invalidate(&(group, user.clone()));
        self.notify(Event::MemberAdded { group, user: user.clone(), role, by: actor.clone() });
        Ok(Member {
            user_id: user.clone(),
            username,
            role,
            joined_at: now.and_utc(),
            last_read_seq: 0,
        })
    }

    /// Removes `user` from a group; `user == actor` leaves it. Owners and admins remove
    /// members; only owners remove admins and owners; the last owner cannot leave.
    ///
    /// # Errors
    ///
    /// As [`add_member`](Self::add_member); [`Error::NotMember`] when `user` is not a
    /// member; [`Error::Conflict`] for the last owner.
    pub async fn remove_member(
        &self,
        actor: &UserId,
        group: ConversationId,
        user: &UserId,
    ) -> Result<()> {
        let seat = self.group_seat(actor, group).await?;
        let target = if actor == user { seat.role } else { self.member_role(group, user).await? };
        if actor != user {
            if !seat.role.manages() {
                return Err(Error::Forbidden("only the group's owners and admins remove members"));
            }
            if target != Role::Member && seat.role != Role::Owner {
                return Err(Error::Forbidden("only the group's owners remove admins and owners"));
            }
        }
        self.change_member(group, user, target, None).await?;
        self.notify(Event::MemberRemoved { group, user: user.clone(), by: actor.clone() });
        Ok(())
    }

    /// Leaves a group.
    ///
    /// # Errors
    ///
    /// As [`remove_member`](Self::remove_member).
    pub async fn leave_group(&self, user: &UserId, group: ConversationId) -> Result<()> {
        self.remove_member(user, group, user).await
    }

    /// Gives `user` another role in a group: owners only. The last owner keeps the role.
    ///
    /// # Errors
    ///
    /// As [`remove_member`](Self::remove_member).
    pub async fn set_role(
        &self,
        actor: &UserId,
        group: ConversationId,
        user: &UserId,
        role: Role,
    ) -> Result<Member> {
        let seat = self.group_seat(actor, group).await?;
        if seat.role != Role::Owner {
            return Err(Error::Forbidden("only the group's owners change roles"));
        }
        let current = self.member_role(group, user).await?;
        if current != role {
            self.change_member(group, user, current, Some(role)).await?;
            self.notify(Event::MemberRoleChanged {
                group,
                user: user.clone(),
                role,
                by: actor.clone(),
            });
        }
        self.members(actor, group)
            .await?
            .into_iter()
            .find(|member| member.user_id == *user)
            .ok_or_else(|| Error::NotMember { conversation: group, user: user.clone() })
    }

    /// A conversation the caller is a member of.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownConversation`] for a non-member.
    pub async fn conversation(&self, user: &UserId, id: ConversationId) -> Result<Conversation> {
        self.seat(user, id).await?.conversation.into_conversation()
    }

    /// The members of a conversation, for a member; by role (owners first), then id.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownConversation`] for a non-member.
    pub async fn members(&self, user: &UserId, id: ConversationId) -> Result<Vec<Member>> {
        self.seat(user, id).await?;
        let mut conn = self.conn().await?;
        let rows = with_conn!(conn, c => {
            members::table
                .inner_join(users::table)
                .filter(members::conversation_id.eq(id))
                .select((MemberRow::as_select(), users::username))
                .load::<(MemberRow, String)>(c)
                .await
        })?;
        let mut members = rows
            .into_iter()
            .map(|(row, username)| row.into_member(username))
            .collect::<Result<Vec<_>>>()?;
        members.sort_by(|a, b| b.role.cmp(&a.role).then_with(|| a.user_id.cmp(&b.user_id)));
        Ok(members)
    }

    /// The direct conversation between `user` and `peer`, created on first use. With
    /// `peer == user` it is the user's notes to self, with one member.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownUser`] for an unknown user.
    pub async fn direct(&self, user: &UserId, peer: &UserId) -> Result<Conversation> {
        let key = direct_key(user, peer);
        let mut conn = self.conn().await?;
        if let Some(row) = find_direct(&mut conn, &key).await? {
            return row.into_conversation();
        }
        self.require_users(&mut conn, [user, peer]).await?;
        let members: &[&UserId] = if user == peer { &[user] } else { &[user, peer] };
        let now = Utc::now().naive_utc();
        let created = with_conn!(conn, c => {
            c.transaction::<_, DieselError, _>(async |c| {
                let row: ConversationRow = diesel::insert_into(conversations::table)
                    .values((
                        conversations::kind.eq(ConversationKind::Direct.as_str()),
                        conversations::direct_key.eq(&key),
                        conversations::created_at.eq(now),
                    ))
                    .returning(ConversationRow::as_returning())
                    .get_result(c)
                    .await?;
                for member in members {
                    diesel::insert_into(members::table)
                        .values((
                            members::conversation_id.eq(row.id),
                            members::user_id.eq(member.as_str()),
                            members::role.eq(Role::Member.as_str()),
                            members::joined_at.eq(now),
                        ))
                        .execute(c)
                        .await?;
                }
                Ok(row)
            })
            .await
        });
        match created {
            Ok(row) => row.into_conversation(),
            // Created at the same moment by the peer.
            Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
                find_direct(&mut conn, &key)
                    .await?
                    .ok_or(Error::Conflict("the conversation changed"))?
                    .into_conversation()
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Every conversation `user` is a member of, with their unread count, the most recently
    /// active first.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the database fails.
    pub async fn conversations(&self, user: &UserId) -> Result<Vec<ConversationSummary>> {
        let mut conn = self.conn().await?;
        let rows = with_conn!(conn, c => {
            members::table
                .inner_join(conversations::table)
                .filter(members::user_id.eq(user.as_str()))
                .select((ConversationRow::as_select(), MemberRow::as_select()))
                .load::<(ConversationRow, MemberRow)>(c)
                .await
        })?;
        let mut summaries = Vec::with_capacity(rows.len());
        for (conversation, member) in rows {
            let (id, read) = (conversation.id, member.last_read_seq);
            let unread: i64 = with_conn!(conn, c => {
                messages::table
                    .filter(messages::conversation_id.eq(id))
                    .filter(messages::seq.gt(read))
                    .filter(messages::sender_id.ne(user.as_str()))
                    .filter(messages::deleted.eq(false))
                    .count()
                    .get_result(c)
                    .await
            })?;
            let peer = match conversation.kind()? {
                ConversationKind::Direct => with_conn!(conn, c => {
                    members::table
                        .filter(members::conversation_id.eq(id))
                        .filter(members::user_id.ne(user.as_str()))
                        .select(members::user_id)
                        .first::<String>(c)
                        .await
                        .optional()
                })?
                // Nobody else: the user's notes to self.
                .map_or_else(|| Some(user.clone()), |peer| Some(UserId::from(peer))),
                _ => None,
            };
            summaries.push(ConversationSummary {
                role: member.role()?,
                last_read_seq: read,
                unread,
                peer,
                conversation: conversation.into_conversation()?,
            });
        }
        summaries.sort_by(|a, b| {
            b.conversation
                .last_seq
                .cmp(&a.conversation.last_seq)
                .then(a.conversation.id.cmp(&b.conversation.id))
        });
        Ok(summaries)
    }

    /// The conversation `id` and `user`'s role in it, read from the database.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownConversation`] when it does not exist or `user` is not a member.
    pub(crate) async fn seat(&self, user: &UserId, id: ConversationId) -> Result<Seat> {
        let mut conn = self.conn().await?;
        let row = with_conn!(conn, c => {
            members::table
                .inner_join(conversations::table)
                .filter(members::conversation_id.eq(id))
                .filter(members::user_id.eq(user.as_str()))
                .select((ConversationRow::as_select(), members::role))
                .first::<(ConversationRow, String)>(c)
                .await
                .optional()
        })?;
        let (conversation, role) = row.ok_or(Error::UnknownConversation(id))?;
        let role = crate::schema::parse_role(&role)?;
        self.inner().roles.insert((id, user.clone()), (role, conversation.kind()?));
        Ok(Seat { kind: conversation.kind()?, conversation, role })
    }

    /// As [`seat`](Self::seat), for a group.
    async fn group_seat(&self, user: &UserId, id: ConversationId) -> Result<Seat> {
        let seat = self.seat(user, id).await?;
        if seat.kind != ConversationKind::Group {
            return Err(Error::Forbidden("only groups have members to manage"));
        }
        Ok(seat)
    }

    async fn member_role(&self, group: ConversationId, user: &UserId) -> Result<Role> {
        let mut conn = self.conn().await?;
        let role = with_conn!(conn, c => {
            members::table
                .find((group, user.as_str()))
                .select(members::role)
                .first::<String>(c)
                .await
                .optional()
        })?;
        crate::schema::parse_role(
            &role.ok_or_else(|| Error::NotMember { conversation: group, user: user.clone() })?,
        )
    }

    /// Removes `user` (`role: None`) or changes their role, keeping at least one owner.
    async fn change_member(
        &self,
        group: ConversationId,
        user: &UserId,
        current: Role,
        role: Option<Role>,
    ) -> Result<()> {
        let mut conn = self.conn().await?;
        let outcome = with_conn!(conn, c => {
            c.transaction::<_, DieselError, _>(async |c| {
                lock_conversation!(c, group)?;
                if current == Role::Owner && role != Some(Role::Owner) {
                    let owners: i64 = members::table
                        .filter(members::conversation_id.eq(group))
                        .filter(members::role.eq(Role::Owner.as_str()))
                        .count()
                        .get_result(c)
                        .await?;
                    if owners <= 1 {
                        return Ok(false);
                    }
                }
                let target = members::table.find((group, user.as_str()));
                match role {
                    Some(role) => diesel::update(target).set(members::role.eq(role.as_str())).execute(c).await?,
                    None => diesel::delete(target).execute(c).await?,
                };
                Ok(true)
            })
            .await
        })?;
        self.inner().roles.invalidate(&(group, user.clone()));
        if outcome { Ok(()) } else { Err(Error::Conflict("a group keeps at least one owner")) }
    }

    /// Checks every user exists: their usernames, in order.
    async fn require_users<'a>(
        &self,
        conn: &mut Conn,
        ids: impl IntoIterator<Item = &'a UserId>,
    ) -> Result<Vec<String>> {
        let ids: Vec<&UserId> = ids.into_iter().collect();
        let keys: Vec<&str> = ids.iter().map(|id| id.as_str()).collect();
        let found: Vec<(String, String)> = with_conn!(*conn, c => {
            users::table.filter(users::id.eq_any(&keys)).select((users::id, users::username)).load(c).await
        })?;
        ids.into_iter()
            .map(|id| {
                found
                    .iter()
                    .find(|(known, _)| known == id.as_str())
                    .map(|(_, username)| username.clone())
                    .ok_or_else(|| Error::UnknownUser(id.clone()))
            })
            .collect()
    }
}

pub(crate) fn direct_key(a: &UserId, b: &UserId) -> String {
    let (first, second) = if a < b { (a, b) } else { (b, a) };
    // Ids have no control characters (`check_name`), so the separator cannot be forged.
    format!("{first}\n{second}")
}

async fn find_direct(conn: &mut Conn, key: &str) -> Result<Option<ConversationRow>> {
    Ok(with_conn!(*conn, c => {
        conversations::table
            .filter(conversations::direct_key.eq(key))
            .select(ConversationRow::as_select())
            .first(c)
            .await
            .optional()
    })?)
}
