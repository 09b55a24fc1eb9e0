//! Engine.IO v4 and Socket.IO v5 packets, as text.
//!
//! An Engine.IO packet is a type digit and its data: `0` open, `1` close, `2` ping, `3`
//! pong, `4` message, `5` upgrade, `6` noop. A Socket.IO packet rides in a message:
//! `<type>[<namespace>,][<ack id>][<JSON>]`, with types `0` connect, `1` disconnect, `2`
//! event, `3` ack, `4` connect error, `5` and `6` binary event and ack.

use std::fmt::Write as _;

/// The separator of packets in one long-polling body.
pub(crate) const RECORD_SEPARATOR: char = '\u{1e}';

/// An Engine.IO packet a client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EnginePacket<'a> {
    Close,
    Ping(&'a str),
    Pong(&'a str),
    Message(&'a str),
    Upgrade,
    Noop,
}

impl<'a> EnginePacket<'a> {
    pub fn decode(text: &'a str) -> Option<Self> {
        let (kind, data) = (text.as_bytes().first()?, text.get(1..)?);
        Some(match kind {
            b'1' => Self::Close,
            b'2' => Self::Ping(data),
            b'3' => Self::Pong(data),
            b'4' => Self::Message(data),
            b'5' => Self::Upgrade,
            b'6' => Self::Noop,
            _ => return None,
        })
    }
}

/// A Socket.IO packet's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Connect,
    Disconnect,
    Event,
    Ack,
    ConnectError,
    BinaryEvent,
    BinaryAck,
}

/// A Socket.IO packet a client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Packet<'a> {
    pub kind: Kind,
    /// `/` unless the packet names another.
    pub namespace: &'a str,
    pub ack: Option<u64>,
    /// The JSON payload, if any (not parsed).
    pub data: Option<&'a str>,
}

impl<'a> Packet<'a> {
    /// Parses a Socket.IO packet; `Err` says what is wrong.
    pub fn decode(text: &'a str) -> Result<Self, &'static str> {
        let kind = match text.as_bytes().first() {
            Some(b'0') => Kind::Connect,
            Some(b'1') => Kind::Disconnect,
            Some(b'2') => Kind::Event,
            Some(b'3') => Kind::Ack,
            Some(b'4') => Kind::ConnectError,
            Some(b'5') => Kind::BinaryEvent,
            Some(b'6') => Kind::BinaryAck,
            _ => return Err("unknown Socket.IO packet type"),
        };
        let mut rest = &text[1..];
        if matches!(kind, Kind::BinaryEvent | Kind::BinaryAck) {
            // `<attachments>-`: parsed only to be refused by the caller.
            let dash = rest.find('-').ok_or("a binary packet without its attachment count")?;
            rest = &rest[dash + 1..];
        }
        let mut namespace = "/";
        if rest.starts_with('/') {
            match rest.find(',') {
                Some(comma) => {
                    namespace = &rest[..comma];
                    rest = &rest[comma + 1..];
                }
                None => {
                    namespace = rest;
                    rest = "";
                }
            }
        }
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let ack = match digits {
            0 => None,
            // Anything longer than a u64 is not an id a client could mean.
            _ => Some(rest[..digits].parse().map_err(|_| "an acknowledgement id too large")?),
        };
        rest = &rest[digits..];
        let data = (!rest.is_empty()).then_some(rest);
        Ok(Self { kind, namespace, ack, data })
    }
}

/// `namespace,` as packets write it: nothing for `/`.
fn namespace_prefix(out: &mut String, namespace: &str) {
    if namespace != "/" {
        out.push_str(namespace);
        out.push(',');
    }
}

/// The Engine.IO open packet.
pub(crate) fn open(
    sid: &str,
    upgrades: bool,
    ping_ms: u64,
    timeout_ms: u64,
    max_payload: usize,
) -> String {
    let upgrades = if upgrades { r#"["websocket"]"# } else { "[]" };
    format!(
        r#"0{{"sid":"{sid}","upgrades":{upgrades},"pingInterval":{ping_ms},"pingTimeout":{timeout_ms},"maxPayload":{max_payload}}}"#
    )
}

/// A namespace's connection is accepted: `40<namespace>,{"sid","pid"}`.
pub(crate) fn connected(namespace: &str, sid: &str, pid: Option<&str>) -> String {
    let mut out = String::from("40");
    namespace_prefix(&mut out, namespace);
    let _ = match pid {
        Some(pid) => write!(out, r#"{{"sid":"{sid}","pid":"{pid}"}}"#),
        None => write!(out, r#"{{"sid":"{sid}"}}"#),
    };
    out
}

/// A namespace's connection is refused: `44<namespace>,{"message","data"}`, `data` being
/// the error as the REST API gives it.
pub(crate) fn connect_error(namespace: &str, code: &str, message: &str) -> String {
    let mut out = String::from("44");
    namespace_prefix(&mut out, namespace);
    let body =
        serde_json::json!({ "message": message, "data": { "code": code, "message": message } });
    out.push_str(&body.to_string());
    out
}

/// The server ends a namespace's connection: `41<namespace>,`.
pub(crate) fn disconnect(namespace: &str) -> String {
    let mut out = String::from("41");
    namespace_prefix(&mut out, namespace);
    out
}

/// An event: `42<namespace>,["name",<payload>(,"offset")]`. `payload` is JSON.
pub(crate) fn event(namespace: &str, name: &str, payload: &str, offset: Option<&str>) -> String {
    let mut out = String::with_capacity(payload.len() + name.len() + 32);
    out.push_str("42");
    namespace_prefix(&mut out, namespace);
    out.push_str("[\"");
    out.push_str(name);
    out.push_str("\",");
    out.push_str(payload);
    if let Some(offset) = offset {
        out.push_str(",\"");
        out.push_str(offset);
        out.push('"');
    }
    out.push(']');
    out
}

/// The answer to the client's event `id`: `43<namespace>,<id>[<payload>]`.
pub(crate) fn ack(namespace: &str, id: u64, payload: &str) -> String {
    let mut out = String::with_capacity(payload.len() + 32);
    out.push_str("43");
    namespace_prefix(&mut out, namespace);
    let _ = write!(out, "{id}[");
    out.push_str(payload);
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_decode_with_and_without_namespace_and_ack() {
        let packet = Packet::decode(r#"2/chat,12["send",{"body":"hi"}]"#).unwrap();
        assert_eq!(packet.kind, Kind::Event);
        assert_eq!(packet.namespace, "/chat");
        assert_eq!(packet.ack, Some(12));
        assert_eq!(packet.data, Some(r#"["send",{"body":"hi"}]"#));

        let packet = Packet::decode(r#"0{"token":"t"}"#).unwrap();
        assert_eq!((packet.kind, packet.namespace, packet.ack), (Kind::Connect, "/", None));
        assert_eq!(packet.data, Some(r#"{"token":"t"}"#));

        let packet = Packet::decode("1/chat,").unwrap();
        assert_eq!((packet.kind, packet.namespace, packet.data), (Kind::Disconnect, "/chat", None));
        assert_eq!(Packet::decode("0/chat").unwrap().namespace, "/chat");

        let packet =
            Packet::decode(r#"51-/chat,["upload",{"_placeholder":true,"num":0}]"#).unwrap();
        assert_eq!((packet.kind, packet.namespace), (Kind::BinaryEvent, "/chat"));

        assert!(Packet::decode("").is_err());
        assert!(Packet::decode("9").is_err());
        assert!(Packet::decode("2123456789012345678901234567890[]").is_err());
        assert!(Packet::decode("5[]").is_err());
    }

    #[test]
    fn engine_packets_decode() {
        assert_eq!(EnginePacket::decode("2probe"), Some(EnginePacket::Ping("probe")));
        assert_eq!(EnginePacket::decode("3"), Some(EnginePacket::Pong("")));
        assert_eq!(EnginePacket::decode("40"), Some(EnginePacket::Message("0")));
        assert_eq!(EnginePacket::decode("5"), Some(EnginePacket::Upgrade));
        assert_eq!(EnginePacket::decode("0"), None, "open is the server's");
        assert_eq!(EnginePacket::decode(""), None);
    }

    #[test]
    fn packets_encode_as_socket_io_clients_read_them() {
        assert_eq!(connected("/", "s1", None), r#"40{"sid":"s1"}"#);
        assert_eq!(connected("/chat", "s1", Some("p")), r#"40/chat,{"sid":"s1","pid":"p"}"#);
        assert_eq!(event("/", "new_message", "{}", None), r#"42["new_message",{}]"#);
        assert_eq!(event("/chat", "message", "{}", Some("7:3")), r#"42/chat,["message",{},"7:3"]"#);
        assert_eq!(ack("/chat", 5, r#"{"a":1}"#), r#"43/chat,5[{"a":1}]"#);
        assert_eq!(ack("/", 0, "{}"), "430[{}]");
        assert_eq!(disconnect("/chat"), "41/chat,");
        let refused: serde_json::Value =
            serde_json::from_str(&connect_error("/", "invalid_token", "bad")[2..]).unwrap();
        assert_eq!(refused["data"]["code"], "invalid_token");
        assert_eq!(
            open("x", true, 25_000, 20_000, 100),
            r#"0{"sid":"x","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":100}"#
        );
    }
}
