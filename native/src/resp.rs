//! A small RESP2 client for Redis and Redis Cluster, written for `dhrt bench`.
//!
//! It is hand-written on purpose: `dhrt bench` measures servers, so the client that
//! drives Redis should be as small and exact as the one that drives dhrt — commands
//! are encoded straight into a buffer, replies are parsed in place, and nothing is
//! allocated per request that the protocol does not need. It is not a general Redis
//! library: no RESP3, no pub/sub, no reconnects.
//!
//! The pieces:
//! - [`encode_command`] writes one command as a RESP array of bulk strings;
//! - [`parse`] reads one reply from a buffer, or says it is incomplete (mini-redis
//!   style: the caller reads more and tries again);
//! - [`RespConn`] is one TCP connection with a read buffer;
//! - [`key_slot`] is Redis Cluster's slot of a key (CRC16/XMODEM of the key, or of its
//!   `{hash tag}`, mod 16384), [`SlotMap`] the answer of `CLUSTER SLOTS`, and
//!   [`Redirect`] a parsed `MOVED`/`ASK` error;
//! - [`Cluster`] sends one command to the master of its key and follows redirects.

use bytes::{Buf, Bytes, BytesMut};
use std::{collections::HashMap, fmt};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Number of hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// Longest reply line (simple string, error, length) accepted.
const MAX_LINE: usize = 64 * 1024;

/// Largest bulk string accepted (Redis's own `proto-max-bulk-len` default).
const MAX_BULK: usize = 512 * 1024 * 1024;

/// Most elements of an array reply accepted.
const MAX_ARRAY: usize = 1 << 24;

/// How many redirects [`Cluster::command`] follows before it gives up.
const MAX_REDIRECTS: usize = 5;

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`: the error's text, without the `-`.
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$3\r\nfoo` or `$-1` (nil).
    Bulk(Option<Bytes>),
    /// `*2\r\n...` or `*-1` (nil).
    Array(Option<Vec<Value>>),
}

impl Value {
    /// The redirect this reply asks for, if it is a `MOVED` or `ASK` error.
    pub fn redirect(&self) -> Option<Redirect> {
        match self {
            Value::Error(e) => Redirect::parse(e),
            _ => None,
        }
    }
}

/// Why a reply could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RespError {
    /// The bytes are not RESP2.
    #[error("bad RESP reply: {0}")]
    Protocol(String),
    /// The socket failed or closed.
    #[error("connection to {addr} failed: {source}; is redis-server running there?")]
    Io {
        /// The server's `host:port`.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The server answered with an error.
    #[error("redis error: {0}")]
    Server(String),
    /// Redirects kept coming (a cluster in the middle of resharding, or a loop).
    #[error("more than {MAX_REDIRECTS} redirects for one command; is the cluster resharding?")]
    TooManyRedirects,
    /// The cluster's slot map has no master for a slot.
    #[error("no master serves slot {0}; is the cluster complete (`redis-cli --cluster check`)?")]
    Unserved(u16),
}

/// Appends `args` as one command (an array of bulk strings) to `buf`.
pub fn encode_command(buf: &mut Vec<u8>, args: &[&[u8]]) {
    buf.push(b'*');
    push_decimal(buf, args.len());
    buf.extend_from_slice(b"\r\n");
    for arg in args {
        buf.push(b'$');
        push_decimal(buf, arg.len());
        buf.extend_from_slice(b"\r\n");
        buf.extend_from_slice(arg);
        buf.extend_from_slice(b"\r\n");
    }
}

fn push_decimal(buf: &mut Vec<u8>, n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

/// Reads one reply from the front of `buf`: `Ok(Some((value, bytes used)))`, or
/// `Ok(None)` when `buf` holds only part of a reply.
pub fn parse(buf: &[u8]) -> Result<Option<(Value, usize)>, RespError> {
    let mut at = 0;
    Ok(parse_at(buf, &mut at, 0)?.map(|v| (v, at)))
}

fn parse_at(buf: &[u8], at: &mut usize, depth: usize) -> Result<Option<Value>, RespError> {
    if depth > 32 {
        return Err(RespError::Protocol("arrays nested more than 32 deep".into()));
    }
    let Some(&kind) = buf.get(*at) else { return Ok(None) };
    let Some(line) = line_at(buf, *at + 1)? else { return Ok(None) };
    let after_line = *at + 1 + line.len() + 2;
    let text = || String::from_utf8_lossy(line).into_owned();
    let value = match kind {
        b'+' => Value::Simple(text()),
        b'-' => Value::Error(text()),
        b':' => Value::Integer(integer(line)?),
        b'$' => {
            let len = integer(line)?;
            if len < 0 {
                Value::Bulk(None)
            } else {
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                if len > MAX_BULK {
                    return Err(RespError::Protocol(format!("bulk string of {len} bytes")));
                }
                let end = after_line + len;
                if buf.len() < end + 2 {
                    return Ok(None);
                }
                if &buf[end..end + 2] != b"\r\n" {
                    return Err(RespError::Protocol("bulk string not followed by CRLF".into()));
                }
                *at = end + 2;
                return Ok(Some(Value::Bulk(Some(Bytes::copy_from_slice(&buf[after_line..end])))));
            }
        }
        b'*' => {
            let len = integer(line)?;
            if len < 0 {
                Value::Array(None)
            } else {
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                if len > MAX_ARRAY {
                    return Err(RespError::Protocol(format!("array of {len} elements")));
                }
                let mut items = Vec::with_capacity(len.min(1024));
                let mut inner = after_line;
                for _ in 0..len {
                    match parse_at(buf, &mut inner, depth + 1)? {
                        Some(v) => items.push(v),
                        None => return Ok(None),
                    }
                }
                *at = inner;
                return Ok(Some(Value::Array(Some(items))));
            }
        }
        other => {
            return Err(RespError::Protocol(format!("unknown reply type {:?}", char::from(other))))
        }
    };
    *at = after_line;
    Ok(Some(value))
}

/// The line starting at `from`, without its CRLF; `None` when the CRLF has not arrived.
fn line_at(buf: &[u8], from: usize) -> Result<Option<&[u8]>, RespError> {
    let rest = buf.get(from..).unwrap_or_default();
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(n) => Ok(Some(&rest[..n])),
        None if rest.len() > MAX_LINE => {
            Err(RespError::Protocol(format!("a reply line longer than {MAX_LINE} bytes")))
        }
        None => Ok(None),
    }
}

fn integer(line: &[u8]) -> Result<i64, RespError> {
    std::str::from_utf8(line).ok().and_then(|s| s.parse().ok()).ok_or_else(|| {
        RespError::Protocol(format!("not an integer: {:?}", String::from_utf8_lossy(line)))
    })
}

/// A `MOVED` or `ASK` error: the slot lives elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirect {
    /// `MOVED slot host:port`: the slot's master is now at `addr`; update the slot map.
    Moved {
        /// The slot.
        slot: u16,
        /// The master's `host:port`.
        addr: String,
    },
    /// `ASK slot host:port`: ask `addr` once (after `ASKING`), the slot is migrating.
    Ask {
        /// The slot.
        slot: u16,
        /// Where to ask.
        addr: String,
    },
}

impl Redirect {
    /// Parses the text of an error reply (`MOVED 3999 127.0.0.1:6381`).
    pub fn parse(error: &str) -> Option<Redirect> {
        let mut words = error.split_ascii_whitespace();
        let kind = words.next()?;
        let slot: u16 = words.next()?.parse().ok().filter(|s| *s < SLOTS)?;
        let addr = words.next()?.to_string();
        if words.next().is_some() || !addr.contains(':') {
            return None;
        }
        match kind {
            "MOVED" => Some(Redirect::Moved { slot, addr }),
            "ASK" => Some(Redirect::Ask { slot, addr }),
            _ => None,
        }
    }
}

/// CRC16/XMODEM (polynomial 0x1021, initial 0), the checksum Redis Cluster hashes keys
/// with: `crc16(b"123456789") == 0x31C3`.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

/// The hash slot of `key`: CRC16 of the key — or of the part between the first `{` and
/// the next `}` when that part is not empty (a hash tag) — mod 16384.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter().position(|&b| b == b'}').filter(|&close| close > 0).map(|c| &rest[..c])
        })
        .unwrap_or(key);
    crc16(hashed) % SLOTS
}

/// Which master serves each slot, from `CLUSTER SLOTS`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotMap {
    /// `(first slot, last slot, master host:port)`, sorted by first slot.
    pub ranges: Vec<(u16, u16, String)>,
}

impl SlotMap {
    /// Reads the reply of `CLUSTER SLOTS`: an array of `[first, last, [host, port, id],
    /// replicas...]`.
    pub fn from_reply(reply: &Value) -> Result<SlotMap, RespError> {
        let bad = |what: &str| RespError::Protocol(format!("CLUSTER SLOTS: {what}"));
        let Value::Array(Some(entries)) = reply else {
            return Err(match reply {
                Value::Error(e) => RespError::Server(e.clone()),
                _ => bad("not an array"),
            });
        };
        let mut ranges = Vec::with_capacity(entries.len());
        for entry in entries {
            let Value::Array(Some(fields)) = entry else {
                return Err(bad("an entry is not an array"));
            };
            let slot = |v: Option<&Value>| match v {
                Some(Value::Integer(n)) if (0..i64::from(SLOTS)).contains(n) => Ok(*n as u16),
                _ => Err(bad("a slot is not a number below 16384")),
            };
            let first = slot(fields.first())?;
            let last = slot(fields.get(1))?;
            let Some(Value::Array(Some(master))) = fields.get(2) else {
                return Err(bad("an entry has no master"));
            };
            let host = match master.first() {
                Some(Value::Bulk(Some(h))) => String::from_utf8_lossy(h).into_owned(),
                _ => return Err(bad("a master has no host")),
            };
            let port = match master.get(1) {
                Some(Value::Integer(p)) => *p,
                _ => return Err(bad("a master has no port")),
            };
            let host = if host.is_empty() { "127.0.0.1".to_string() } else { host };
            ranges.push((first, last, format!("{host}:{port}")));
        }
        ranges.sort();
        Ok(SlotMap { ranges })
    }

    /// The master serving `slot`.
    pub fn master(&self, slot: u16) -> Option<&str> {
        let i = self.ranges.partition_point(|(first, _, _)| *first <= slot);
        let (first, last, addr) = self.ranges.get(i.checked_sub(1)?)?;
        (*first <= slot && slot <= *last).then_some(addr.as_str())
    }

    /// The distinct masters, in slot order of their first range.
    pub fn masters(&self) -> Vec<String> {
        let mut seen = Vec::new();
        for (_, _, addr) in &self.ranges {
            if !seen.contains(addr) {
                seen.push(addr.clone());
            }
        }
        seen
    }
}

/// One connection to a Redis server, with its read buffer.
pub struct RespConn {
    /// The server's `host:port`.
    pub addr: String,
    stream: TcpStream,
    rbuf: BytesMut,
}

impl fmt::Debug for RespConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RespConn").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl RespConn {
    /// Connects to `addr` (`host:port`), with Nagle's algorithm off.
    pub async fn connect(addr: &str) -> Result<RespConn, RespError> {
        let io = |source| RespError::Io { addr: addr.to_string(), source };
        let stream = TcpStream::connect(addr).await.map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        Ok(RespConn { addr: addr.to_string(), stream, rbuf: BytesMut::with_capacity(16 * 1024) })
    }

    /// Writes already-encoded commands.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), RespError> {
        let addr = &self.addr;
        self.stream
            .write_all(bytes)
            .await
            .map_err(|source| RespError::Io { addr: addr.clone(), source })
    }

    /// The next reply, reading from the socket as needed.
    pub async fn read_value(&mut self) -> Result<Value, RespError> {
        loop {
            if let Some(v) = self.try_value()? {
                return Ok(v);
            }
            self.fill().await?;
        }
    }

    /// The next reply if it is already buffered.
    pub fn try_value(&mut self) -> Result<Option<Value>, RespError> {
        match parse(&self.rbuf)? {
            Some((v, used)) => {
                self.rbuf.advance(used);
                Ok(Some(v))
            }
            None => Ok(None),
        }
    }

    /// Reads whatever the socket has into the buffer (at least one byte).
    pub async fn fill(&mut self) -> Result<(), RespError> {
        if self.rbuf.capacity() - self.rbuf.len() < 4096 {
            self.rbuf.reserve(16 * 1024);
        }
        let n = self
            .stream
            .read_buf(&mut self.rbuf)
            .await
            .map_err(|source| RespError::Io { addr: self.addr.clone(), source })?;
        if n == 0 {
            return Err(RespError::Io {
                addr: self.addr.clone(),
                source: std::io::ErrorKind::UnexpectedEof.into(),
            });
        }
        Ok(())
    }

    /// Sends one command and waits for its reply.
    pub async fn command(&mut self, args: &[&[u8]]) -> Result<Value, RespError> {
        let mut buf = Vec::with_capacity(64);
        encode_command(&mut buf, args);
        self.send(&buf).await?;
        self.read_value().await
    }
}

/// A Redis Cluster client: each command goes to the master of its key's slot;
/// `MOVED` updates the map and retries there, `ASK` retries once after `ASKING`.
#[derive(Debug)]
pub struct Cluster {
    seeds: Vec<String>,
    slots: SlotMap,
    conns: HashMap<String, RespConn>,
}

impl Cluster {
    /// Connects through any of `seeds` and reads the slot map.
    pub async fn connect(seeds: &[&str]) -> Result<Cluster, RespError> {
        let mut cluster = Cluster {
            seeds: seeds.iter().map(|s| s.to_string()).collect(),
            slots: SlotMap::default(),
            conns: HashMap::new(),
        };
        cluster.refresh().await?;
        Ok(cluster)
    }

    /// The slot map as last read.
    pub fn slots(&self) -> &SlotMap {
        &self.slots
    }

    /// Re-reads the slot map from a known node.
    pub async fn refresh(&mut self) -> Result<(), RespError> {
        let mut candidates = self.seeds.clone();
        candidates.extend(self.slots.masters());
        let mut last = RespError::Protocol("no seed address given".into());
        for addr in candidates {
            let reply = match self.conn(&addr).await {
                Ok(c) => c.command(&[b"CLUSTER", b"SLOTS"]).await,
                Err(e) => Err(e),
            };
            match reply.and_then(|r| SlotMap::from_reply(&r)) {
                Ok(map) => {
                    self.slots = map;
                    return Ok(());
                }
                Err(e) => {
                    self.conns.remove(&addr);
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// Sends `args` to the master of `key` and returns its reply, following redirects.
    pub async fn command(&mut self, key: &[u8], args: &[&[u8]]) -> Result<Value, RespError> {
        let slot = key_slot(key);
        let mut addr = self.slots.master(slot).ok_or(RespError::Unserved(slot))?.to_string();
        let mut asking = false;
        for _ in 0..=MAX_REDIRECTS {
            let conn = self.conn(&addr).await?;
            if asking {
                conn.command(&[b"ASKING"]).await?;
            }
            let reply = conn.command(args).await?;
            match reply.redirect() {
                None => return Ok(reply),
                Some(Redirect::Moved { slot, addr: to }) => {
                    self.note_moved(slot, &to);
                    addr = to;
                    asking = false;
                }
                Some(Redirect::Ask { addr: to, .. }) => {
                    addr = to;
                    asking = true;
                }
            }
        }
        Err(RespError::TooManyRedirects)
    }

    /// Records that `slot` now lives at `addr` (the map is fully re-read on the next
    /// [`Cluster::refresh`]).
    fn note_moved(&mut self, slot: u16, addr: &str) {
        let i = self.slots.ranges.partition_point(|(first, _, _)| *first <= slot);
        if let Some(range) = i.checked_sub(1).and_then(|i| self.slots.ranges.get_mut(i)) {
            if range.0 <= slot && slot <= range.1 {
                let (first, last, _) = range.clone();
                // Split the range so only `slot` moves.
                let mut parts = Vec::new();
                if first < slot {
                    parts.push((first, slot - 1, range.2.clone()));
                }
                parts.push((slot, slot, addr.to_string()));
                if slot < last {
                    parts.push((slot + 1, last, range.2.clone()));
                }
                self.slots.ranges.splice(i - 1..i, parts);
                return;
            }
        }
        self.slots.ranges.push((slot, slot, addr.to_string()));
        self.slots.ranges.sort();
    }

    async fn conn(&mut self, addr: &str) -> Result<&mut RespConn, RespError> {
        if !self.conns.contains_key(addr) {
            let c = RespConn::connect(addr).await?;
            self.conns.insert(addr.to_string(), c);
        }
        self.conns.get_mut(addr).ok_or_else(|| RespError::Protocol("connection vanished".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(bytes: &[u8]) -> Value {
        let (v, used) = parse(bytes).unwrap().expect("complete");
        assert_eq!(used, bytes.len(), "{:?}", String::from_utf8_lossy(bytes));
        v
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut buf = Vec::new();
        encode_command(&mut buf, &[b"SET", b"key", b"value"]);
        assert_eq!(buf, b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n");
        buf.clear();
        encode_command(&mut buf, &[b"GET", &[b'k'; 16]]);
        assert_eq!(buf, [&b"*2\r\n$3\r\nGET\r\n$16\r\n"[..], &[b'k'; 16], b"\r\n"].concat());
        buf.clear();
        encode_command(&mut buf, &[b"SET", b"", &[0u8; 100]]);
        assert!(buf.starts_with(b"*3\r\n$3\r\nSET\r\n$0\r\n\r\n$100\r\n"));
        assert!(buf.ends_with(b"\r\n"));
        assert_eq!(buf.len(), 4 + 9 + 6 + 6 + 100 + 2);
        buf.clear();
        encode_command(&mut buf, &[b"PING"]);
        assert_eq!(buf, b"*1\r\n$4\r\nPING\r\n");
    }

    #[test]
    fn replies_of_every_type() {
        assert_eq!(whole(b"+OK\r\n"), Value::Simple("OK".into()));
        assert_eq!(whole(b"-ERR unknown command\r\n"), Value::Error("ERR unknown command".into()));
        assert_eq!(whole(b":-42\r\n"), Value::Integer(-42));
        assert_eq!(whole(b"$5\r\nhello\r\n"), Value::Bulk(Some(Bytes::from_static(b"hello"))));
        assert_eq!(whole(b"$0\r\n\r\n"), Value::Bulk(Some(Bytes::new())));
        assert_eq!(whole(b"$-1\r\n"), Value::Bulk(None));
        assert_eq!(whole(b"*-1\r\n"), Value::Array(None));
        assert_eq!(whole(b"*0\r\n"), Value::Array(Some(vec![])));
        assert_eq!(
            whole(b"*3\r\n:1\r\n$-1\r\n*1\r\n+x\r\n"),
            Value::Array(Some(vec![
                Value::Integer(1),
                Value::Bulk(None),
                Value::Array(Some(vec![Value::Simple("x".into())])),
            ]))
        );
        // Binary bulk strings may hold CRLF.
        assert_eq!(whole(b"$4\r\na\r\nb\r\n"), Value::Bulk(Some(Bytes::from_static(b"a\r\nb"))));
    }

    #[test]
    fn partial_replies_are_incomplete_and_pipelined_ones_split() {
        let stream = b"+OK\r\n$3\r\nabc\r\n-ERR x\r\n*2\r\n:1\r\n:2\r\n";
        for cut in 0..stream.len() {
            // Every prefix parses to whole replies followed by `None`, never an error.
            let mut at = 0;
            while let Some((_, used)) = parse(&stream[at..cut]).unwrap() {
                at += used;
            }
        }
        let mut at = 0;
        let mut got = Vec::new();
        while let Some((v, used)) = parse(&stream[at..]).unwrap() {
            got.push(v);
            at += used;
        }
        assert_eq!(at, stream.len());
        assert_eq!(got.len(), 4);
        assert_eq!(got[2], Value::Error("ERR x".into()));
        assert!(parse(b"$10\r\nabc").unwrap().is_none());
        assert!(parse(b"*2\r\n:1\r\n").unwrap().is_none());
        assert!(parse(b"").unwrap().is_none());
    }

    #[test]
    fn bad_replies_are_errors() {
        assert!(parse(b"?what\r\n").is_err());
        assert!(parse(b":12a\r\n").is_err());
        assert!(parse(b"$3\r\nabcd\r\n").is_err());
        assert!(parse(b"$99999999999\r\n").is_err());
        assert!(parse(&[b'+'; MAX_LINE + 10]).is_err());
        let deep: Vec<u8> = b"*1\r\n".repeat(40);
        assert!(parse(&deep).is_err());
    }

    #[test]
    fn moved_and_ask_are_parsed() {
        assert_eq!(
            Redirect::parse("MOVED 3999 127.0.0.1:6381"),
            Some(Redirect::Moved { slot: 3999, addr: "127.0.0.1:6381".into() })
        );
        assert_eq!(
            Redirect::parse("ASK 12182 10.0.0.2:7000"),
            Some(Redirect::Ask { slot: 12182, addr: "10.0.0.2:7000".into() })
        );
        assert_eq!(
            whole(b"-MOVED 0 h:1\r\n").redirect(),
            Some(Redirect::Moved { slot: 0, addr: "h:1".into() })
        );
        assert_eq!(Redirect::parse("MOVED 16384 h:1"), None);
        assert_eq!(Redirect::parse("MOVED x h:1"), None);
        assert_eq!(Redirect::parse("MOVED 1"), None);
        assert_eq!(Redirect::parse("ERR MOVED 1 h:1"), None);
        assert_eq!(Redirect::parse("MOVED 1 nohostport"), None);
        assert_eq!(Value::Simple("MOVED 1 h:1".into()).redirect(), None);
    }

    #[test]
    fn crc16_and_slots_match_redis() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(crc16(b""), 0);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"hello"), 866);
        // Hash tags: only the part in the first {...} counts, unless it is empty.
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"{user1000}.followers"), key_slot(b"{user1000}.following"));
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"{"), crc16(b"{") % SLOTS);
    }

    fn slots_reply(ranges: &[(i64, i64, &str, i64)]) -> Value {
        Value::Array(Some(
            ranges
                .iter()
                .map(|(a, b, host, port)| {
                    Value::Array(Some(vec![
                        Value::Integer(*a),
                        Value::Integer(*b),
                        Value::Array(Some(vec![
                            Value::Bulk(Some(Bytes::copy_from_slice(host.as_bytes()))),
                            Value::Integer(*port),
                            Value::Bulk(Some(Bytes::from_static(b"id"))),
                        ])),
                        Value::Array(Some(vec![
                            Value::Bulk(Some(Bytes::from_static(b"127.0.0.1"))),
                            Value::Integer(9999),
                        ])),
                    ]))
                })
                .collect(),
        ))
    }

    #[test]
    fn slot_map_from_cluster_slots() {
        let reply = slots_reply(&[
            (10923, 16383, "127.0.0.1", 7002),
            (0, 5460, "127.0.0.1", 7000),
            (5461, 10922, "", 7001),
        ]);
        let map = SlotMap::from_reply(&reply).unwrap();
        assert_eq!(map.master(0), Some("127.0.0.1:7000"));
        assert_eq!(map.master(5460), Some("127.0.0.1:7000"));
        assert_eq!(map.master(5461), Some("127.0.0.1:7001"));
        assert_eq!(map.master(12182), Some("127.0.0.1:7002"));
        assert_eq!(map.master(16383), Some("127.0.0.1:7002"));
        assert_eq!(map.masters(), ["127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"]);
        let partial = SlotMap::from_reply(&slots_reply(&[(100, 200, "h", 1)])).unwrap();
        assert_eq!(partial.master(99), None);
        assert_eq!(partial.master(201), None);
        assert!(SlotMap::from_reply(&Value::Error(
            "ERR This instance has cluster support disabled".into()
        ))
        .is_err());
        assert!(SlotMap::from_reply(&slots_reply(&[(0, 16384, "h", 1)])).is_err());
    }

    #[test]
    fn moved_splits_the_range() {
        let mut cluster = Cluster {
            seeds: vec![],
            slots: SlotMap { ranges: vec![(0, 99, "a:1".into()), (100, 199, "b:1".into())] },
            conns: HashMap::new(),
        };
        cluster.note_moved(50, "c:1");
        assert_eq!(cluster.slots.master(49), Some("a:1"));
        assert_eq!(cluster.slots.master(50), Some("c:1"));
        assert_eq!(cluster.slots.master(51), Some("a:1"));
        cluster.note_moved(0, "c:1");
        cluster.note_moved(199, "c:1");
        cluster.note_moved(500, "d:1");
        assert_eq!(cluster.slots.master(0), Some("c:1"));
        assert_eq!(cluster.slots.master(198), Some("b:1"));
        assert_eq!(cluster.slots.master(199), Some("c:1"));
        assert_eq!(cluster.slots.master(500), Some("d:1"));
    }

    /// A fake cluster node on 127.0.0.1: answers `CLUSTER SLOTS` with `slots`, and every
    /// other command with `answer(command words)`.
    async fn fake_node(
        answer: impl Fn(&[Bytes]) -> Vec<u8> + Send + Sync + 'static,
    ) -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let answer = std::sync::Arc::new(answer);
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut buf = BytesMut::new();
                    loop {
                        while let Ok(Some((Value::Array(Some(words)), used))) = parse(&buf) {
                            buf.advance(used);
                            let words: Vec<Bytes> = words
                                .into_iter()
                                .filter_map(|w| match w {
                                    Value::Bulk(Some(b)) => Some(b),
                                    _ => None,
                                })
                                .collect();
                            if socket.write_all(&answer(&words)).await.is_err() {
                                return;
                            }
                        }
                        match socket.read_buf(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                    }
                });
            }
        });
        (addr, task)
    }

    fn slots_bytes(master: &str) -> Vec<u8> {
        let (host, port) = master.rsplit_once(':').unwrap();
        format!("*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n${}\r\n{host}\r\n:{port}\r\n", host.len())
            .into_bytes()
    }

    #[tokio::test]
    async fn the_cluster_client_follows_moved_and_ask() {
        // B serves everything; A is in the slot map but answers MOVED to B.
        let (b, _tb) = fake_node(|w| match w[0].as_ref() {
            b"SET" | b"ASKING" => b"+OK\r\n".to_vec(),
            b"GET" => b"$2\r\nv1\r\n".to_vec(),
            _ => b"-ERR unknown\r\n".to_vec(),
        })
        .await;
        let to_b = b.clone();
        let (a, _ta) =
            fake_node(move |w| format!("-MOVED {} {to_b}\r\n", key_slot(&w[1])).into_bytes()).await;
        let a_slots = slots_bytes(&a);
        let (seed, _ts) = fake_node(move |_| a_slots.clone()).await;
        let mut cluster = Cluster::connect(&[&seed]).await.unwrap();
        assert_eq!(cluster.slots().master(key_slot(b"foo")), Some(a.as_str()));
        let reply = cluster.command(b"foo", &[b"SET", b"foo", b"v1"]).await.unwrap();
        assert_eq!(reply, Value::Simple("OK".into()));
        // The slot now points at B, other slots still at A.
        assert_eq!(cluster.slots().master(12182), Some(b.as_str()));
        assert_eq!(cluster.slots().master(12181), Some(a.as_str()));
        let reply = cluster.command(b"foo", &[b"GET", b"foo"]).await.unwrap();
        assert_eq!(reply, Value::Bulk(Some(Bytes::from_static(b"v1"))));

        // ASK: asked once at B (after ASKING); the map keeps C.
        let to_b = b.clone();
        let (c, _tc) =
            fake_node(move |w| format!("-ASK {} {to_b}\r\n", key_slot(&w[1])).into_bytes()).await;
        let mut cluster = Cluster {
            seeds: vec![],
            slots: SlotMap { ranges: vec![(0, SLOTS - 1, c.clone())] },
            conns: HashMap::new(),
        };
        let reply = cluster.command(b"bar", &[b"GET", b"bar"]).await.unwrap();
        assert_eq!(reply, Value::Bulk(Some(Bytes::from_static(b"v1"))));
        assert_eq!(cluster.slots().master(key_slot(b"bar")), Some(c.as_str()));
    }

    #[tokio::test]
    async fn endless_redirects_give_up() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let self_addr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let shared = self_addr.clone();
        let (a, _t) = fake_node(move |w| {
            let me = shared.lock().unwrap().clone();
            format!("-MOVED {} {me}\r\n", key_slot(&w[1])).into_bytes()
        })
        .await;
        *self_addr.lock().unwrap() = a.clone();
        let mut cluster = Cluster {
            seeds: vec![],
            slots: SlotMap { ranges: vec![(0, SLOTS - 1, a)] },
            conns: HashMap::new(),
        };
        assert!(matches!(
            cluster.command(b"k", &[b"GET", b"k"]).await,
            Err(RespError::TooManyRedirects)
        ));
        // A redirect to a closed port is a connection error, not a hang.
        cluster.slots = SlotMap { ranges: vec![(0, SLOTS - 1, addr)] };
        assert!(matches!(cluster.command(b"k", &[b"GET", b"k"]).await, Err(RespError::Io { .. })));
    }
}
