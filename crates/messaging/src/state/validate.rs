//! The checks a state file passes on its own, before the database is touched: every name
//! and id is valid, every user it mentions is one of its users, sequence numbers run
//! 1, 2, 3… in every conversation, read markers point at messages it holds.
//!
//! A group's messages may come from users who are no longer members (members leave,
//! their messages stay), so a group message's sender must be a user, not a member. A
//! direct conversation's members never change, so its senders must be one of the two.

use std::collections::HashSet;

use super::{
    DirectEntry, FORMAT_VERSION, GroupEntry, LobbyEntry, MessageEntry, Pairs, StateError,
    StateFile, UserEntry, escape,
};
use crate::engine::{MAX_GROUP_NAME, check_name, check_profile};
use crate::error::Error;
use crate::model::UserId;

type Result<T = ()> = std::result::Result<T, StateError>;

/// Checks `file` on its own.
///
/// # Errors
///
/// [`StateError::Inconsistent`] for the first problem found, in file order.
pub(super) fn check(file: &StateFile) -> Result {
    if let Some(version) = file.version.filter(|v| !(1..=FORMAT_VERSION).contains(v)) {
        return Err(StateError::inconsistent(
            "/version",
            format!("format version {version} is not one this xcore reads (1 to {FORMAT_VERSION})"),
        ));
    }
    let users = users(&file.users)?;
    groups(&file.groups, &users)?;
    direct(&file.direct, &users)?;
    lobby(&file.lobby, &users)
}

fn users(users: &[UserEntry]) -> Result<HashSet<&str>> {
    let mut ids = HashSet::with_capacity(users.len());
    let empty = serde_json::Value::Object(serde_json::Map::new());
    for (i, user) in users.iter().enumerate() {
        let at = format!("/users/{i}");
        match check_profile(&UserId::from(user.id.as_str()), &user.username, &empty) {
            Ok(()) => {}
            Err(Error::Invalid { field, reason }) => {
                return Err(StateError::inconsistent(
                    format!("{at}/{field}"),
                    format!("the {field} {reason}"),
                ));
            }
            Err(error) => return Err(error.into()),
        }
        if user.metadata.as_ref().is_some_and(|m| !m.is_object() && !m.is_null()) {
            return Err(StateError::inconsistent(
                format!("{at}/metadata"),
                "metadata must be an object (or null)",
            ));
        }
        if !ids.insert(user.id.as_str()) {
            return Err(StateError::inconsistent(
                format!("{at}/id"),
                format!("a second user has the id `{}`: ids are unique", user.id.as_str()),
            ));
        }
    }
    Ok(ids)
}

fn groups(groups: &[GroupEntry], users: &HashSet<&str>) -> Result {
    let mut names = HashSet::with_capacity(groups.len());
    for (i, group) in groups.iter().enumerate() {
        let at = format!("/groups/{i}");
        if let Err(error) = check_name("name", &group.name, MAX_GROUP_NAME) {
            return Err(StateError::inconsistent(
                format!("{at}/name"),
                format!("the group's {}", error_reason(error)),
            ));
        }
        if !names.insert(group.name.as_str()) {
            return Err(StateError::inconsistent(
                format!("{at}/name"),
                format!(
                    "a second group is named `{}`: groups are matched by name, so a file \
                     names each once",
                    group.name
                ),
            ));
        }
        if group.members.is_empty() {
            return Err(StateError::inconsistent(
                format!("{at}/members"),
                "a group needs at least one member, to own it",
            ));
        }
        let mut members = HashSet::with_capacity(group.members.len());
        for (j, member) in group.members.iter().enumerate() {
            let id = member.as_str();
            if !users.contains(id) {
                return Err(not_a_user(format!("{at}/members/{j}"), id));
            }
            if !members.insert(id) {
                return Err(StateError::inconsistent(
                    format!("{at}/members/{j}"),
                    format!("`{id}` is listed twice"),
                ));
            }
        }
        for (user, _) in &group.roles.0 {
            if !members.contains(user.as_str()) {
                return Err(StateError::inconsistent(
                    format!("{at}/roles/{}", escape(user)),
                    format!("`{user}` has a role but is not a member of the group"),
                ));
            }
        }
        let last = messages(&group.messages, &format!("{at}/messages"), |sender| {
            users.contains(sender).then_some(()).ok_or("is not one of the file's users")
        })?;
        read(&group.read, &format!("{at}/read"), last, |user| {
            members.contains(user).then_some(()).ok_or("is not a member of the group")
        })?;
    }
    Ok(())
}

fn direct(conversations: &[DirectEntry], users: &HashSet<&str>) -> Result {
    let mut pairs = HashSet::with_capacity(conversations.len());
    for (i, direct) in conversations.iter().enumerate() {
        let at = format!("/direct/{i}");
        let [a, b] = direct.members.as_slice() else {
            return Err(StateError::inconsistent(
                format!("{at}/members"),
                format!(
                    "a direct conversation has exactly two members, not {}",
                    direct.members.len()
                ),
            ));
        };
        for (j, member) in [a, b].into_iter().enumerate() {
            if !users.contains(member.as_str()) {
                return Err(not_a_user(format!("{at}/members/{j}"), member.as_str()));
            }
        }
        if a == b {
            return Err(StateError::inconsistent(
                format!("{at}/members/1"),
                "a direct conversation is between two different users",
            ));
        }
        let pair = if a.as_str() < b.as_str() { (a, b) } else { (b, a) };
        if !pairs.insert(pair) {
            return Err(StateError::inconsistent(
                format!("{at}/members"),
                format!(
                    "a second conversation between `{}` and `{}`: there is one per pair",
                    pair.0.as_str(),
                    pair.1.as_str()
                ),
            ));
        }
        let is_member = |user: &str| {
            (user == a.as_str() || user == b.as_str())
                .then_some(())
                .ok_or("is not one of the conversation's two members")
        };
        let last = messages(&direct.messages, &format!("{at}/messages"), is_member)?;
        read(&direct.read, &format!("{at}/read"), last, is_member)?;
    }
    Ok(())
}

fn lobby(lobby: &LobbyEntry, users: &HashSet<&str>) -> Result {
    let is_user =
        |user: &str| users.contains(user).then_some(()).ok_or("is not one of the file's users");
    let last = messages(&lobby.messages, "/lobby/messages", is_user)?;
    read(&lobby.read, "/lobby/read", last, is_user)
}

/// Checks a conversation's messages, at `at`: the last sequence number.
fn messages(
    messages: &[MessageEntry],
    at: &str,
    sender_ok: impl Fn(&str) -> std::result::Result<(), &'static str>,
) -> Result<i64> {
    let mut last = 0_i64;
    for (j, message) in messages.iter().enumerate() {
        let expected = last + 1;
        if message.seq != expected {
            let reason = if j == 0 {
                format!("the first message has seq {}: sequence numbers start at 1", message.seq)
            } else if message.seq > expected {
                format!("seq {} follows seq {last}: sequence numbers have no gap", message.seq)
            } else {
                format!(
                    "seq {} follows seq {last}: sequence numbers increase by one, each once",
                    message.seq
                )
            };
            return Err(StateError::inconsistent(format!("{at}/{j}/seq"), reason));
        }
        let sender = message.sender.as_str();
        if let Err(reason) = sender_ok(sender) {
            return Err(StateError::inconsistent(
                format!("{at}/{j}/sender"),
                format!("the sender `{sender}` {reason}"),
            ));
        }
        if message.deleted && (!message.body.is_empty() || message.attachment.is_some()) {
            return Err(StateError::inconsistent(
                format!("{at}/{j}/body"),
                "a deleted message keeps no body or attachment",
            ));
        }
        last = expected;
    }
    Ok(last)
}

/// Checks a conversation's read markers, at `at`, against its `last` sequence number.
fn read(
    read: &Pairs<i64>,
    at: &str,
    last: i64,
    reader_ok: impl Fn(&str) -> std::result::Result<(), &'static str>,
) -> Result {
    for (user, seq) in &read.0 {
        let here = || format!("{at}/{}", escape(user));
        if let Err(reason) = reader_ok(user) {
            return Err(StateError::inconsistent(here(), format!("`{user}` {reason}")));
        }
        if !(0..=last).contains(seq) {
            return Err(StateError::inconsistent(
                here(),
                format!("read marker {seq} is not 0 to {last}, the conversation's last message"),
            ));
        }
    }
    Ok(())
}

fn not_a_user(pointer: String, id: &str) -> StateError {
    StateError::inconsistent(pointer, format!("`{id}` is not one of the file's users"))
}

/// The reason of a name check's refusal, without the field's name.
fn error_reason(error: Error) -> String {
    match error {
        Error::Invalid { field, reason } => format!("{field} {reason}"),
        other => other.to_string(),
    }
}
