//! The byte layout of one stored record, and a view that reads it.
//!
//! A record is its version, flags, lengths, expiry, key and value, side by side:
//!
//! ```text
//! ts u64 | flags u8 | origin (u8 code, or u64) | key length (LEB128)
//!        | value length (LEB128) | expires u64 (when it has one) | key
//!        | value (or a shared buffer's number, u64)
//! ```
//!
//! little-endian. The lengths are what a fat pointer used to give (a record now sits in
//! an arena page, addressed by an 8-byte handle, [`super::arena`]); as LEB128 they take
//! one byte each for a key or a value under 128 bytes. The origin (the node that took
//! the write) is one of few in a collection, so it is a one-byte code in the
//! collection's [`Origins`] for its first 255, and written out in full after that. A
//! 16-byte key with a 100-byte value is a record of 128 bytes (137 before).

use super::super::Superseded;
use crate::{
    clock::Timestamp,
    entry::{Entry, NodeId, Version},
    Millis,
};
use bytes::Bytes;

/// Flag: the record holds a value (else it is a tombstone).
const LIVE: u8 = 1;
/// Flag: the record carries an expiry.
const EXPIRES: u8 = 2;
/// Flag: the value is a shared buffer; the record holds its number.
const SHARED: u8 = 4;
/// Flag: the origin is written out (8 bytes), not a code in [`Origins`] (1 byte).
const WHOLE_ORIGIN: u8 = 8;
/// Flag: the record changed since its collection's changes were last taken
/// ([`super::MemStore::take_changed`]; only while the store tracks changes).
const MARKED: u8 = 16;
/// Where the flags are (after `ts`).
const FLAGS_AT: usize = 8;

/// The origins a collection's records name by a one-byte code.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    /// By code.
    ids: Vec<NodeId>,
    /// Codes by origin.
    codes: std::collections::BTreeMap<NodeId, u8>,
    /// The last origin coded (most writes come from the node that last wrote).
    last: Option<(NodeId, u8)>,
}

impl Origins {
    /// `origin`'s code, given it one if there is room.
    fn code(&mut self, origin: NodeId) -> Option<u8> {
        if let Some((id, code)) = self.last {
            if id == origin {
                return Some(code);
            }
        }
        let code = match self.codes.get(&origin) {
            Some(code) => *code,
            None if self.ids.len() < 255 => {
                let code = self.ids.len() as u8;
                self.ids.push(origin);
                self.codes.insert(origin, code);
                code
            }
            None => return None,
        };
        self.last = Some((origin, code));
        Some(code)
    }
}

/// [`Entry::size`] of an entry without a value.
pub const ENTRY_META: usize = 8 + 8 + 9;

/// Bytes `n` takes as LEB128.
fn varint_len(n: usize) -> usize {
    let mut len = 1;
    let mut n = n >> 7;
    while n != 0 {
        len += 1;
        n >>= 7;
    }
    len
}

/// Writes `n` as LEB128 at the start of `buf`; returns the bytes written.
fn put_varint(buf: &mut [u8], mut n: usize) -> usize {
    let mut at = 0;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            buf[at] = byte;
            return at + 1;
        }
        buf[at] = byte | 0x80;
        at += 1;
    }
}

/// Reads a LEB128 number at `*at`, moving `*at` past it.
fn get_varint(buf: &[u8], at: &mut usize) -> usize {
    let mut n = 0;
    let mut shift = 0;
    loop {
        let byte = buf[*at];
        *at += 1;
        n |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return n;
        }
        shift += 7;
    }
}

/// What a record holds in place of its value.
fn stored_len(entry: &Entry, blob: Option<u64>) -> usize {
    match (&entry.value, blob) {
        (_, Some(_)) => 8,
        (Some(v), None) => v.len(),
        (None, None) => 0,
    }
}

/// A record about to be written: its key, entry, shared buffer's number (if its value
/// is one) and origin's code (if it has one).
#[derive(Debug, Clone, Copy)]
pub struct Draft<'a> {
    pub key: &'a [u8],
    pub entry: &'a Entry,
    pub blob: Option<u64>,
    code: Option<u8>,
    /// Written with the [`MARKED`] flag.
    pub marked: bool,
}

impl<'a> Draft<'a> {
    /// The record of `key` and `entry` (`blob`: its value is shared, under that number),
    /// its origin coded in `origins`.
    pub fn new(key: &'a [u8], entry: &'a Entry, blob: Option<u64>, origins: &mut Origins) -> Self {
        Draft { key, entry, blob, code: origins.code(entry.origin), marked: false }
    }

    /// Bytes it takes.
    pub fn len(&self) -> usize {
        len_for(self.key, self.entry, self.blob, self.code)
    }

    /// Writes it into `buf`, exactly [`Draft::len`] bytes long.
    pub fn fill(&self, buf: &mut [u8]) {
        fill(buf, self.key, self.entry, self.blob, self.code);
        if self.marked {
            buf[FLAGS_AT] |= MARKED;
        }
    }
}

fn len_for(key: &[u8], entry: &Entry, blob: Option<u64>, code: Option<u8>) -> usize {
    let value = stored_len(entry, blob);
    FLAGS_AT
        + 1
        + if code.is_some() { 1 } else { 8 }
        + varint_len(key.len())
        + varint_len(value)
        + if entry.expires.is_some() { 8 } else { 0 }
        + key.len()
        + value
}

fn fill(buf: &mut [u8], key: &[u8], entry: &Entry, blob: Option<u64>, code: Option<u8>) {
    buf[..8].copy_from_slice(&entry.ts.0.to_le_bytes());
    let mut flags = 0;
    if entry.value.is_some() {
        flags |= LIVE;
    }
    if entry.expires.is_some() {
        flags |= EXPIRES;
    }
    if blob.is_some() {
        flags |= SHARED;
    }
    let mut at = FLAGS_AT + 1;
    match code {
        Some(code) => {
            buf[at] = code;
            at += 1;
        }
        None => {
            flags |= WHOLE_ORIGIN;
            buf[at..at + 8].copy_from_slice(&entry.origin.0.to_le_bytes());
            at += 8;
        }
    }
    buf[FLAGS_AT] = flags;
    at += put_varint(&mut buf[at..], key.len());
    at += put_varint(&mut buf[at..], stored_len(entry, blob));
    if let Some(e) = entry.expires {
        buf[at..at + 8].copy_from_slice(&e.to_le_bytes());
        at += 8;
    }
    buf[at..at + key.len()].copy_from_slice(key);
    at += key.len();
    match (blob, &entry.value) {
        (Some(id), _) => buf[at..].copy_from_slice(&id.to_le_bytes()),
        (None, Some(v)) => buf[at..].copy_from_slice(v),
        (None, None) => {}
    }
}

/// A record of its own, outside any arena: a crowded position's (see `mem.rs`).
#[derive(Debug, Clone)]
pub struct Boxed(pub Box<[u8]>);

/// Clears the [`MARKED`] flag of the record at the start of `buf`.
pub fn unmark(buf: &mut [u8]) {
    buf[FLAGS_AT] &= !MARKED;
}

impl Boxed {
    /// Holds `rec`.
    pub fn new(rec: Draft<'_>) -> Boxed {
        let mut buf = vec![0; rec.len()].into_boxed_slice();
        rec.fill(&mut buf);
        Boxed(buf)
    }

    /// Becomes `rec`: in place when it is the same length, else in a new allocation.
    pub fn set(&mut self, rec: Draft<'_>) {
        if self.0.len() == rec.len() {
            rec.fill(&mut self.0);
        } else {
            *self = Boxed::new(rec);
        }
    }

    /// Reads it (`origins`: its collection's).
    pub fn view<'a>(&'a self, origins: &'a Origins) -> Rec<'a> {
        Rec::parse(&self.0, origins)
    }
}

/// A stored record, read in place: its bytes, and where its key starts.
#[derive(Debug, Clone, Copy)]
pub struct Rec<'a> {
    /// Exactly the record's bytes.
    buf: &'a [u8],
    key_at: usize,
    key_len: usize,
    /// Its collection's origins, by code.
    origins: &'a [NodeId],
}

/// The large values of a collection, as [`Rec::value`] and [`Rec::entry`] need them.
pub trait Shared {
    /// The bytes of shared buffer `id`.
    fn get(&self, id: u64) -> &[u8];
    /// Shared buffer `id` itself.
    fn share(&self, id: u64) -> Bytes;
}

impl<'a> Rec<'a> {
    /// The record at the start of `buf` (which may run on past it), its origin coded in
    /// `origins`.
    pub fn parse(buf: &'a [u8], origins: &'a Origins) -> Rec<'a> {
        let mut at = FLAGS_AT + 1 + if buf[FLAGS_AT] & WHOLE_ORIGIN != 0 { 8 } else { 1 };
        let key_len = get_varint(buf, &mut at);
        let value_len = get_varint(buf, &mut at);
        if buf[FLAGS_AT] & EXPIRES != 0 {
            at += 8;
        }
        Rec { buf: &buf[..at + key_len + value_len], key_at: at, key_len, origins: &origins.ids }
    }

    /// The record's bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.buf
    }

    fn u64_at(&self, at: usize) -> u64 {
        let mut b = [0; 8];
        b.copy_from_slice(&self.buf[at..at + 8]);
        u64::from_le_bytes(b)
    }

    fn flags(&self) -> u8 {
        self.buf[FLAGS_AT]
    }

    /// Whether it changed since its collection's changes were last taken.
    pub fn marked(&self) -> bool {
        self.flags() & MARKED != 0
    }

    pub fn ts(&self) -> Timestamp {
        Timestamp(self.u64_at(0))
    }

    pub fn origin(&self) -> NodeId {
        if self.flags() & WHOLE_ORIGIN != 0 {
            NodeId(self.u64_at(FLAGS_AT + 1))
        } else {
            self.origins.get(usize::from(self.buf[FLAGS_AT + 1])).copied().unwrap_or(NodeId(0))
        }
    }

    pub fn expires(&self) -> Option<Millis> {
        (self.flags() & EXPIRES != 0).then(|| self.u64_at(self.key_at - 8))
    }

    pub fn key(&self) -> &'a [u8] {
        &self.buf[self.key_at..self.key_at + self.key_len]
    }

    /// The value's place in the record: its bytes, or a shared buffer's number.
    fn stored(&self) -> &'a [u8] {
        &self.buf[self.key_at + self.key_len..]
    }

    /// The number of the shared buffer holding the value, if it is one.
    pub fn blob(&self) -> Option<u64> {
        (self.flags() & SHARED != 0).then(|| self.u64_at(self.key_at + self.key_len))
    }

    /// The value (None for a tombstone).
    pub fn value<S: Shared>(&self, blobs: &'a S) -> Option<&'a [u8]> {
        if self.flags() & LIVE == 0 {
            return None;
        }
        Some(match self.blob() {
            Some(id) => blobs.get(id),
            None => self.stored(),
        })
    }

    /// The stored entry: its value copied out, or shared when it is a shared buffer.
    pub fn entry<S: Shared>(&self, blobs: &S) -> Entry {
        let value = match self.blob() {
            Some(id) => Some(blobs.share(id)),
            None => (self.flags() & LIVE != 0).then(|| Bytes::copy_from_slice(self.stored())),
        };
        Entry { value, ts: self.ts(), origin: self.origin(), expires: self.expires() }
    }

    /// The record's version: what identifies its write ([`Entry::version`]).
    pub fn version(&self) -> Version {
        Version { ts: self.ts(), origin: self.origin(), tombstone: self.flags() & LIVE == 0 }
    }

    /// Whether `entry` wins over this record (as [`Entry::supersedes`]).
    pub fn superseded_by<S: Shared>(&self, entry: &Entry, blobs: &S) -> bool {
        let value = self.value(blobs);
        let mine = (self.ts(), self.origin(), value.is_none(), value, self.expires());
        let theirs =
            (entry.ts, entry.origin, entry.is_tombstone(), entry.value.as_deref(), entry.expires);
        theirs > mine
    }

    /// What replacing this record leaves of it.
    pub fn superseded<S: Shared>(&self, blobs: &S) -> Superseded {
        let value = self.value(blobs);
        Superseded {
            ts: self.ts(),
            origin: self.origin(),
            tombstone: value.is_none(),
            expires: self.expires(),
            size: value.map_or(0, <[u8]>::len) + ENTRY_META,
        }
    }

    /// The record's bytes as the collection's counts take them (key plus
    /// [`Entry::size`]).
    pub fn counted<S: Shared>(&self, blobs: &S) -> usize {
        self.key_len + self.value(blobs).map_or(0, <[u8]>::len) + ENTRY_META
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoBlobs;
    impl Shared for NoBlobs {
        fn get(&self, _: u64) -> &[u8] {
            &[]
        }
        fn share(&self, _: u64) -> Bytes {
            Bytes::new()
        }
    }

    #[test]
    fn records_read_back_what_was_written() {
        let key_lens = [1, 16, 127, 128, 300, 64 * 1024];
        let entries = [
            Entry::value(vec![7u8; 100], Timestamp(1 << 40), NodeId(u64::MAX)),
            Entry::value(vec![1u8; 128], Timestamp(3), NodeId(2)),
            Entry::value(Vec::new(), Timestamp(3), NodeId(2)),
            Entry::tombstone(Timestamp(9), NodeId(4)),
            Entry { expires: Some(77), ..Entry::value(vec![5u8; 20], Timestamp(5), NodeId(6)) },
        ];
        let mut origins = Origins::default();
        for len in key_lens {
            let key = vec![b'k'; len];
            for entry in &entries {
                let rec = Boxed::new(Draft::new(&key, entry, None, &mut origins));
                let mut padded = rec.0.to_vec();
                padded.extend_from_slice(&[0xff; 9]);
                let view = Rec::parse(&padded, &origins);
                assert_eq!(view.bytes().len(), rec.0.len());
                assert_eq!(view.key(), &key[..]);
                assert_eq!(&view.entry(&NoBlobs), entry);
                assert_eq!(view.blob(), None);
            }
        }
        let shared = Entry::value(vec![0u8; 2000], Timestamp(1), NodeId(1));
        let rec = Boxed::new(Draft::new(b"k", &shared, Some(42), &mut origins));
        assert_eq!(rec.view(&origins).blob(), Some(42));
        assert_eq!(rec.0.len(), 8 + 1 + 1 + 1 + 1 + 1 + 8);
        // A 16-byte key with a 100-byte value: 128 bytes.
        assert_eq!(Draft::new(&[0; 16], &entries[0], None, &mut origins).len(), 128);
    }

    #[test]
    fn origins_past_the_first_255_are_written_out() {
        let mut origins = Origins::default();
        let entries: Vec<Entry> =
            (0..600).map(|n| Entry::value(vec![1; 3], Timestamp(n), NodeId(n * 7919))).collect();
        let recs: Vec<Boxed> =
            entries.iter().map(|e| Boxed::new(Draft::new(b"key", e, None, &mut origins))).collect();
        for (n, (rec, entry)) in recs.iter().zip(&entries).enumerate() {
            assert_eq!(&rec.view(&origins).entry(&NoBlobs), entry);
            assert_eq!(rec.0.len(), if n < 255 { 18 } else { 25 }, "origin {n}");
        }
    }
}
