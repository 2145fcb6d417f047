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

use crate::protocol::frame::push_u64;

/// The first bytes of a bundle (JSON inbox messages start with `{`). The digit
/// is the version: a node of another version logs the bundle as unreadable.
pub(crate) const MAGIC: &str = "SBD1";

/// A bundle is published once it reaches this size, so no single pub/sub
/// message grows without bound (Redis' pub/sub output buffer limits are MiBs).
pub(crate) const FLUSH_BYTES: usize = 256 * 1024;

/// Deliveries to one node, encoded as bundle records one after the other: what
/// a sender queues for the writer (appended in place to the delivery queued
/// last when it goes to the same node, `queue.rs`) and, one record each, what
/// is held or re-sent when its node does not listen.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    text: String,
    /// Deliveries in `text`.
    count: u32,
}

impl Record {
    /// Appends one record to `out`: from origin node `o`, for sessions
    /// `targets` in room `r` (`u`: one receiver), with the sender's session and
    /// message id when it wants an answer, and the body (a JSON object without
    /// `seq`).
    pub(crate) fn write<'t>(
        out: &mut String,
        o: &str,
        r: &str,
        targets: impl ExactSizeIterator<Item = &'t str>,
        u: bool,
        reply: Option<(&str, &str)>,
        b: &str,
    ) {
        out.reserve(b.len() + o.len() + r.len() + 64);
        out.push('D');
        field(out, o);
        field(out, r);
        push_u64(out, targets.len() as u64);
        out.push(':');
        for t in targets {
            field(out, t);
        }
        out.push(if u { 'u' } else { 'm' });
        match reply {
            Some((s, i)) => {
                out.push('+');
                field(out, s);
                out.push('+');
                field(out, i);
            }
            None => out.push_str("--"),
        }
        field(out, b);
    }

    /// The one record that `write` writes (with [`Record::write`]), in an
    /// allocation of about its size (appended records grow it by doubling).
    pub(crate) fn written(write: impl FnOnce(&mut String)) -> Record {
        Record::written_in(String::new(), write)
    }

    /// The one record that `write` writes, into `text` (emptied first: a
    /// buffer given back by [`Record::into_buffer`] keeps its allocation).
    pub(crate) fn written_in(mut text: String, write: impl FnOnce(&mut String)) -> Record {
        text.clear();
        write(&mut text);
        Record { text, count: 1 }
    }

    /// Gives back the allocation beyond its text (it is kept a while).
    pub(crate) fn shrink(&mut self) {
        self.text.shrink_to_fit();
    }

    /// Its buffer, for another record to be written into.
    pub(crate) fn into_buffer(self) -> String {
        self.text
    }

    /// Appends the one record that `write` writes (with [`Record::write`]).
    pub(crate) fn append_with(&mut self, write: impl FnOnce(&mut String)) {
        write(&mut self.text);
        self.count += 1;
    }

    /// Takes back the record appended last, when it was `len` bytes long in an
    /// allocation of `capacity` (it holds no more than that again).
    pub(crate) fn take_back(&mut self, len: usize, capacity: usize) {
        self.text.truncate(len);
        self.text.shrink_to(capacity);
        self.count -= 1;
    }

    /// How many deliveries it holds.
    pub(crate) fn count(&self) -> usize {
        self.count as usize
    }

    /// Its deliveries, in order.
    pub(crate) fn split_views(&self) -> Vec<DeliveryRef<'_>> {
        Reader { rest: &self.text }.flatten().collect()
    }

    /// One record per delivery, in order (itself when it holds one).
    pub(crate) fn split(self) -> Vec<Record> {
        if self.count == 1 {
            return vec![self];
        }
        let views = self.split_views();
        debug_assert_eq!(views.len(), self.count(), "a record made here parses");
        views
            .iter()
            .map(|d| d.record_for(d.t.iter(), true))
            .collect()
    }

    /// Its (first) delivery (`None` only if it was damaged, which a record made here is not).
    pub(crate) fn view(&self) -> Option<DeliveryRef<'_>> {
        Reader { rest: &self.text }.record()
    }

    /// Bytes it holds.
    pub(crate) fn len(&self) -> usize {
        self.text.len()
    }

    /// Bytes allocated for it.
    pub(crate) fn capacity(&self) -> usize {
        self.text.capacity()
    }
}

/// Records sent as one bundle: the `PUBLISH` argument is written straight from
/// them into the command's buffer ([`MAGIC`], then each record), so a record's
/// bytes are not first gathered into a bundle string of their own.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bundle<'a>(pub(crate) &'a [Record]);

impl Bundle<'_> {
    /// Its size in bytes.
    pub(crate) fn len(&self) -> usize {
        MAGIC.len() + self.0.iter().map(Record::len).sum::<usize>()
    }
}

impl redis::ToRedisArgs for Bundle<'_> {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + redis::RedisWrite,
    {
        use std::io::Write;
        out.reserve_space_for_args([self.len()]);
        let mut arg = out.writer_for_next_arg();
        // Writes into a growing buffer: they can not fail.
        let _ = arg.write_all(MAGIC.as_bytes());
        for record in self.0 {
            let _ = arg.write_all(record.text.as_bytes());
        }
    }
}

fn field(out: &mut String, s: &str) {
    push_u64(out, s.len() as u64);
    out.push(':');
    out.push_str(s);
}

/// One delivery of a bundle, borrowed from the received payload.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeliveryRef<'a> {
    pub o: &'a str,
    pub r: &'a str,
    pub t: Targets<'a>,
    pub u: bool,
    pub s: Option<&'a str>,
    pub i: Option<&'a str>,
    pub b: &'a str,
}

impl DeliveryRef<'_> {
    /// Its record, for `targets` only, with the sender's id only when `keep_reply`.
    pub(crate) fn record_for<'t>(
        &self,
        targets: impl ExactSizeIterator<Item = &'t str>,
        keep_reply: bool,
    ) -> Record {
        let reply = self.s.zip(self.i).filter(|_| keep_reply);
        Record::written(|out| Record::write(out, self.o, self.r, targets, self.u, reply, self.b))
    }
}

/// The target sessions of a delivery, left in the payload (checked when the
/// record was read) and sliced out as they are iterated: no list is allocated
/// per delivery.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Targets<'a> {
    fields: &'a str,
    n: usize,
}

impl<'a> Targets<'a> {
    pub(crate) fn iter(&self) -> TargetIter<'a> {
        TargetIter {
            reader: Reader { rest: self.fields },
            left: self.n,
        }
    }
}

/// The sessions of [`Targets`], in order.
#[derive(Debug)]
pub(crate) struct TargetIter<'a> {
    reader: Reader<'a>,
    left: usize,
}

impl<'a> Iterator for TargetIter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        self.left = self.left.checked_sub(1)?;
        // Read once already: every field is there (were one not, the
        // iteration ends, and says so in its length).
        let field = self.reader.field();
        if field.is_none() {
            debug_assert!(false, "targets are checked when read");
            self.left = 0;
        }
        field
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for TargetIter<'_> {}

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
        let fields = self.rest;
        for _ in 0..n {
            self.field()?;
        }
        let t = Targets {
            fields: &fields[..fields.len() - self.rest.len()],
            n,
        };
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

    fn record(body: &str, targets: &[&str], reply: bool) -> Record {
        let reply = reply.then_some(("sess", "\"m-1\""));
        let u = targets.len() == 1;
        Record::written(|out| {
            Record::write(
                out,
                "node-a",
                "room:1\n",
                targets.iter().copied(),
                u,
                reply,
                body,
            )
        })
    }

    /// The bundle as it goes out: the `PUBLISH` argument written by [`Bundle`].
    fn encode(records: &[Record]) -> String {
        let args = redis::ToRedisArgs::to_redis_args(&Bundle(records));
        assert_eq!(args.len(), 1, "one argument");
        assert_eq!(args[0].len(), Bundle(records).len());
        String::from_utf8(args[0].clone()).unwrap()
    }

    #[test]
    fn deliveries_come_back_as_they_went() {
        let sent = [
            record(r#"{"type":"offer","sdp":"v=0\r\nü:1"}"#, &["s1"], true),
            record("{}", &["s2", "s3", "s:4"], false),
        ];
        let bundle = encode(&sent);
        assert!(is_bundle(bundle.as_bytes()));
        let got: Vec<_> = read(&bundle).collect::<Result<_, _>>().unwrap();
        assert_eq!(got.len(), 2);
        for (g, s) in got.iter().zip(&sent) {
            assert_eq!(Some(g), s.view().as_ref());
        }
        let d = &got[0];
        assert_eq!((d.o, d.r, d.u), ("node-a", "room:1\n", true));
        assert_eq!((d.s, d.i), (Some("sess"), Some("\"m-1\"")));
        assert_eq!(got[1].t.iter().collect::<Vec<_>>(), ["s2", "s3", "s:4"]);
        let one = got[1].record_for(["s3"].into_iter(), false);
        let one = one.view().unwrap();
        assert_eq!(one.t.iter().collect::<Vec<_>>(), ["s3"]);
        assert_eq!((one.s, one.b), (None, "{}"));
        assert_eq!(
            got[0].record_for(["s1"].into_iter(), true).view(),
            Some(got[0].clone())
        );
    }

    #[test]
    fn a_record_set_goes_as_its_deliveries_and_splits_back_into_them() {
        let singles = [
            record("{\"n\":1}", &["s1"], true),
            record("{\"n\":2}", &["s2", "s3"], false),
            record("{\"n\":3}", &["s1"], true),
        ];
        let mut set = singles[0].clone();
        for r in &singles[1..] {
            let d = r.view().unwrap();
            set.append_with(|out| Record::write(out, d.o, d.r, d.t.iter(), d.u, d.s.zip(d.i), d.b));
        }
        // One more, taken back (the queue's byte bound): as if never appended.
        let (before, held) = (set.len(), set.capacity());
        set.append_with(|out| Record::write(out, "o", "r", ["x"].into_iter(), true, None, "{}"));
        set.take_back(before, held);
        assert_eq!(set.capacity(), held, "the room it grew by is given back");
        assert_eq!(
            (set.count(), set.len()),
            (3, singles.iter().map(Record::len).sum())
        );
        let tail = record("{\"n\":4}", &["s4"], false);
        let bundle = encode(&[set.clone(), tail.clone()]);
        let got: Vec<_> = read(&bundle).collect::<Result<_, _>>().unwrap();
        let want: Vec<_> = singles
            .iter()
            .chain([&tail])
            .map(|r| r.view().unwrap())
            .collect();
        assert_eq!(got, want);
        let split = set.split();
        assert_eq!(split.len(), 3);
        for (one, single) in split.iter().zip(&singles) {
            assert_eq!((one.count(), one.view()), (1, single.view()));
        }
    }

    #[test]
    fn garbage_ends_the_bundle_without_panicking() {
        let first = record("{\"a\":1}", &["s1"], false);
        let good = Bundle(std::slice::from_ref(&first)).len();
        let bundle = encode(&[first, record("{\"a\":2}", &["s1"], false)]);
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
