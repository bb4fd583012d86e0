//! The byte layout of one stored record, and a view that reads it.
//!
//! A record is its version, flags, lengths, expiry, key and value, side by side:
//!
//! ```text
//! ts u64 | origin u64 | flags u8 | key length (LEB128) | value length (LEB128)
//!        | expires u64 (when it has one) | key | value (or a shared buffer's number, u64)
//! ```
//!
//! little-endian. The lengths are what a fat pointer used to give (a record now sits in
//! an arena page, addressed by an 8-byte handle, [`super::arena`]); as LEB128 they take
//! one byte each for a key or a value under 128 bytes, so a 16-byte key with a 100-byte
//! value is a record of 135 bytes.

use super::super::Superseded;
use crate::{
    clock::Timestamp,
    entry::{Entry, NodeId},
    Millis,
};
use bytes::Bytes;

/// Flag: the record holds a value (else it is a tombstone).
const LIVE: u8 = 1;
/// Flag: the record carries an expiry.
const EXPIRES: u8 = 2;
/// Flag: the value is a shared buffer; the record holds its number.
const SHARED: u8 = 4;
/// Where the flags are (after `ts` and `origin`).
const FLAGS_AT: usize = 16;

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

/// Bytes the record of `key` and `entry` takes (`blob`: its value is shared, under
/// that number).
pub fn len_for(key: &[u8], entry: &Entry, blob: Option<u64>) -> usize {
    let value = stored_len(entry, blob);
    FLAGS_AT
        + 1
        + varint_len(key.len())
        + varint_len(value)
        + if entry.expires.is_some() { 8 } else { 0 }
        + key.len()
        + value
}

/// Writes the record of `key` and `entry` into `buf`, exactly [`len_for`] bytes long.
pub fn fill(buf: &mut [u8], key: &[u8], entry: &Entry, blob: Option<u64>) {
    buf[..8].copy_from_slice(&entry.ts.0.to_le_bytes());
    buf[8..16].copy_from_slice(&entry.origin.0.to_le_bytes());
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
    buf[FLAGS_AT] = flags;
    let mut at = FLAGS_AT + 1;
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

impl Boxed {
    /// The record of `key` and `entry`.
    pub fn new(key: &[u8], entry: &Entry, blob: Option<u64>) -> Boxed {
        let mut buf = vec![0; len_for(key, entry, blob)].into_boxed_slice();
        fill(&mut buf, key, entry, blob);
        Boxed(buf)
    }

    /// Becomes `key`'s `entry`: in place when it is the same length, else in a new
    /// allocation.
    pub fn set(&mut self, key: &[u8], entry: &Entry, blob: Option<u64>) {
        if self.0.len() == len_for(key, entry, blob) {
            fill(&mut self.0, key, entry, blob);
        } else {
            *self = Boxed::new(key, entry, blob);
        }
    }

    /// Reads it.
    pub fn view(&self) -> Rec<'_> {
        Rec::parse(&self.0)
    }
}

/// A stored record, read in place: its bytes, and where its key starts.
#[derive(Debug, Clone, Copy)]
pub struct Rec<'a> {
    /// Exactly the record's bytes.
    buf: &'a [u8],
    key_at: usize,
    key_len: usize,
}

/// The large values of a collection, as [`Rec::value`] and [`Rec::entry`] need them.
pub trait Shared {
    /// The bytes of shared buffer `id`.
    fn get(&self, id: u64) -> &[u8];
    /// Shared buffer `id` itself.
    fn share(&self, id: u64) -> Bytes;
}

impl<'a> Rec<'a> {
    /// The record at the start of `buf` (which may run on past it).
    pub fn parse(buf: &'a [u8]) -> Rec<'a> {
        let mut at = FLAGS_AT + 1;
        let key_len = get_varint(buf, &mut at);
        let value_len = get_varint(buf, &mut at);
        if buf[FLAGS_AT] & EXPIRES != 0 {
            at += 8;
        }
        Rec { buf: &buf[..at + key_len + value_len], key_at: at, key_len }
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

    pub fn ts(&self) -> Timestamp {
        Timestamp(self.u64_at(0))
    }

    pub fn origin(&self) -> NodeId {
        NodeId(self.u64_at(8))
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
        for len in key_lens {
            let key = vec![b'k'; len];
            for entry in &entries {
                let rec = Boxed::new(&key, entry, None);
                let mut padded = rec.0.to_vec();
                padded.extend_from_slice(&[0xff; 9]);
                let view = Rec::parse(&padded);
                assert_eq!(view.bytes().len(), len_for(&key, entry, None));
                assert_eq!(view.key(), &key[..]);
                assert_eq!(&view.entry(&NoBlobs), entry);
                assert_eq!(view.blob(), None);
            }
        }
        let shared = Entry::value(vec![0u8; 2000], Timestamp(1), NodeId(1));
        let rec = Boxed::new(b"k", &shared, Some(42));
        assert_eq!(rec.view().blob(), Some(42));
        assert_eq!(rec.0.len(), 16 + 1 + 1 + 1 + 1 + 8);
        // A 16-byte key with a 100-byte value: 135 bytes.
        assert_eq!(len_for(&[0; 16], &entries[0], None), 135);
    }
}
