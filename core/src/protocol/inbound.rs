//! Parsing client frames into borrowed views: the top-level fields are kept as raw
//! JSON slices, only the fields the server routes on are decoded.

use std::borrow::Cow;

pub use super::json::Key;
use super::json::{self, JsonError, Raw};
use crate::error::ErrorCode;
use crate::event::EVENT_NAMES;

/// Longest accepted room id, user id, session id or token field, in bytes.
pub(crate) const MAX_ID_LEN: usize = 256;

/// The top-level fields of a JSON object, in frame order, values as raw JSON.
#[derive(Debug, Default)]
pub struct Entries<'a>(pub Vec<(Key<'a>, Raw<'a>)>);

impl<'a> Entries<'a> {
    /// The raw value of `name`; an error when the key appears more than once,
    /// because the server must not guess which one a client meant.
    pub fn unique(&self, name: &str) -> Result<Option<Raw<'a>>, String> {
        let mut found = None;
        for (k, v) in &self.0 {
            if k.0 == name {
                if found.is_some() {
                    return Err(format!("field `{name}` appears more than once"));
                }
                found = Some(*v);
            }
        }
        Ok(found)
    }

    /// Parses the object text of a whole frame (one pass: the whole frame is
    /// checked, see [`json`]).
    pub fn parse(text: &'a str) -> Result<Entries<'a>, JsonError> {
        json::object(text).map(Entries)
    }
}

/// The client message types of PROTOCOL.md §3.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgType {
    /// `auth`: carries a `token`; authenticates the connection (a no-op while auth is off).
    Auth,
    /// `join`: enter the room `roomId`, optionally as `userId` with `displayName`, `metadata`.
    Join,
    /// `offer`: an SDP offer (`sdp`) relayed to peer `to`.
    Offer,
    /// `answer`: an SDP answer (`sdp`) relayed to peer `to`.
    Answer,
    /// `candidate`: an ICE `candidate` (may be `null`) relayed to peer `to`.
    Candidate,
    /// `message`: application `data` to peer `to`, or without `to` to the rest of the room.
    Message,
    /// `chat`: `content` sent to the whole room, sender included, with a server `timestamp`.
    Chat,
    /// `leave`: leave the room `roomId`, or without it every room.
    Leave,
    /// `ping`: answered by `pong` with the same `timestamp`.
    Ping,
    /// `ack`: the client has every server message up to `seq` (cumulative).
    Ack,
    /// `resume`: take back session `sessionId` with `resumeToken`, replaying after `lastSeq`.
    Resume,
    /// A type the application listed (`app_types`): relayed like `message`,
    /// under its own name.
    App,
}

/// The application's own message types (`--app-types`), relayed like `message`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppTypes(Vec<Box<str>>);

impl AppTypes {
    /// Checks the names: 1 to 64 characters of `A-Z a-z 0-9 - _ . :`, none of
    /// the protocol's own types, no repeats.
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(names: I) -> Result<AppTypes, String> {
        let mut out: Vec<Box<str>> = Vec::new();
        for name in names {
            let name = name.as_ref().trim();
            let ok_char = |c: char| c.is_ascii_alphanumeric() || "-_.:".contains(c);
            if name.is_empty() || name.len() > 64 || !name.chars().all(ok_char) {
                return Err(format!(
                    "app type `{name}`: use 1 to 64 characters of A-Z a-z 0-9 - _ . :"
                ));
            }
            // An event name (a server message, a client's connection state) would let
            // a client fake that event.
            if MsgType::parse(name).is_some() || EVENT_NAMES.contains(&name) {
                return Err(format!("app type `{name}` is a protocol message type"));
            }
            if out.iter().any(|n| &**n == name) {
                return Err(format!("app type `{name}` is listed twice"));
            }
            out.push(name.into());
        }
        Ok(AppTypes(out))
    }

    /// Whether `name` is one of them.
    pub fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|n| &**n == name)
    }

    /// The names, in the configured order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|n| &**n)
    }
}

impl MsgType {
    fn parse(s: &str) -> Option<MsgType> {
        Some(match s {
            "auth" => MsgType::Auth,
            "join" => MsgType::Join,
            "offer" => MsgType::Offer,
            "answer" => MsgType::Answer,
            "candidate" => MsgType::Candidate,
            "message" => MsgType::Message,
            "chat" => MsgType::Chat,
            "leave" => MsgType::Leave,
            "ping" => MsgType::Ping,
            "ack" | "ACK" => MsgType::Ack,
            "resume" | "RESUME" => MsgType::Resume,
            _ => return None,
        })
    }

    /// The canonical wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            MsgType::Auth => "auth",
            MsgType::Join => "join",
            MsgType::Offer => "offer",
            MsgType::Answer => "answer",
            MsgType::Candidate => "candidate",
            MsgType::Message => "message",
            MsgType::Chat => "chat",
            MsgType::Leave => "leave",
            MsgType::Ping => "ping",
            MsgType::Ack => "ack",
            MsgType::Resume => "resume",
            MsgType::App => "app",
        }
    }

    /// Messages relayed to a peer with a stamped `from`.
    pub fn is_relayed(self) -> bool {
        matches!(
            self,
            MsgType::Offer | MsgType::Answer | MsgType::Candidate | MsgType::Message | MsgType::App
        )
    }
}

/// A validated client message, borrowing from the frame text.
#[derive(Debug)]
pub struct ClientMessage<'a> {
    /// Which message this is (`type`).
    pub kind: MsgType,
    /// The `type` as sent (an app type's own name; the canonical name otherwise).
    pub type_name: Cow<'a, str>,
    /// The client's `id`, raw (a JSON string or number), echoed in `ack`/`error.ref`.
    pub id: Option<Raw<'a>>,
    /// `roomId`, when sent: the room a room-scoped message is about.
    pub room_id: Option<Cow<'a, str>>,
    /// `to`, when sent: the user id of the peer a relayed message is for.
    pub to: Option<Cow<'a, str>>,
    /// `seq` of `ack`, `lastSeq` of `resume`.
    pub seq: Option<u64>,
    /// Every top-level field of the frame, raw, kept for relaying.
    pub entries: Entries<'a>,
}

/// Why a frame was refused, with the `id` to echo as `ref` when one was readable.
#[derive(Debug)]
pub struct ParseError<'a> {
    /// The error code of the `error` answer (`invalid-json`, `invalid-message`, ...).
    pub code: ErrorCode,
    /// Why, for humans: the `error.message` text.
    pub message: String,
    /// The frame's `id`, raw, to echo as `error.ref`.
    pub id: Option<Raw<'a>>,
}

impl<'a> ClientMessage<'a> {
    /// A string field, `None` when absent.
    pub fn str_field(&self, name: &str) -> Result<Option<Cow<'a, str>>, String> {
        match self.entries.unique(name)? {
            None => Ok(None),
            Some(raw) => raw
                .as_str()
                .map(Some)
                .ok_or_else(|| format!("`{name}` must be a string")),
        }
    }

    /// A raw field, `None` when absent.
    pub fn raw_field(&self, name: &str) -> Result<Option<Raw<'a>>, String> {
        self.entries.unique(name)
    }
}

fn id_like(s: &str, name: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("`{name}` must not be empty"));
    }
    if s.len() > MAX_ID_LEN {
        return Err(format!("`{name}` is longer than {MAX_ID_LEN} bytes"));
    }
    Ok(())
}

/// Parses and validates one client text frame (PROTOCOL.md §3.1).
pub fn parse_client_message(text: &str) -> Result<ClientMessage<'_>, ParseError<'_>> {
    parse_client_message_with(text, &AppTypes::default())
}

/// [`parse_client_message`] that also accepts the application's own types.
pub fn parse_client_message_with<'a>(
    text: &'a str,
    app_types: &AppTypes,
) -> Result<ClientMessage<'a>, ParseError<'a>> {
    let entries = Entries::parse(text).map_err(|e| ParseError {
        code: match e {
            JsonError::NotAnObject => ErrorCode::InvalidMessage,
            _ => ErrorCode::InvalidJson,
        },
        message: e.to_string(),
        id: None,
    })?;
    let invalid = |message: String, id| ParseError {
        code: ErrorCode::InvalidMessage,
        message,
        id,
    };

    let id = entries.unique("id").map_err(|m| invalid(m, None))?;
    let id = match id {
        Some(raw)
            if raw.get().starts_with('"')
                || raw
                    .get()
                    .starts_with(['-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9']) =>
        {
            if raw.get().len() > MAX_ID_LEN {
                return Err(invalid(
                    format!("`id` is longer than {MAX_ID_LEN} bytes"),
                    None,
                ));
            }
            Some(raw)
        }
        Some(_) => {
            return Err(invalid(
                "`id` must be a string or a number".to_owned(),
                None,
            ))
        }
        None => None,
    };
    let kind_raw = entries.unique("type").map_err(|m| invalid(m, id))?;
    let kind_str = match kind_raw.and_then(Raw::as_str) {
        Some(s) => s,
        None => return Err(invalid("`type` must be a string".to_owned(), id)),
    };
    let kind =
        MsgType::parse(&kind_str).or_else(|| app_types.contains(&kind_str).then_some(MsgType::App));
    let Some(kind) = kind else {
        let mut shown: String = kind_str.chars().take(64).collect();
        if shown.len() < kind_str.len() {
            shown.push('…');
        }
        return Err(ParseError {
            code: ErrorCode::UnknownType,
            message: format!("unknown message type `{shown}`"),
            id,
        });
    };

    let type_name = match kind {
        MsgType::App => kind_str,
        _ => Cow::Borrowed(kind.as_str()),
    };
    let mut msg = ClientMessage {
        kind,
        type_name,
        id,
        room_id: None,
        to: None,
        seq: None,
        entries,
    };
    validate(&mut msg).map_err(|m| invalid(m, id))?;
    Ok(msg)
}

fn validate(msg: &mut ClientMessage<'_>) -> Result<(), String> {
    let room_id = msg.str_field("roomId")?;
    if let Some(r) = &room_id {
        id_like(r, "roomId")?;
    }
    let to = msg.str_field("to")?;
    if let Some(t) = &to {
        id_like(t, "to")?;
    }
    let require = |msg: &ClientMessage<'_>, name: &str| -> Result<(), String> {
        match msg.raw_field(name)? {
            Some(_) => Ok(()),
            None => Err(format!("`{}` needs a `{name}` field", msg.kind.as_str())),
        }
    };
    match msg.kind {
        MsgType::Auth => {
            if msg.str_field("token")?.is_none() {
                return Err("`auth` needs a string `token`".to_owned());
            }
        }
        MsgType::Join => {
            if room_id.is_none() {
                return Err("`join` needs a string `roomId`".to_owned());
            }
            if let Some(u) = msg.str_field("userId")? {
                id_like(&u, "userId")?;
            }
            if let Some(d) = msg.str_field("displayName")? {
                if d.len() > 1024 {
                    return Err("`displayName` is longer than 1024 bytes".to_owned());
                }
            }
            msg.raw_field("metadata")?;
        }
        MsgType::Offer | MsgType::Answer | MsgType::Candidate => {
            if to.is_none() {
                return Err(format!("`{}` needs a string `to`", msg.kind.as_str()));
            }
            let payload = if msg.kind == MsgType::Candidate {
                "candidate"
            } else {
                "sdp"
            };
            require(msg, payload)?;
        }
        MsgType::Message => require(msg, "data")?,
        MsgType::Chat => {
            if msg.str_field("content")?.is_none() {
                return Err("`chat` needs a string `content`".to_owned());
            }
        }
        MsgType::Leave | MsgType::Ping | MsgType::App => {}
        MsgType::Ack => {
            let seq = msg.raw_field("seq")?.and_then(Raw::as_u64);
            match seq {
                Some(s) => msg.seq = Some(s),
                None => return Err("`ack` needs a non-negative integer `seq`".to_owned()),
            }
        }
        MsgType::Resume => {
            for name in ["sessionId", "resumeToken"] {
                match msg.str_field(name)? {
                    Some(v) => id_like(&v, name)?,
                    None => return Err(format!("`resume` needs a string `{name}`")),
                }
            }
            match msg.raw_field("lastSeq")?.and_then(Raw::as_u64) {
                Some(s) => msg.seq = Some(s),
                None => return Err("`resume` needs a non-negative integer `lastSeq`".to_owned()),
            }
        }
    }
    msg.room_id = room_id;
    msg.to = to;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> ErrorCode {
        parse_client_message(text).unwrap_err().code
    }

    #[test]
    fn parses_a_candidate_borrowing_fields() {
        let m =
            parse_client_message(r#"{"type":"candidate","to":"bob","candidate":{"c":1},"id":7}"#)
                .unwrap();
        assert_eq!(m.kind, MsgType::Candidate);
        assert_eq!(m.to.as_deref(), Some("bob"));
        assert!(matches!(m.to, Some(Cow::Borrowed(_))));
        assert_eq!(m.id.unwrap().get(), "7");
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let m = parse_client_message(r#"{"type":"join","roomId":"r\u0031"}"#).unwrap();
        assert_eq!(m.room_id.as_deref(), Some("r1"));
    }

    #[test]
    fn error_codes() {
        assert_eq!(code("{"), ErrorCode::InvalidJson);
        assert_eq!(code("nope"), ErrorCode::InvalidJson);
        assert_eq!(code("[1,2]"), ErrorCode::InvalidMessage);
        assert_eq!(code("42"), ErrorCode::InvalidMessage);
        assert_eq!(code(r#"{"roomId":"x"}"#), ErrorCode::InvalidMessage);
        assert_eq!(code(r#"{"type":5}"#), ErrorCode::InvalidMessage);
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":"join"}"#), ErrorCode::InvalidMessage);
        assert_eq!(
            code(r#"{"type":"join","roomId":""}"#),
            ErrorCode::InvalidMessage
        );
        assert_eq!(
            code(r#"{"type":"offer","sdp":"x"}"#),
            ErrorCode::InvalidMessage
        );
        assert_eq!(
            code(r#"{"type":"offer","to":"b"}"#),
            ErrorCode::InvalidMessage
        );
        assert_eq!(
            code(r#"{"type":"ack","seq":-1}"#),
            ErrorCode::InvalidMessage
        );
        assert_eq!(
            code(r#"{"type":"resume","sessionId":"s","resumeToken":"t"}"#),
            ErrorCode::InvalidMessage
        );
        assert_eq!(
            code(r#"{"type":"offer","to":"a","to":"b","sdp":1}"#),
            ErrorCode::InvalidMessage
        );
        assert_eq!(
            code(r#"{"type":"ping","id":{}}"#),
            ErrorCode::InvalidMessage
        );
    }

    #[test]
    fn lone_surrogates_are_refused() {
        for bad in [
            r#"{"type":"ping","x":"\ude00"}"#,
            r#"{"type":"ping","x":"\ud800"}"#,
            r#"{"type":"ping","x":"\ud800\u0041"}"#,
            r#"{"type":"ping","x":["\udbff"]}"#,
        ] {
            assert_eq!(code(bad), ErrorCode::InvalidJson, "{bad}");
        }
        for good in [
            r#"{"type":"ping","x":"\ud83d\ude00"}"#,
            r#"{"type":"ping","x":"\\ud800"}"#,
            r#"{"type":"ping","x":"\\\ud83d\ude00 \n \u00e9"}"#,
        ] {
            assert!(parse_client_message(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn error_keeps_the_id_for_ref() {
        let e = parse_client_message(r#"{"type":"dance","id":"m1"}"#).unwrap_err();
        assert_eq!(e.id.unwrap().get(), r#""m1""#);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = format!(
            r#"{{"type":"ping","x":{}1{}}}"#,
            "[".repeat(120),
            "]".repeat(120)
        );
        assert_eq!(code(&deep), ErrorCode::InvalidJson);
        let ok = format!(
            r#"{{"type":"ping","x":{}1{}}}"#,
            "[".repeat(90),
            "]".repeat(90)
        );
        assert!(parse_client_message(&ok).is_ok());
        let in_string = format!(r#"{{"type":"ping","x":"{}"}}"#, "[".repeat(300));
        assert!(
            parse_client_message(&in_string).is_ok(),
            "brackets in strings do not count"
        );
    }

    #[test]
    fn app_types_parse_only_when_listed() {
        let apps = AppTypes::new(["hangup", "hand-raise"]).unwrap();
        let m = parse_client_message_with(r#"{"type":"hangup","to":"bob"}"#, &apps).unwrap();
        assert_eq!((m.kind, &*m.type_name), (MsgType::App, "hangup"));
        assert_eq!(m.to.as_deref(), Some("bob"));
        assert_eq!(code(r#"{"type":"hangup"}"#), ErrorCode::UnknownType);
        let e = parse_client_message_with(r#"{"type":"mute"}"#, &apps).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownType);
        for bad in [
            "offer",
            "room-info",
            "",
            "a b",
            "ACK",
            "disconnected",
            "closed",
        ] {
            assert!(AppTypes::new([bad]).is_err(), "{bad}");
        }
        assert!(AppTypes::new(["x", "x"]).is_err());
    }

    #[test]
    fn aliases() {
        assert_eq!(
            parse_client_message(r#"{"type":"ACK","seq":3}"#)
                .unwrap()
                .seq,
            Some(3)
        );
        let r = parse_client_message(
            r#"{"type":"RESUME","sessionId":"s","resumeToken":"t","lastSeq":0}"#,
        )
        .unwrap();
        assert_eq!(r.kind, MsgType::Resume);
    }
}
