//! The Redis client of `dhrt bench`: one connection ([`RespConn`]), and Redis Cluster
//! (the slot map a cluster run reads, [`Cluster`]; the lanes follow redirects themselves).
//!
//! It is hand-written on purpose: `dhrt bench` measures servers, so the client that
//! drives Redis should be as small and exact as the one that drives dhrt — commands
//! are encoded straight into a buffer, replies are parsed in place, and nothing is
//! allocated per request that the protocol does not need. It is not a general Redis
//! library: no RESP3, no pub/sub, no reconnects. The codec it speaks is
//! [`dhrt::resp`], the one dhrt's own Redis endpoint uses.
//!
//! [`key_slot`] is Redis Cluster's slot of a key (CRC16/XMODEM of the key, or of its
//! `{hash tag}`, mod 16384), [`SlotMap`] the answer of `CLUSTER SLOTS`, and
//! [`Redirect`] a parsed `MOVED`/`ASK` error.

use bytes::{Buf, BytesMut};
use dhrt::resp::{encode_command, parse, ProtocolError, Value};
use std::{collections::HashMap, fmt};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Number of hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// Why a command to Redis failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RespError {
    /// The bytes are not RESP2.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
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
    /// The cluster's slot map has no master for a slot.
    #[error("no master serves slot {0}; is the cluster complete (`redis-cli --cluster check`)?")]
    Unserved(u16),
}

/// The redirect `reply` asks for, if it is a `MOVED` or `ASK` error.
pub fn redirect(reply: &Value) -> Option<Redirect> {
    match reply {
        Value::Error(e) => Redirect::parse(e),
        _ => None,
    }
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
        let bad = |what: &str| RespError::Protocol(ProtocolError(format!("CLUSTER SLOTS: {what}")));
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
        let mut last = RespError::Protocol(ProtocolError("no seed address given".into()));
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

    async fn conn(&mut self, addr: &str) -> Result<&mut RespConn, RespError> {
        if !self.conns.contains_key(addr) {
            let c = RespConn::connect(addr).await?;
            self.conns.insert(addr.to_string(), c);
        }
        self.conns
            .get_mut(addr)
            .ok_or_else(|| RespError::Protocol(ProtocolError("connection vanished".into())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn whole(bytes: &[u8]) -> Value {
        let (v, used) = parse(bytes).unwrap().expect("complete");
        assert_eq!(used, bytes.len());
        v
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
            redirect(&whole(b"-MOVED 0 h:1\r\n")),
            Some(Redirect::Moved { slot: 0, addr: "h:1".into() })
        );
        assert_eq!(Redirect::parse("MOVED 16384 h:1"), None);
        assert_eq!(Redirect::parse("MOVED x h:1"), None);
        assert_eq!(Redirect::parse("MOVED 1"), None);
        assert_eq!(Redirect::parse("ERR MOVED 1 h:1"), None);
        assert_eq!(Redirect::parse("MOVED 1 nohostport"), None);
        assert_eq!(redirect(&Value::Simple("MOVED 1 h:1".into())), None);
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
}
