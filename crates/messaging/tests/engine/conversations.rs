//! Users, groups and their roles, direct conversations.

use super::*;

on_both!(the_original_calls_keep_their_meaning, original_calls);

async fn original_calls(engine: Engine) {
    let seen = record(&engine, &[EventKind::Connect, EventKind::Message, EventKind::Disconnect]);
    let ada = engine.register_user("ada", "Ada", json!({"theme": "dark"})).await.unwrap();
    assert_eq!((ada.id.as_str(), ada.username.as_str()), ("ada", "Ada"));
    assert!(matches!(
        engine.register_user("ada", "Other", json!({})).await,
        Err(Error::UserExists(user)) if user == id("ada")
    ));
    assert!(matches!(
        engine.register_user("eve", "Eve", json!([1])).await,
        Err(Error::Invalid { field: "metadata", .. })
    ));

    // Not connected: nothing is sent.
    assert!(matches!(engine.send_message("ada", "hello").await, Err(Error::Offline(_))));
    assert!(matches!(engine.send_message("nobody", "hello").await, Err(Error::UnknownUser(_))));

    // `connect_user` creates an unknown user and keeps a known one's profile.
    let bob = engine.connect_user("bob", "Bob", json!({})).await.unwrap();
    assert_eq!(bob.username, "Bob");
    let ada_again = engine.connect_user("ada", "Renamed", json!({})).await.unwrap();
    assert_eq!(ada_again.username, "Ada");
    assert!(engine.presence(&id("ada")).online);
    assert_eq!(engine.online_users(), [id("ada"), id("bob")]);

    let first = engine.send_message("ada", "hello").await.unwrap();
    let second = engine.send_message("bob", "hi ada").await.unwrap();
    assert_eq!((first.seq, second.seq), (1, 2));
    assert_eq!(first.conversation_id, second.conversation_id);
    assert!(second.id > first.id);

    let presence = engine.disconnect_user("ada").await.unwrap();
    assert!(!presence.online && presence.last_seen.is_some());
    assert!(matches!(engine.disconnect_user("ada").await, Err(Error::UnknownUser(_))));

    let events = wait_for(&seen, 5).await;
    let kinds: Vec<_> = events.iter().map(Event::kind).collect();
    assert_eq!(kinds.iter().filter(|kind| **kind == EventKind::Connect).count(), 2, "{events:?}");
    assert!(events.iter().any(|event| matches!(
        event,
        Event::Message { message, kind: ConversationKind::Lobby } if message.body == "hi ada"
    )));
    assert!(events.iter().any(|event| matches!(
        event,
        Event::Disconnect { user, went_offline: true, .. } if *user == id("ada")
    )));
    // The stored profile remembers when the user was last seen.
    assert!(engine.user(&id("ada")).await.unwrap().last_seen.is_some());
}

on_both!(groups_are_managed_by_their_owners_and_admins, group_roles);

async fn group_roles(engine: Engine) {
    users(&engine, &["owner", "admin", "member", "outsider", "late"]).await;
    let (owner, admin, member, outsider, late) =
        (id("owner"), id("admin"), id("member"), id("outsider"), id("late"));
    let group =
        engine.create_group("owner", "tea", &[admin.clone(), member.clone()]).await.unwrap();
    assert_eq!((group.kind, group.name.as_deref()), (ConversationKind::Group, Some("tea")));
    engine.set_role(&owner, group.id, &admin, Role::Admin).await.unwrap();

    // A non-member cannot tell the group exists.
    assert!(matches!(
        engine.send(&outsider, group.id, "hi").await,
        Err(Error::UnknownConversation(_))
    ));
    assert!(matches!(
        engine.members(&outsider, group.id).await,
        Err(Error::UnknownConversation(_))
    ));
    assert!(matches!(
        engine.rename_group(&outsider, group.id, "x").await,
        Err(Error::UnknownConversation(_))
    ));
    // A member without the role is told so.
    assert!(matches!(engine.rename_group(&member, group.id, "x").await, Err(Error::Forbidden(_))));
    assert!(matches!(
        engine.add_member(&member, group.id, &late, Role::Member).await,
        Err(Error::Forbidden(_))
    ));
    // Admins manage members, not admins or owners.
    assert!(matches!(
        engine.add_member(&admin, group.id, &late, Role::Admin).await,
        Err(Error::Forbidden(_))
    ));
    engine.add_member(&admin, group.id, &late, Role::Member).await.unwrap();
    assert!(matches!(
        engine.add_member(&admin, group.id, &late, Role::Member).await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        engine.remove_member(&admin, group.id, &owner).await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        engine.set_role(&admin, group.id, &member, Role::Admin).await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        engine.add_member(&owner, group.id, &id("ghost"), Role::Member).await,
        Err(Error::UnknownUser(_))
    ));
    let renamed = engine.rename_group(&admin, group.id, "coffee").await.unwrap();
    assert_eq!(renamed.name.as_deref(), Some("coffee"));

    let members = engine.members(&member, group.id).await.unwrap();
    let roles: Vec<_> = members.iter().map(|m| (m.user_id.as_str(), m.role)).collect();
    assert_eq!(
        roles,
        [
            ("owner", Role::Owner),
            ("admin", Role::Admin),
            ("late", Role::Member),
            ("member", Role::Member)
        ]
    );

    // The last owner stays.
    assert!(matches!(engine.leave_group(&owner, group.id).await, Err(Error::Conflict(_))));
    assert!(matches!(
        engine.set_role(&owner, group.id, &owner, Role::Member).await,
        Err(Error::Conflict(_))
    ));
    engine.set_role(&owner, group.id, &admin, Role::Owner).await.unwrap();
    engine.leave_group(&owner, group.id).await.unwrap();
    assert!(matches!(engine.members(&owner, group.id).await, Err(Error::UnknownConversation(_))));

    // A removed member can no longer write, even just after a successful send.
    engine.send(&late, group.id, "before").await.unwrap();
    engine.remove_member(&admin, group.id, &late).await.unwrap();
    assert!(matches!(
        engine.send(&late, group.id, "after").await,
        Err(Error::UnknownConversation(_))
    ));
    assert!(matches!(
        engine.history(&Actor::user(&late), group.id, Page::Latest { limit: 10 }).await,
        Err(Error::UnknownConversation(_))
    ));

    assert!(matches!(engine.delete_group(&member, group.id).await, Err(Error::Forbidden(_))));
    engine.delete_group(&admin, group.id).await.unwrap();
    assert!(matches!(
        engine.conversation(&admin, group.id).await,
        Err(Error::UnknownConversation(_))
    ));
    assert!(matches!(
        engine.send(&member, group.id, "gone").await,
        Err(Error::UnknownConversation(_))
    ));
}

on_both!(direct_conversations_are_one_per_pair, direct);

async fn direct(engine: Engine) {
    users(&engine, &["ada", "bob", "eve"]).await;
    let (ada, bob, eve) = (id("ada"), id("bob"), id("eve"));
    let one = engine.direct(&ada, &bob).await.unwrap();
    let same = engine.direct(&bob, &ada).await.unwrap();
    assert_eq!((one.id, one.kind), (same.id, ConversationKind::Direct));
    // With oneself: notes to self, one member.
    let notes = engine.direct(&ada, &ada).await.unwrap();
    assert_ne!(notes.id, one.id);
    assert_eq!(engine.members(&ada, notes.id).await.unwrap().len(), 1);
    assert!(matches!(engine.direct(&ada, &id("ghost")).await, Err(Error::UnknownUser(_))));
    engine.send(&bob, one.id, "psst").await.unwrap();
    assert!(matches!(
        engine.send(&eve, one.id, "me too").await,
        Err(Error::UnknownConversation(_))
    ));
    assert!(matches!(
        engine.add_member(&ada, one.id, &eve, Role::Member).await,
        Err(Error::Forbidden(_))
    ));

    let summaries = engine.conversations(&ada).await.unwrap();
    let direct = summaries.iter().find(|s| s.conversation.id == one.id).unwrap();
    assert_eq!((direct.unread, direct.peer.as_ref()), (1, Some(&bob)));
    assert!(summaries.iter().any(|s| s.conversation.kind == ConversationKind::Lobby));
}
