//! Users: profiles and presence.

use std::time::Duration;

use chrono::Utc;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::{ExpressionMethods, OptionalExtension, QueryDsl, SelectableHelper};
use diesel_async::{AsyncConnection, RunQueryDsl};
use xcore_db::with_conn;

use super::{Engine, check_name};
use crate::error::{Error, Result};
use crate::hooks::Event;
use crate::model::{Presence, Role, User, UserId};
use crate::schema::{UserRow, conversations, members, users};

/// The longest username, in characters.
pub const MAX_USERNAME: usize = 64;

impl Engine {
    /// Registers a user: the original engine's `register_user(id, username, metadata)`.
    /// Every user belongs to the lobby.
    ///
    /// # Errors
    ///
    /// [`Error::UserExists`] when the id is taken; [`Error::Invalid`] for a blank or long
    /// username or metadata that is not a JSON object.
    pub async fn register_user(
        &self,
        id: impl Into<UserId>,
        username: &str,
        metadata: serde_json::Value,
    ) -> Result<User> {
        let id = id.into();
        check_profile(&id, username, &metadata)?;
        let lobby = self.lobby().await?;
        let now = Utc::now().naive_utc();
        let metadata_text = metadata.to_string();
        let mut conn = self.conn().await?;
        let inserted = with_conn!(conn, c => {
            c.transaction::<_, DieselError, _>(async |c| {
                diesel::insert_into(users::table)
                    .values((
                        users::id.eq(id.as_str()),
                        users::username.eq(username),
                        users::metadata.eq(&metadata_text),
                        users::created_at.eq(now),
                    ))
                    .execute(c)
                    .await?;
                diesel::insert_into(members::table)
                    .values((
                        members::conversation_id.eq(lobby),
                        members::user_id.eq(id.as_str()),
                        members::role.eq(Role::Member.as_str()),
                        members::joined_at.eq(now),
                    ))
                    .execute(c)
                    .await
            })
            .await
        });
        match inserted {
            Ok(_) => Ok(User {
                id,
                username: username.to_owned(),
                metadata,
                created_at: now.and_utc(),
                last_seen: None,
            }),
            Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
                Err(Error::UserExists(id))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// A user's profile.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownUser`].
    pub async fn user(&self, id: &UserId) -> Result<User> {
        let mut conn = self.conn().await?;
        let row = with_conn!(conn, c => {
            users::table.find(id.as_str()).select(UserRow::as_select()).first(c).await.optional()
        })?;
        row.map(User::from).ok_or_else(|| Error::UnknownUser(id.clone()))
    }

    /// Changes a user's username, metadata or both.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownUser`], or [`Error::Invalid`] as for
    /// [`register_user`](Self::register_user).
    pub async fn update_user(
        &self,
        id: &UserId,
        username: Option<&str>,
        metadata: Option<serde_json::Value>,
    ) -> Result<User> {
        let mut user = self.user(id).await?;
        if let Some(username) = username {
            user.username = username.to_owned();
        }
        if let Some(metadata) = metadata {
            user.metadata = metadata;
        }
        check_profile(id, &user.username, &user.metadata)?;
        let metadata_text = user.metadata.to_string();
        let mut conn = self.conn().await?;
        let updated = with_conn!(conn, c => {
            diesel::update(users::table.find(id.as_str()))
                .set((users::username.eq(&user.username), users::metadata.eq(&metadata_text)))
                .execute(c)
                .await
        })?;
        if updated == 0 {
            return Err(Error::UnknownUser(id.clone()));
        }
        Ok(user)
    }

    /// Connects a device of `id`, registering the user if unknown (with `username` and
    /// `metadata`; a known user's profile is left as it is): the original engine's
    /// `connect_user`. Fires `on_connect`.
    ///
    /// # Errors
    ///
    /// As [`register_user`](Self::register_user) for an unknown user.
    pub async fn connect_user(
        &self,
        id: impl Into<UserId>,
        username: &str,
        metadata: serde_json::Value,
    ) -> Result<User> {
        let id = id.into();
        let user = match self.user(&id).await {
            Ok(user) => user,
            Err(Error::UnknownUser(_)) => {
                match self.register_user(id.clone(), username, metadata).await {
                    // Registered concurrently by another call: use theirs.
                    Err(Error::UserExists(_)) => self.user(&id).await?,
                    registered => registered?,
                }
            }
            Err(error) => return Err(error),
        };
        let change = self.inner().presence.connect(&id);
        self.touch(&id).await;
        self.notify(Event::Connect {
            user: id,
            username: user.username.clone(),
            devices: change.devices,
            came_online: !change.was_online,
        });
        Ok(user)
    }

    /// Disconnects one device of `id`: the original engine's `disconnect_user`. Fires
    /// `on_disconnect`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownUser`] when the user has no connected device.
    pub async fn disconnect_user(&self, id: impl Into<UserId>) -> Result<Presence> {
        let id = id.into();
        let change =
            self.inner().presence.disconnect(&id).ok_or_else(|| Error::UnknownUser(id.clone()))?;
        if !change.online {
            self.touch(&id).await;
        }
        self.notify(Event::Disconnect {
            user: id.clone(),
            devices: change.devices,
            went_offline: !change.online,
        });
        Ok(self.presence(&id))
    }

    /// Keeps `id` online for `messaging.presence_ttl_secs` more, as a device would: what a
    /// client without a socket calls now and then. Fires `on_connect` when the user comes
    /// online, and `on_disconnect` when the lease runs out.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownUser`].
    pub async fn renew_presence(&self, id: &UserId) -> Result<Presence> {
        let user = self.user(id).await?;
        let ttl = Duration::from_secs(self.config().presence_ttl_secs);
        let change = self.inner().presence.renew(id, ttl);
        self.start_sweeper();
        if !change.was_online {
            self.touch(id).await;
            self.notify(Event::Connect {
                user: id.clone(),
                username: user.username,
                devices: change.devices,
                came_online: true,
            });
        }
        Ok(self.presence(id))
    }

    /// Ends the lease [`renew_presence`](Self::renew_presence) took.
    pub async fn end_presence(&self, id: &UserId) -> Presence {
        let change = self.inner().presence.end_lease(id);
        if change.was_online && !change.online {
            self.touch(id).await;
            self.notify(Event::Disconnect { user: id.clone(), devices: 0, went_offline: true });
        }
        self.presence(id)
    }

    /// Whether `id` is online, on how many devices, and when last seen: on this node, and
    /// on the others when a [`RemotePresence`](crate::RemotePresence) is set (the gateway
    /// sets one when nodes share a broker).
    pub fn presence(&self, id: &UserId) -> Presence {
        let local = self.inner().presence.get(id);
        match self.inner().remote.get().and_then(|remote| remote.devices(id)) {
            Some(devices) => Presence {
                online: true,
                devices: local.devices.saturating_add(devices),
                last_seen: Some(chrono::Utc::now()),
            },
            None => local,
        }
    }

    /// The users online, here and on the other nodes known, sorted by id.
    pub fn online_users(&self) -> Vec<UserId> {
        let mut online = self.inner().presence.online();
        if let Some(remote) = self.inner().remote.get() {
            online.extend(remote.online());
            online.sort();
            online.dedup();
        }
        online
    }

    /// The users online on this node, with their devices (0 for one kept online by a
    /// lease): what this node tells the others.
    pub fn local_presence(&self) -> Vec<(UserId, u32)> {
        self.inner().presence.snapshot()
    }

    /// Makes [`presence`](Self::presence) and [`online_users`](Self::online_users) count
    /// the users online on other nodes, as `remote` knows them. Set once; later calls
    /// change nothing.
    pub fn set_remote_presence(&self, remote: std::sync::Arc<dyn crate::RemotePresence>) {
        let _ = self.inner().remote.set(remote);
    }

    /// Records that `id` was seen now. A failure is logged: presence does not depend on it.
    async fn touch(&self, id: &UserId) {
        let now = Utc::now().naive_utc();
        let stored = async {
            let mut conn = self.conn().await?;
            with_conn!(conn, c => {
                diesel::update(users::table.find(id.as_str())).set(users::last_seen.eq(now)).execute(c).await
            })?;
            Ok::<_, Error>(())
        };
        if let Err(error) = stored.await {
            tracing::warn!(plugin = "messaging", %error, user = %id, "last seen time not stored");
        }
    }

    /// Starts the task that ends expired presence leases (once).
    fn start_sweeper(&self) {
        self.inner().sweeper.get_or_init(|| {
            let engine = std::sync::Arc::downgrade(self.inner());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    let Some(inner) = engine.upgrade() else { return };
                    let engine = Engine::from_inner(inner);
                    for user in engine.inner().presence.expire() {
                        engine.touch(&user).await;
                        engine.notify(Event::Disconnect { user, devices: 0, went_offline: true });
                    }
                }
            });
        });
    }

    /// The lobby's id.
    pub(crate) async fn lobby(&self) -> Result<i64> {
        let id = self
            .inner()
            .lobby
            .get_or_try_init(|| async {
                let mut conn = self.conn().await?;
                let id = with_conn!(conn, c => {
                    conversations::table
                        .filter(conversations::kind.eq("lobby"))
                        .select(conversations::id)
                        .order(conversations::id)
                        .first::<i64>(c)
                        .await
                })?;
                Ok::<_, Error>(id)
            })
            .await?;
        Ok(*id)
    }
}

pub(crate) fn check_profile(
    id: &UserId,
    username: &str,
    metadata: &serde_json::Value,
) -> Result<()> {
    check_name("id", id.as_str(), 128)?;
    check_name("username", username, MAX_USERNAME)?;
    if !metadata.is_object() {
        return Err(Error::invalid("metadata", "must be a JSON object"));
    }
    Ok(())
}
