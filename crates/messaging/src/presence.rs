//! Who is connected, on this node.
//!
//! A user is online while they have devices connected (`connect_user` counts one up,
//! `disconnect_user` one down) or a presence lease that has not expired (what
//! `POST /messaging/presence` renews, so a client that vanishes goes offline by itself).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::model::{Presence, UserId};

#[derive(Debug, Default)]
pub(crate) struct PresenceMap {
    users: Mutex<HashMap<UserId, Entry>>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    devices: u32,
    lease_until: Option<Instant>,
    last_seen: DateTime<Utc>,
}

impl Entry {
    fn online(&self, now: Instant) -> bool {
        self.devices > 0 || self.lease_until.is_some_and(|until| until > now)
    }
}

/// How a change moved a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Change {
    pub devices: u32,
    pub was_online: bool,
    pub online: bool,
}

impl PresenceMap {
    fn change(&self, user: &UserId, update: impl FnOnce(&mut Entry, Instant)) -> Change {
        let now = Instant::now();
        let Ok(mut users) = self.users.lock() else {
            return Change { devices: 0, was_online: false, online: false };
        };
        let entry = users.entry(user.clone()).or_insert(Entry {
            devices: 0,
            lease_until: None,
            last_seen: Utc::now(),
        });
        let was_online = entry.online(now);
        update(entry, now);
        let online = entry.online(now);
        if was_online || online {
            entry.last_seen = Utc::now();
        }
        Change { devices: entry.devices, was_online, online }
    }

    /// One more device for `user`.
    pub fn connect(&self, user: &UserId) -> Change {
        self.change(user, |entry, _| entry.devices = entry.devices.saturating_add(1))
    }

    /// One device fewer for `user`; `None` when they had none.
    pub fn disconnect(&self, user: &UserId) -> Option<Change> {
        let had = self.get(user).devices > 0;
        had.then(|| self.change(user, |entry, _| entry.devices = entry.devices.saturating_sub(1)))
    }

    /// Keeps `user` online for `ttl` more.
    pub fn renew(&self, user: &UserId, ttl: Duration) -> Change {
        self.change(user, |entry, now| entry.lease_until = Some(now + ttl))
    }

    /// Ends `user`'s lease (their devices stay).
    pub fn end_lease(&self, user: &UserId) -> Change {
        self.change(user, |entry, _| entry.lease_until = None)
    }

    /// Ends every expired lease: the users who went offline.
    pub fn expire(&self) -> Vec<UserId> {
        let now = Instant::now();
        let Ok(mut users) = self.users.lock() else { return Vec::new() };
        let mut offline = Vec::new();
        for (user, entry) in users.iter_mut() {
            if entry.lease_until.is_some_and(|until| until <= now) {
                entry.lease_until = None;
                if entry.devices == 0 {
                    entry.last_seen = Utc::now();
                    offline.push(user.clone());
                }
            }
        }
        offline
    }

    pub fn get(&self, user: &UserId) -> Presence {
        let now = Instant::now();
        let entry = self.users.lock().ok().and_then(|users| users.get(user).copied());
        match entry {
            Some(entry) => Presence {
                online: entry.online(now),
                devices: entry.devices,
                last_seen: Some(if entry.online(now) { Utc::now() } else { entry.last_seen }),
            },
            None => Presence { online: false, devices: 0, last_seen: None },
        }
    }

    /// Every user online now with their devices (0 for one kept online by a lease).
    pub fn snapshot(&self) -> Vec<(UserId, u32)> {
        let now = Instant::now();
        self.users
            .lock()
            .map(|users| {
                users
                    .iter()
                    .filter(|(_, entry)| entry.online(now))
                    .map(|(user, entry)| (user.clone(), entry.devices))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every user online now, sorted.
    pub fn online(&self) -> Vec<UserId> {
        let now = Instant::now();
        let mut online: Vec<UserId> = self
            .users
            .lock()
            .map(|users| {
                users
                    .iter()
                    .filter(|(_, entry)| entry.online(now))
                    .map(|(user, _)| user.clone())
                    .collect()
            })
            .unwrap_or_default();
        online.sort();
        online
    }
}

/// Who is online on the other nodes: what [`Engine::presence`](crate::Engine::presence)
/// adds to this node's count when set with
/// [`Engine::set_remote_presence`](crate::Engine::set_remote_presence).
pub trait RemotePresence: Send + Sync + 'static {
    /// The devices `user` has on other nodes (0 for one kept online by a lease), or `None`
    /// when they are online on none.
    fn devices(&self, user: &UserId) -> Option<u32>;

    /// The users online on other nodes.
    fn online(&self) -> Vec<UserId>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_leases_keep_a_user_online() {
        let map = PresenceMap::default();
        let ada = UserId::from("ada");
        assert!(!map.get(&ada).online);
        assert_eq!(map.disconnect(&ada), None, "nothing to disconnect");
        let first = map.connect(&ada);
        assert_eq!(first, Change { devices: 1, was_online: false, online: true });
        assert_eq!(map.connect(&ada).devices, 2);
        assert_eq!(
            map.disconnect(&ada),
            Some(Change { devices: 1, was_online: true, online: true })
        );
        map.renew(&ada, Duration::from_secs(60));
        assert_eq!(
            map.disconnect(&ada),
            Some(Change { devices: 0, was_online: true, online: true })
        );
        assert_eq!(map.online(), std::slice::from_ref(&ada));
        assert_eq!(map.end_lease(&ada), Change { devices: 0, was_online: true, online: false });
        assert!(map.online().is_empty());
        assert!(map.get(&ada).last_seen.is_some());
    }

    #[test]
    fn expired_leases_take_users_offline() {
        let map = PresenceMap::default();
        let (ada, bob) = (UserId::from("ada"), UserId::from("bob"));
        map.renew(&ada, Duration::ZERO);
        map.renew(&bob, Duration::ZERO);
        map.connect(&bob);
        assert_eq!(map.expire(), std::slice::from_ref(&ada), "bob still has a device");
        assert!(!map.get(&ada).online);
        assert!(map.get(&bob).online);
        assert!(map.expire().is_empty());
    }
}
