//! The URL part of the wire contract: the upgrade paths (fixed paths, or
//! templates whose `{roomId}` / `{userId}` segments name the room and the user)
//! and the query fields (`room`/`roomId`, `userId`, `displayName`) that join a
//! session to its room at connect, the way classic signaling clients expect.

use super::inbound::MAX_ID_LEN;

/// Longest `displayName` (the same bound as in `join`).
pub(crate) const MAX_DISPLAY_NAME_LEN: usize = 1024;

/// One segment of an upgrade path entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Fixed(String),
    Room,
    User,
}

/// The configured upgrade paths, parsed from a comma-separated list such as
/// `/ws,/,/signaling/{roomId}/{userId}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradePaths {
    entries: Vec<Vec<Segment>>,
    /// The first entry without template fields (for URLs that must be complete).
    fixed: Option<String>,
}

/// The fields a matching template filled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathFields {
    /// The `{roomId}` segment, percent-decoded, when the matching template has one.
    pub room_id: Option<String>,
    /// The `{userId}` segment, percent-decoded, when the matching template has one.
    pub user_id: Option<String>,
}

/// A join taken from the upgrade URL: performed at connect, before the first
/// frame is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlJoin {
    /// The room to join (from the path template or `room`/`roomId` in the query).
    pub room_id: String,
    /// The user id to join as (template or `userId` query field), if given.
    pub user_id: Option<String>,
    /// The `displayName` query field, if given.
    pub display_name: Option<String>,
}

impl UpgradePaths {
    /// Parses the list; a bad entry is an error that names it.
    pub fn parse(spec: &str) -> Result<UpgradePaths, String> {
        let mut entries = Vec::new();
        let mut fixed = None;
        for raw in spec.split(',').map(str::trim) {
            if !raw.starts_with('/') {
                return Err(format!("path `{raw}` must start with '/'"));
            }
            let mut segments = Vec::new();
            let (mut room, mut user) = (false, false);
            for seg in raw[1..].split('/') {
                segments.push(match seg {
                    "{roomId}" if !room => {
                        room = true;
                        Segment::Room
                    }
                    "{userId}" if !user => {
                        user = true;
                        Segment::User
                    }
                    s if s.contains(['{', '}']) => {
                        return Err(format!(
                            "path `{raw}`: `{s}` is not a template field (use {{roomId}} or {{userId}}, each once, as a whole segment)"
                        ))
                    }
                    s => Segment::Fixed(s.to_owned()),
                });
            }
            if !room && !user && fixed.is_none() {
                fixed = Some(raw.to_owned());
            }
            if entries.contains(&segments) {
                return Err(format!("path `{raw}` is listed twice"));
            }
            entries.push(segments);
        }
        Ok(UpgradePaths { entries, fixed })
    }

    /// The first fixed path (for the server's URL), `None` when every entry is a template.
    pub fn first_fixed(&self) -> Option<&str> {
        self.fixed.as_deref()
    }

    /// The entry `path` matches, with the fields its template filled.
    pub fn matches(&self, path: &str) -> Option<PathFields> {
        let rest = path.strip_prefix('/')?;
        'entries: for entry in &self.entries {
            let mut fields = PathFields::default();
            let mut parts = rest.split('/');
            for seg in entry {
                let Some(part) = parts.next() else {
                    continue 'entries;
                };
                match seg {
                    Segment::Fixed(f) if f == part => {}
                    Segment::Fixed(_) => continue 'entries,
                    Segment::Room if !part.is_empty() => {
                        fields.room_id = Some(percent_decode_path(part))
                    }
                    Segment::User if !part.is_empty() => {
                        fields.user_id = Some(percent_decode_path(part))
                    }
                    Segment::Room | Segment::User => continue 'entries,
                }
            }
            if parts.next().is_none() {
                return Some(fields);
            }
        }
        None
    }
}

/// The join a request's URL asks for: the template's fields, else the query's
/// `room` (alias `roomId`), `userId` and `displayName`. `Ok(None)` without a
/// room; an error (for an HTTP 400) when a value is malformed.
pub fn url_join(fields: PathFields, query: Option<&str>) -> Result<Option<UrlJoin>, String> {
    let param = |name: &str| query.and_then(|q| query_param(q, name));
    let Some(room_id) = fields
        .room_id
        .or_else(|| param("room"))
        .or_else(|| param("roomId"))
    else {
        return Ok(None);
    };
    let user_id = fields.user_id.or_else(|| param("userId"));
    let display_name = param("displayName");
    for (name, value) in [("room", Some(&room_id)), ("userId", user_id.as_ref())] {
        if let Some(v) = value {
            if v.is_empty() || v.len() > MAX_ID_LEN {
                return Err(format!(
                    "`{name}` in the URL must be 1 to {MAX_ID_LEN} bytes"
                ));
            }
        }
    }
    if display_name
        .as_ref()
        .is_some_and(|d| d.len() > MAX_DISPLAY_NAME_LEN)
    {
        return Err(format!(
            "`displayName` in the URL is longer than {MAX_DISPLAY_NAME_LEN} bytes"
        ));
    }
    Ok(Some(UrlJoin {
        room_id,
        user_id,
        display_name,
    }))
}

/// The first value of `name` in a query string, percent-decoded.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| percent_decode(v))
}

/// Decodes `%XX` escapes and `+` (a form-encoded space: query strings);
/// invalid escapes stay as written.
pub(crate) fn percent_decode(s: &str) -> String {
    decode(s, true)
}

/// Decodes the `%XX` escapes of a path segment (`+` is a plus there, as every
/// HTTP router reads it).
pub(crate) fn percent_decode_path(s: &str) -> String {
    decode(s, false)
}

fn decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'%' if i + 2 < b.len() => {
                if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' if plus_is_space => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_templates_match() {
        let p = UpgradePaths::parse("/ws, /,/signaling/{roomId}/{userId}").unwrap();
        assert_eq!(p.first_fixed(), Some("/ws"));
        assert_eq!(p.matches("/ws"), Some(PathFields::default()));
        assert_eq!(p.matches("/"), Some(PathFields::default()));
        let f = p.matches("/signaling/r%201/alice").unwrap();
        assert_eq!(f.room_id.as_deref(), Some("r 1"));
        let plus = p.matches("/signaling/a+b/alice").unwrap();
        assert_eq!(
            plus.room_id.as_deref(),
            Some("a+b"),
            "a plus in a path is a plus"
        );
        assert_eq!(f.user_id.as_deref(), Some("alice"));
        for miss in [
            "/wss",
            "/ws/",
            "/signaling/r1",
            "/signaling//a",
            "/signaling/r/a/b",
            "",
        ] {
            assert_eq!(p.matches(miss), None, "{miss}");
        }
        let t = UpgradePaths::parse("/rooms/{roomId}").unwrap();
        assert_eq!(t.first_fixed(), None);
    }

    #[test]
    fn bad_entries_are_named() {
        for bad in [
            "ws",
            "/a/{room}",
            "/{roomId}/{roomId}",
            "/x{userId}",
            "/ws,/ws",
        ] {
            let e = UpgradePaths::parse(bad).unwrap_err();
            assert!(!e.is_empty(), "{bad}");
        }
    }

    #[test]
    fn url_join_prefers_the_path_then_the_query() {
        let q = Some("room=q&userId=u&displayName=Ann+B&token=x");
        let j = url_join(PathFields::default(), q).unwrap().unwrap();
        assert_eq!(
            (
                j.room_id.as_str(),
                j.user_id.as_deref(),
                j.display_name.as_deref()
            ),
            ("q", Some("u"), Some("Ann B"))
        );
        let fields = PathFields {
            room_id: Some("p".into()),
            user_id: None,
        };
        assert_eq!(url_join(fields, q).unwrap().unwrap().room_id, "p");
        assert_eq!(
            url_join(PathFields::default(), Some("roomId=r"))
                .unwrap()
                .unwrap()
                .room_id,
            "r"
        );
        assert_eq!(
            url_join(PathFields::default(), Some("userId=u")).unwrap(),
            None
        );
        assert!(url_join(PathFields::default(), Some("room=")).is_err());
        let long = format!("room={}", "x".repeat(300));
        assert!(url_join(PathFields::default(), Some(&long)).is_err());
    }
}
