//! The wire form of deliveries between nodes: every delivery the writer has for
//! one node in one batch travels as one `PUBLISH` of a bundle, and the receiver
//! slices it without parsing or re-validating the JSON inside.
//!
//! Why not JSON: a JSON envelope made the sender validate the body it had just
//! built (to embed it raw) and the receiver scan it again to find its end, and one
//! `PUBLISH` per message made Redis, the writer and the subscriber each pay a
//! command, a reply and a pub/sub message per message. Bodies come from nodes of
//! the same cluster, which validated and built them; Redis is trusted as much as
//! the nodes are. A bundle that does not parse is dropped from the first bad
//! record on, with a warning; it never panics the receiver.
//!
//! Form: `SBD1` then records. A record is `D`, then the fields origin node, room,
//! target count and targets, `u` (one receiver) or `m` (the room), the sender's
//! session and message id (each `-` for none or `+` and the field), and the body.
//! A field is its length in bytes, `:`, and its bytes (a netstring without the
//! trailing comma), so any text can be carried.

use std::sync::Arc;

use serde_json::value::RawValue;

use super::wire::Delivery;
use crate::protocol::frame::push_u64;

/// The first bytes of a bundle (JSON inbox messages start with `{`). The digit
/// is the version: a node of another version logs the bundle as unreadable.
pub(crate) const MAGIC: &str = "SBD1";

/// A bundle is published once it reaches this size, so no single pub/sub
/// message grows without bound (Redis' pub/sub output buffer limits are MiBs).
pub(crate) const FLUSH_BYTES: usize = 256 * 1024;

/// Appends one delivery to a bundle (starting it with [`MAGIC`] when empty).
pub(crate) fn push(out: &mut String, d: &Delivery) {
    if out.is_empty() {
        out.reserve(d.b.len() + 128);
        out.push_str(MAGIC);
    }
    out.push('D');
    field(out, &d.o);
    field(out, &d.r);
    push_u64(out, d.t.len() as u64);
    out.push(':');
    for t in &d.t {
        field(out, t);
    }
    out.push(if d.u { 'u' } else { 'm' });
    optional(out, d.s.as_deref());
    optional(out, d.i.as_deref().map(RawValue::get));
    field(out, &d.b);
}

fn field(out: &mut String, s: &str) {
    push_u64(out, s.len() as u64);
    out.push(':');
    out.push_str(s);
}

fn optional(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => {
            out.push('+');
            field(out, s);
        }
        None => out.push('-'),
    }
}

/// One delivery of a bundle, borrowed from the received payload.
#[derive(Debug, PartialEq)]
pub(crate) struct DeliveryRef<'a> {
    pub o: &'a str,
    pub r: &'a str,
    pub t: Vec<&'a str>,
    pub u: bool,
    pub s: Option<&'a str>,
    pub i: Option<&'a str>,
    pub b: &'a str,
}

impl DeliveryRef<'_> {
    /// An owned copy for the given targets (to hold or forward it), with the
    /// sender's id only when `keep_reply`; `None` if the id is not JSON.
    pub(crate) fn to_owned_for(&self, targets: Vec<Arc<str>>, keep_reply: bool) -> Delivery {
        let reply = keep_reply
            .then(|| {
                let id = RawValue::from_string(self.i?.to_owned()).ok()?;
                Some((Arc::<str>::from(self.s?), id))
            })
            .flatten();
        let (s, i) = reply.map_or((None, None), |(s, i)| (Some(s), Some(i)));
        Delivery {
            o: self.o.into(),
            r: self.r.into(),
            t: targets,
            u: self.u,
            b: self.b.to_owned(),
            s,
            i,
        }
    }
}

impl Delivery {
    /// A borrowed view, as if it had been received.
    pub(crate) fn as_ref(&self) -> DeliveryRef<'_> {
        DeliveryRef {
            o: &self.o,
            r: &self.r,
            t: self.t.iter().map(|t| &**t).collect(),
            u: self.u,
            s: self.s.as_deref(),
            i: self.i.as_deref().map(RawValue::get),
            b: &self.b,
        }
    }
}

/// Whether a pub/sub payload is a bundle.
pub(crate) fn is_bundle(payload: &[u8]) -> bool {
    payload.starts_with(MAGIC.as_bytes())
}

/// The deliveries of a bundle, in order; a record that does not parse ends it
/// with `Err` (what came before it is still yielded).
pub(crate) fn read(payload: &str) -> Reader<'_> {
    Reader {
        rest: payload.strip_prefix(MAGIC).unwrap_or(""),
    }
}

#[derive(Debug)]
pub(crate) struct Reader<'a> {
    rest: &'a str,
}

/// A bundle record that does not parse.
#[derive(Debug, PartialEq)]
pub(crate) struct Malformed;

impl<'a> Iterator for Reader<'a> {
    type Item = Result<DeliveryRef<'a>, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let record = self.record();
        if record.is_none() {
            self.rest = "";
        }
        Some(record.ok_or(Malformed))
    }
}

impl<'a> Reader<'a> {
    fn record(&mut self) -> Option<DeliveryRef<'a>> {
        self.tag(b'D')?;
        let o = self.field()?;
        let r = self.field()?;
        let n = self.number()?;
        // Each target takes at least 2 bytes: a claimed count can not reserve more.
        let mut t = Vec::with_capacity(n.min(self.rest.len() / 2));
        for _ in 0..n {
            t.push(self.field()?);
        }
        let u = match self.byte()? {
            b'u' => true,
            b'm' => false,
            _ => return None,
        };
        let s = self.optional()?;
        let i = self.optional()?;
        let b = self.field()?;
        // Receivers stamp `seq` into it: at least the shape of an object.
        if !(b.len() >= 2 && b.starts_with('{') && b.ends_with('}')) {
            return None;
        }
        Some(DeliveryRef {
            o,
            r,
            t,
            u,
            s,
            i,
            b,
        })
    }

    fn byte(&mut self) -> Option<u8> {
        let b = *self.rest.as_bytes().first()?;
        self.rest = self.rest.get(1..)?;
        Some(b)
    }

    fn tag(&mut self, want: u8) -> Option<()> {
        (self.byte()? == want).then_some(())
    }

    /// Decimal digits up to `:`.
    fn number(&mut self) -> Option<usize> {
        let end = self.rest.bytes().take(20).position(|b| b == b':')?;
        let n = self.rest[..end].parse().ok()?;
        self.rest = &self.rest[end + 1..];
        Some(n)
    }

    fn field(&mut self) -> Option<&'a str> {
        let n = self.number()?;
        let s = self.rest.get(..n)?;
        self.rest = &self.rest[n..];
        Some(s)
    }

    fn optional(&mut self) -> Option<Option<&'a str>> {
        match self.byte()? {
            b'-' => Some(None),
            b'+' => Some(Some(self.field()?)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(body: &str, targets: &[&str], reply: bool) -> Delivery {
        Delivery {
            o: "node-a".into(),
            r: "room:1\n".into(),
            t: targets.iter().map(|t| Arc::from(*t)).collect(),
            u: targets.len() == 1,
            b: body.to_owned(),
            s: reply.then(|| "sess".into()),
            i: reply.then(|| RawValue::from_string("\"m-1\"".into()).unwrap()),
        }
    }

    #[test]
    fn deliveries_come_back_as_they_went() {
        let sent = [
            delivery(r#"{"type":"offer","sdp":"v=0\r\nü:1"}"#, &["s1"], true),
            delivery("{}", &["s2", "s3", "s:4"], false),
        ];
        let mut bundle = String::new();
        for d in &sent {
            push(&mut bundle, d);
        }
        assert!(is_bundle(bundle.as_bytes()));
        let got: Vec<_> = read(&bundle).collect::<Result<_, _>>().unwrap();
        assert_eq!(got.len(), 2);
        for (g, s) in got.iter().zip(&sent) {
            assert_eq!(*g, s.as_ref());
        }
        let owned = got[0].to_owned_for(vec!["s1".into()], true);
        assert_eq!(owned.as_ref(), sent[0].as_ref());
        assert!(got[0].to_owned_for(vec![], false).i.is_none());
    }

    #[test]
    fn garbage_ends_the_bundle_without_panicking() {
        let mut bundle = String::new();
        push(&mut bundle, &delivery("{\"a\":1}", &["s1"], false));
        let good = bundle.len();
        push(&mut bundle, &delivery("{\"a\":2}", &["s1"], false));
        // Every truncation, and a corrupted byte at every position: never a panic,
        // and at most the intact records before the damage.
        for cut in MAGIC.len() + 1..bundle.len() {
            let got: Vec<_> = read(&bundle[..cut]).collect();
            let ok = got.iter().filter(|r| r.is_ok()).count();
            assert_eq!(ok, usize::from(cut >= good), "cut at {cut}");
            assert_eq!(got.last().map(Result::is_err), Some(cut != good));
        }
        for at in MAGIC.len()..bundle.len() {
            let mut bytes = bundle.clone().into_bytes();
            bytes[at] = b'9';
            let damaged = String::from_utf8(bytes).unwrap();
            let _ = read(&damaged).count();
        }
        let huge = format!("{MAGIC}D1:a1:r99999999999:");
        assert_eq!(read(&huge).collect::<Vec<_>>(), vec![Err(Malformed)]);
    }
}
