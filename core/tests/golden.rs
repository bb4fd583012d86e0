//! Golden tests of one node: text scripts that drive a single [`Node`] — node 1, over
//! the in-memory store (or, with `cluster … store=disk`, the fault-injecting store whose
//! commits the script makes) — with client requests, messages from *scripted peers* and
//! the passing of time, and print everything the node sends and answers, one line each.
//!
//! The scripts are `core/tests/golden/*` (the `goldenscript` format of toydb: commands,
//! `---`, the expected output). Each file is one `#[test]` below, named after it. The
//! commands and the output format are described in `docs/simulation.md`, "Golden tests
//! of one node", and at the top of [`Harness::run`].
//!
//! After a change of the node's behaviour, regenerate the expected outputs, then read
//! the diff as a review of the change:
//!
//! ```sh
//! UPDATE_GOLDENFILES=1 cargo test -p dhrt-core --features sim,testing --test golden
//! git diff core/tests/golden/
//! ```
//!
//! What the harness does on its own, so that scripts say only what matters:
//! - peers answer membership messages (a ping with an ack, a push-pull with their view)
//!   while they are up, and nothing once `kill`ed;
//! - peers answer anti-entropy sessions as replicas that agree with node 1 (their root
//!   is node 1's: `Done` at once), unless told `peer N syncs=ignore`; and the hand-off
//!   question "which collections do you hold?" with node 1's own list;
//! - membership and sync traffic are not printed unless shown (`show gossip,sync`).
//!
//! Everything is deterministic: fixed seeds, a fixed start (`@1000000`, in wall-clock
//! milliseconds), ordered maps, and request numbers and subscription ids printed as
//! small aliases (`req=1`, `sub=1`) in the order they first appear, so the output does
//! not depend on how the node numbers them.

use bytes::Bytes;
use dhrt_core::{
    clock::Timestamp,
    entry::{Entry, NodeId, Version},
    hash::Interval,
    membership::{Member, MembershipEvent, MembershipMessage, Status},
    node::{ClientId, Node, NodeConfig, NodeEvent, Output},
    proto::{
        client::{Consistency, Op, Reply},
        ClientRequest, ClientResponse, Message, ReplicaMessage, SyncBody, SyncMessage,
        WatchMessage,
    },
    ring::tokens_for,
    store::{faulty::FaultyStore, MemStore, Store, StoreError},
    Millis,
};
use goldenscript::{ArgumentConsumer, Command, Context};
use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;
use std::fmt::Write as _;

/// The wall-clock time a script starts at.
const T0: Millis = 1_000_000;
/// The node under test.
const ME: NodeId = NodeId(1);

type Res<T> = Result<T, Box<dyn Error>>;

/// A store the harness can run the node over.
trait GoldenStore: Store + Sized {
    fn fresh() -> Res<Self>;
}

impl GoldenStore for MemStore {
    fn fresh() -> Res<Self> {
        Ok(MemStore::new())
    }
}

impl GoldenStore for FaultyStore<MemStore> {
    fn fresh() -> Res<Self> {
        Ok(FaultyStore::new(MemStore::new())?)
    }
}

/// One scripted peer, as the harness plays it.
#[derive(Debug)]
struct Peer {
    /// Its own membership record (what it sends as `sender`).
    member: Member,
    /// Whether it receives and answers anything.
    up: bool,
    /// Whether it answers anti-entropy sessions (as a replica that agrees).
    syncs: bool,
    /// The epoch of its watch feeds.
    epoch: Timestamp,
    /// The next batch number of each of its feeds, by real subscription id.
    next_seq: BTreeMap<u64, u64>,
}

/// What node 1 asked a peer and has not been answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    Write,
    Read,
    ReadVersions,
    RangeRead,
}

/// Output kinds a script may hide or show.
const CATEGORIES: [&str; 4] = ["gossip", "sync", "persist", "membership"];

/// Numbers the node makes up (request numbers, subscription ids), printed as small
/// aliases in the order they first appear.
#[derive(Debug, Default)]
struct Aliases {
    to_alias: BTreeMap<u64, u64>,
    to_real: BTreeMap<u64, u64>,
}

impl Aliases {
    fn alias(&mut self, real: u64) -> u64 {
        let next = self.to_alias.len() as u64 + 1;
        let alias = *self.to_alias.entry(real).or_insert(next);
        self.to_real.insert(alias, real);
        alias
    }

    fn real(&self, alias: u64) -> Res<u64> {
        self.to_real.get(&alias).copied().ok_or_else(|| format!("no such alias {alias}").into())
    }
}

/// The node under test, its peers and its clock.
struct Harness<S: GoldenStore> {
    node: Node<S>,
    now: Millis,
    peers: BTreeMap<NodeId, Peer>,
    reqs: Aliases,
    subs: Aliases,
    /// Questions sent to peers and not answered: (peer, real request) → (what, collection,
    /// keys).
    asked: BTreeMap<(NodeId, u64), (Asked, String, Vec<Bytes>)>,
    /// The next request id of each client.
    client_ids: BTreeMap<ClientId, u64>,
    /// Request numbers the scripted peers use when they ask node 1 something.
    peer_req: u64,
    hidden: BTreeSet<&'static str>,
    /// Whether `tick` prints the time before what it shows.
    timed: bool,
}

/// The runner: no node until `cluster` made one.
#[derive(Default)]
enum Golden {
    #[default]
    Empty,
    Mem(Box<Harness<MemStore>>),
    Disk(Box<Harness<FaultyStore<MemStore>>>),
}

impl goldenscript::Runner for Golden {
    type Command = Command;

    fn run(&mut self, command: &Command, _: &Context) -> Res<String> {
        match self {
            Golden::Mem(h) => h.run(command),
            Golden::Disk(h) => h.run(command),
            Golden::Empty if command.name == "cluster" => {
                let mut args = command.consume_args();
                let disk = args.take_key("store").map(|s| s == "disk").unwrap_or(false);
                let mut out = String::new();
                if disk {
                    let h = Harness::start(&mut args, &mut out)?;
                    *self = Golden::Disk(Box::new(h));
                } else {
                    let h = Harness::start(&mut args, &mut out)?;
                    *self = Golden::Mem(Box::new(h));
                }
                Ok(out)
            }
            Golden::Empty => Err("the first command must be `cluster N`".into()),
        }
    }
}

/// Parses `ms` or `ms.counter`.
fn parse_ts(s: &str) -> Res<Timestamp> {
    let (ms, counter) = s.split_once('.').unwrap_or((s, "0"));
    Ok(Timestamp::from_parts(ms.parse()?, counter.parse()?))
}

fn parse_consistency(s: Option<&str>) -> Res<Consistency> {
    Ok(s.map(str::parse).transpose().map_err(|e| format!("{e}"))?.unwrap_or_default())
}

fn node_name(id: NodeId) -> String {
    format!("n{}", id.0)
}

/// A key as it reads: bare when printable and plain, quoted otherwise.
fn key_text(key: &[u8]) -> String {
    let plain = !key.is_empty()
        && key.len() <= 40
        && key.iter().all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(b));
    if plain {
        String::from_utf8_lossy(key).into_owned()
    } else if key.len() > 40 {
        format!("{:?}…({} bytes)", String::from_utf8_lossy(&key[..16]), key.len())
    } else {
        format!("{:?}", String::from_utf8_lossy(key))
    }
}

fn value_text(value: &[u8]) -> String {
    if value.len() > 40 {
        format!("{:?}…({} bytes)", String::from_utf8_lossy(&value[..16]), value.len())
    } else {
        format!("{:?}", String::from_utf8_lossy(value))
    }
}

fn entry_text(e: &Entry) -> String {
    let mut s = match &e.value {
        Some(v) => value_text(v),
        None => "deleted".to_string(),
    };
    write!(s, " @{} {}", e.ts, node_name(e.origin)).unwrap();
    if let Some(x) = e.expires {
        write!(s, " expires={x}").unwrap();
    }
    s
}

fn version_text(v: &Option<Version>) -> String {
    match v {
        Some(v) if v.tombstone => format!("deleted @{} {}", v.ts, node_name(v.origin)),
        Some(v) => format!("@{} {}", v.ts, node_name(v.origin)),
        None => "none".to_string(),
    }
}

fn records_text(collection: &str, records: &[(Bytes, Entry)]) -> String {
    let each: Vec<String> = records
        .iter()
        .map(|(k, e)| format!("{collection}/{} {}", key_text(k), entry_text(e)))
        .collect();
    if each.is_empty() {
        format!("{collection} (nothing)")
    } else {
        each.join("; ")
    }
}

fn keys_text(collection: &str, keys: &[Bytes]) -> String {
    let each: Vec<String> = keys.iter().map(|k| format!("{collection}/{}", key_text(k))).collect();
    each.join(" ")
}

fn reply_text(r: &Reply) -> String {
    match r {
        Reply::Value { value: Some(v), ts, expires } => {
            let ts = ts.map(|t| format!(" @{t}")).unwrap_or_default();
            let exp = expires.map(|x| format!(" expires={x}")).unwrap_or_default();
            format!("Value {}{ts}{exp}", value_text(v))
        }
        Reply::Value { value: None, ts: Some(t), .. } => format!("Value none (deleted @{t})"),
        Reply::Value { value: None, ts: None, .. } => "Value none".to_string(),
        Reply::Ok => "Ok".to_string(),
        Reply::Written { ts } => format!("Written @{ts}"),
        Reply::Values { values } => {
            let each: Vec<String> = values
                .iter()
                .map(|v| v.as_ref().map_or("none".into(), |v| value_text(v)))
                .collect();
            format!("Values [{}]", each.join(", "))
        }
        Reply::Page { items, cursor } => {
            let each: Vec<String> =
                items.iter().map(|(k, v)| format!("{}={}", key_text(k), value_text(v))).collect();
            let more = if cursor.is_some() { " (more)" } else { "" };
            format!("Page [{}]{more}", each.join(", "))
        }
        Reply::Event { collection, key, value, ts, origin, expires } => {
            let e = Entry { value: value.clone(), ts: *ts, origin: *origin, expires: *expires };
            format!("Event {collection}/{} {}", key_text(key), entry_text(&e))
        }
        Reply::Error { code, message, acked } => {
            let acked = acked.map(|(a, r)| format!(" acked={a}/{r}")).unwrap_or_default();
            format!("Error {code}{acked}: {message}")
        }
        other => format!("{other:?}"),
    }
}

impl<S: GoldenStore> Harness<S> {
    /// `cluster N [replicas=…] [vnodes=…] [request_timeout_ms=…] …`: node 1 serving
    /// with members 2..=N alive.
    fn start(args: &mut ArgumentConsumer, out: &mut String) -> Res<Self> {
        let n: u64 = args.next_pos().ok_or("cluster: how many nodes?")?.parse()?;
        let mut config = NodeConfig::new(ME, "n1:7453");
        config.seed = 7;
        // Token moves would query the peers' loads every minute; not what these scripts
        // are about.
        config.migration.enabled = false;
        while let Some((key, value)) = args.next_key() {
            match key {
                "replicas" => config.replicas = value.parse()?,
                "vnodes" => config.vnodes = value.parse()?,
                "request_timeout_ms" => config.request_timeout_ms = value.parse()?,
                "max_value_bytes" => config.max_value_bytes = value.parse()?,
                "sync_interval_ms" => config.sync_interval_ms = value.parse()?,
                "sync_timeout_ms" => config.sync_timeout_ms = value.parse()?,
                "tombstone_grace_ms" => config.tombstone_grace_ms = value.parse()?,
                "gc_interval_ms" => config.gc_interval_ms = value.parse()?,
                "ring_delay_ms" => config.ring_delay_ms = value.parse()?,
                other => return Err(format!("cluster: unknown setting {other}").into()),
            }
        }
        args.reject_next()?;
        let vnodes = config.vnodes;
        let mut node = Node::new(config, S::fresh()?)?;
        // Alone, the node's hand-off round is empty: it serves at once.
        node.tick(T0);
        while node.poll_output().is_some() {}
        let mut h = Harness {
            node,
            now: T0,
            peers: BTreeMap::new(),
            reqs: Aliases::default(),
            subs: Aliases::default(),
            asked: BTreeMap::new(),
            client_ids: BTreeMap::new(),
            peer_req: 0,
            hidden: ["gossip", "sync", "persist"].into_iter().collect(),
            timed: false,
        };
        for i in 2..=n {
            let id = NodeId(i);
            // Past incarnation 0: a member that served before, an owner of its tokens.
            let member = Member::new(id, format!("n{i}:7453"), tokens_for(id, vnodes))
                .with(Status::Alive, 1);
            let epoch = Timestamp::from_parts(T0 - 1_000, i as u16);
            let peer = Peer { member, up: true, syncs: true, epoch, next_seq: BTreeMap::new() };
            h.peers.insert(id, peer);
        }
        let ids: Vec<NodeId> = h.peers.keys().copied().collect();
        let mut quiet = String::new();
        for id in ids {
            let sender = h.peers[&id].member.clone();
            let msg = MembershipMessage::Gossip { sender, updates: vec![], clock: None };
            h.node.handle_peer(h.now, id, Message::Gossip(msg));
            h.settle(&mut quiet);
        }
        h.members(out);
        Ok(h)
    }

    /// Runs one command. Commands (`[…]` optional; `N` a node id, `ID` a client request
    /// id, `R` a request alias as printed in `req=R`):
    ///
    /// - client requests, by client 1 unless `client=C`, on collection `users` unless
    ///   `collection=…`, at `consistency=default` unless given:
    ///   `get KEY`, `set KEY VALUE [ttl=MS] [bytes=N]` (`bytes` makes a value of N
    ///   bytes; `key_bytes=N` instead of `KEY` a key of N bytes), `del KEY`, `scan [prefix=P] [limit=L]`, `watch [prefix=P]`,
    ///   `unwatch ID`, `gone` (the client disconnects);
    /// - what peers answer: `ack from=N req=R [error=…] [newer=TS]`;
    ///   `reply from=N req=R (missing | value=V ts=TS [origin=N] [deleted] [expires=MS])`
    ///   answers a read, a version read or a range read; `fail from=N req=R [error=…]`;
    ///   `changes from=N sub=S [seq=Q] [key=K value=V ts=TS [origin=N] [deleted]] [lagged]`;
    /// - what peers ask: `peer-write from=N KEY (VALUE|deleted) ts=TS [origin=N]`,
    ///   `peer-read from=N KEY`;
    /// - peers' fates: `kill N`, `revive N`, `resynced N`, `peer N syncs=agree|ignore`;
    /// - time and durability: `tick MS`, `commit [fail]`;
    /// - looking: `state`, `members`, `dump [collection]`, `where KEY…` (ring
    ///   positions), `deadlines` (when the watches next need the node), `show CATS`,
    ///   `hide CATS`
    ///   (`gossip`, `sync`, `persist`, `membership`).
    fn run(&mut self, command: &Command) -> Res<String> {
        let mut out = String::new();
        let mut args = command.consume_args();
        let args = &mut args;
        match command.name.as_str() {
            "get" | "set" | "del" | "scan" | "watch" | "unwatch" | "gone" => {
                self.client(&command.name, args, &mut out)?
            }
            "ack" | "reply" | "fail" => self.answer(&command.name, args, &mut out)?,
            "changes" => self.changes(args, &mut out)?,
            "peer-write" | "peer-read" => self.peer_asks(&command.name, args, &mut out)?,
            "kill" | "revive" => {
                let id = NodeId(args.next_pos().ok_or("which node?")?.parse()?);
                args.reject_next()?;
                let up = command.name == "revive";
                self.set_up(id, up, &mut out)?;
            }
            "resynced" => {
                let id = NodeId(args.next_pos().ok_or("which node?")?.parse()?);
                args.reject_next()?;
                let peer = self.peers.get(&id).ok_or("no such peer")?;
                let record = peer.member.with(Status::Alive, peer.member.incarnation + 1);
                self.announce(id, record, &mut out)?;
            }
            "peer" => {
                let id = NodeId(args.next_pos().ok_or("which node?")?.parse()?);
                let syncs = args.take_key("syncs").ok_or("peer N syncs=agree|ignore")?;
                args.reject_next()?;
                let peer = self.peers.get_mut(&id).ok_or("no such peer")?;
                peer.syncs = match syncs {
                    "agree" => true,
                    "ignore" => false,
                    other => return Err(format!("syncs={other}?").into()),
                };
            }
            "leave" => {
                args.reject_next()?;
                self.node.leave(self.now);
                self.settle(&mut out);
                let left = self.node.left();
                writeln!(out, "left={left} handed_off={}", self.node.handed_off())?;
            }
            "remove" => {
                let id = NodeId(args.next_pos().ok_or("which node?")?.parse()?);
                let force = args.next_pos() == Some("force");
                args.reject_next()?;
                match self.node.remove_member(self.now, id, force) {
                    Ok(()) => writeln!(out, "removing {}", node_name(id))?,
                    Err(e) => writeln!(out, "refused: {e}")?,
                }
                self.settle(&mut out);
            }
            "tick" => {
                let ms: Millis = args.next_pos().ok_or("tick MS")?.parse()?;
                args.reject_next()?;
                self.tick(ms, &mut out);
            }
            "commit" => {
                let fail = args.next_pos() == Some("fail");
                args.reject_next()?;
                self.commit(fail, &mut out)?;
            }
            "state" => {
                args.reject_next()?;
                self.state(&mut out);
            }
            "members" => {
                args.reject_next()?;
                self.members(&mut out);
            }
            "deadlines" => {
                args.reject_next()?;
                let at = self.node.watches().next_deadline();
                writeln!(out, "watches {}", at.map_or("none".to_string(), |d| format!("@{d}")))?;
            }
            "dump" => {
                let collection = args.next_pos().unwrap_or("users").to_string();
                args.reject_next()?;
                self.dump(&collection, &mut out)?;
            }
            "where" => {
                let collection = args.take_key("collection").unwrap_or("users").to_string();
                while let Some(key) = args.next_pos() {
                    let pos = self.node.replica().position(&collection, key.as_bytes());
                    writeln!(out, "{collection}/{key} at {pos:#018x}")?;
                }
            }
            "show" | "hide" => {
                while let Some(cat) = args.next_pos() {
                    for c in cat.split(',') {
                        let c = CATEGORIES.iter().find(|k| **k == c).ok_or("unknown category")?;
                        if command.name == "show" {
                            self.hidden.remove(c);
                        } else {
                            self.hidden.insert(c);
                        }
                    }
                }
            }
            other => return Err(format!("unknown command {other}").into()),
        }
        Ok(out)
    }

    /// A client's request.
    fn client(&mut self, name: &str, args: &mut ArgumentConsumer, out: &mut String) -> Res<()> {
        let client: ClientId = args.take_key("client").map(str::parse).transpose()?.unwrap_or(1);
        let collection = args.take_key("collection").unwrap_or("users").to_string();
        let consistency = parse_consistency(args.take_key("consistency"))?;
        // `key_bytes=N`: a key of N bytes, instead of one given.
        let long_key = args.take_key("key_bytes").map(str::parse::<usize>).transpose()?;
        let key = |args: &mut ArgumentConsumer| -> Res<Bytes> {
            match long_key {
                Some(n) => Ok(Bytes::from(vec![b'k'; n])),
                None => Ok(Bytes::copy_from_slice(args.next_pos().ok_or("which key?")?.as_bytes())),
            }
        };
        let op = match name {
            "get" => Op::Get { collection, key: key(args)?, consistency },
            "set" => {
                let key = key(args)?;
                let ttl_ms = args.take_key("ttl").map(str::parse).transpose()?;
                let value = match args.take_key("bytes") {
                    Some(n) => Bytes::from(vec![b'x'; n.parse()?]),
                    None => Bytes::copy_from_slice(args.next_pos().ok_or("value?")?.as_bytes()),
                };
                Op::Set { collection, key, value, consistency, ttl_ms }
            }
            "del" => Op::Del { collection, key: key(args)?, consistency },
            "scan" => {
                let prefix = args.take_key("prefix").map(|p| Bytes::copy_from_slice(p.as_bytes()));
                let limit = args.take_key("limit").map(str::parse).transpose()?.unwrap_or(0);
                Op::Scan { collection, cursor: None, prefix, limit, consistency }
            }
            "watch" => {
                let prefix = args.take_key("prefix").map(|p| Bytes::copy_from_slice(p.as_bytes()));
                Op::Watch { collection, prefix }
            }
            "unwatch" => Op::Unwatch { watch: args.next_pos().ok_or("which watch?")?.parse()? },
            "gone" => {
                args.reject_next()?;
                self.node.client_gone(self.now, client);
                self.settle(out);
                return Ok(());
            }
            _ => unreachable!(),
        };
        args.reject_next()?;
        let next = self.client_ids.entry(client).or_insert(0);
        *next += 1;
        let id = *next;
        self.node.handle_client(self.now, client, ClientRequest { id, op, seen: None });
        self.settle(out);
        Ok(())
    }

    /// The request alias `req=R` (or the last question asked of `from`) and what it was.
    fn asked_of(
        &self,
        from: NodeId,
        args: &mut ArgumentConsumer,
    ) -> Res<(u64, Asked, String, Vec<Bytes>)> {
        let real = match args.take_key("req") {
            Some(r) => self.reqs.real(r.parse()?)?,
            None => {
                // The latest: the largest alias (aliases follow the order of sending).
                let of_peer = self.asked.keys().filter(|(to, _)| *to == from);
                let last = of_peer.max_by_key(|(_, r)| self.reqs.to_alias.get(r).copied());
                last.map(|(_, r)| *r).ok_or("nothing asked of that peer")?
            }
        };
        let (what, collection, keys) =
            self.asked.get(&(from, real)).cloned().ok_or("that peer was not asked that")?;
        Ok((real, what, collection, keys))
    }

    /// An entry described by `value=… ts=… [origin=N] [deleted] [expires=MS]`, or `None`
    /// for `missing`.
    fn entry_arg(from: NodeId, args: &mut ArgumentConsumer) -> Res<Option<Entry>> {
        let mut missing = false;
        let mut deleted = false;
        let mut value = args.take_key("value").map(|v| Bytes::copy_from_slice(v.as_bytes()));
        while let Some(flag) = args.next_pos() {
            match flag {
                "missing" => missing = true,
                "deleted" => deleted = true,
                other if value.is_none() => value = Some(Bytes::copy_from_slice(other.as_bytes())),
                other => return Err(format!("unexpected {other}").into()),
            }
        }
        let ts = args.take_key("ts").map(parse_ts).transpose()?;
        let origin = args.take_key("origin").map(str::parse).transpose()?.map_or(from, NodeId);
        let expires = args.take_key("expires").map(str::parse).transpose()?;
        if missing {
            return Ok(None);
        }
        let ts = ts.ok_or("ts=… (or missing)")?;
        let value = if deleted { None } else { Some(value.ok_or("value=… or deleted")?) };
        Ok(Some(Entry { value, ts, origin, expires }))
    }

    /// `ack`, `reply`, `fail`: a peer answers a question node 1 asked it.
    fn answer(&mut self, name: &str, args: &mut ArgumentConsumer, out: &mut String) -> Res<()> {
        let from = NodeId(args.take_key("from").ok_or("from=N")?.parse()?);
        let (req, what, _, keys) = self.asked_of(from, args)?;
        let msg = match (name, what) {
            ("fail", Asked::RangeRead) => {
                let error = args.take_key("error").unwrap_or("storage failure: EIO").to_string();
                ReplicaMessage::RangeFailed { req, error }
            }
            ("fail", _) => {
                let error = args.take_key("error").unwrap_or("storage failure: EIO").to_string();
                ReplicaMessage::ReadFailed { req, error }
            }
            (_, Asked::Write) => {
                let error = args.take_key("error").map(str::to_string);
                let newer = args.take_key("newer").map(parse_ts).transpose()?;
                ReplicaMessage::WriteAck { req, error, newer }
            }
            ("ack", _) => return Err("ack answers writes; use reply".into()),
            (_, Asked::Read) => {
                let entry = Self::entry_arg(from, args)?;
                let entries = keys.iter().map(|_| entry.clone()).collect();
                ReplicaMessage::ReadReply { req, entries, changing: false }
            }
            (_, Asked::ReadVersions) => {
                let version = Self::entry_arg(from, args)?.map(|e| e.version());
                let versions = keys.iter().map(|_| version).collect();
                ReplicaMessage::VersionsReply { req, versions, changing: false }
            }
            (_, Asked::RangeRead) => {
                let key = args.take_key("key").map(|k| Bytes::copy_from_slice(k.as_bytes()));
                let records = match key {
                    Some(k) => vec![(k, Self::entry_arg(from, args)?.ok_or("an entry")?)],
                    None => vec![],
                };
                ReplicaMessage::RangeReply { req, records, more: false, changing: false }
            }
        };
        args.reject_next()?;
        self.asked.remove(&(from, req));
        self.deliver(from, Message::Replica(msg), out);
        Ok(())
    }

    /// `changes from=N sub=S …`: a batch of a peer's watch feed.
    fn changes(&mut self, args: &mut ArgumentConsumer, out: &mut String) -> Res<()> {
        let from = NodeId(args.take_key("from").ok_or("from=N")?.parse()?);
        let sub = self.subs.real(args.take_key("sub").ok_or("sub=S")?.parse()?)?;
        let seq = args.take_key("seq").map(str::parse).transpose()?;
        let key = args.take_key("key").map(|k| Bytes::copy_from_slice(k.as_bytes()));
        let mut lagged = false;
        let items = match key {
            Some(k) => {
                let entry = Self::entry_arg(from, args)?.ok_or("an entry")?;
                vec![(k, entry)]
            }
            None => {
                lagged = args.next_pos() == Some("lagged");
                vec![]
            }
        };
        args.reject_next()?;
        let peer = self.peers.get_mut(&from).ok_or("no such peer")?;
        let next = peer.next_seq.entry(sub).or_insert(1);
        let seq = seq.unwrap_or(*next);
        *next = seq + 1;
        let msg = WatchMessage::Changes { sub, epoch: peer.epoch, seq, items, lagged };
        self.deliver(from, Message::Watch(msg), out);
        Ok(())
    }

    /// `peer-write`, `peer-read`: a peer coordinates something node 1 replicates.
    fn peer_asks(&mut self, name: &str, args: &mut ArgumentConsumer, out: &mut String) -> Res<()> {
        let from = NodeId(args.take_key("from").ok_or("from=N")?.parse()?);
        let collection = args.take_key("collection").unwrap_or("users").to_string();
        let key = Bytes::copy_from_slice(args.next_pos().ok_or("which key?")?.as_bytes());
        self.peer_req += 1;
        let req = 900_000 + self.peer_req;
        self.reqs.alias(req);
        let msg = if name == "peer-write" {
            let entry = Self::entry_arg(from, args)?.ok_or("an entry")?;
            ReplicaMessage::Write { req, collection, records: vec![(key, entry)] }
        } else {
            ReplicaMessage::Read { req, collection, keys: vec![key] }
        };
        args.reject_next()?;
        self.deliver(from, Message::Replica(msg), out);
        Ok(())
    }

    /// `kill N` / `revive N`. A revived peer announces itself above what node 1 believes
    /// of it: `alive` over a suspicion, `syncing` over a death (a dead member re-syncs
    /// before it serves: `resynced N` then announces it `alive`).
    fn set_up(&mut self, id: NodeId, up: bool, out: &mut String) -> Res<()> {
        let peer = self.peers.get_mut(&id).ok_or("no such peer")?;
        peer.up = up;
        if !up {
            return Ok(());
        }
        let seen = self.node.membership().member(id).cloned();
        let peer = self.peers.get_mut(&id).ok_or("no such peer")?;
        let inc = seen.as_ref().map_or(0, |m| m.incarnation).max(peer.member.incarnation);
        let record = match seen.map(|m| m.status) {
            Some(Status::Dead | Status::Left) => peer.member.with(Status::Syncing, inc + 1),
            Some(Status::Suspect) => peer.member.with(Status::Alive, inc + 1),
            _ => return Ok(()),
        };
        self.announce(id, record, out)
    }

    /// Peer `id` announces `record` (its own new record) to node 1.
    fn announce(&mut self, id: NodeId, record: Member, out: &mut String) -> Res<()> {
        self.peers.get_mut(&id).ok_or("no such peer")?.member = record.clone();
        let msg = MembershipMessage::Gossip { sender: record, updates: vec![], clock: None };
        self.deliver(id, Message::Gossip(msg), out);
        Ok(())
    }

    /// Advances the clock by `ms`, running the node's timers at each of its deadlines
    /// on the way (as a driver would), then at the end.
    fn tick(&mut self, ms: Millis, out: &mut String) {
        let end = self.now + ms;
        self.timed = true;
        loop {
            let at = self.node.next_deadline().map_or(end, |d| d.max(self.now));
            if at >= end {
                break;
            }
            self.now = at;
            self.node.tick(at);
            self.settle(out);
        }
        self.now = end;
        self.node.tick(end);
        self.settle(out);
        self.timed = false;
        let _ = writeln!(out, "now @{}", self.now);
    }

    /// `commit`: makes what the node wrote durable (the store waits for nothing over
    /// `MemStore`); `commit fail`: the commit fails.
    fn commit(&mut self, fail: bool, out: &mut String) -> Res<()> {
        let commit = self.node.flush_begin(self.now)?;
        let epoch = commit.epoch;
        match commit.job {
            None if fail => return Err("nothing to commit".into()),
            None => {}
            Some(_) if fail => {
                let err = StoreError::Io("injected: fsync failed".into());
                self.node.committed(self.now, epoch, Err(err));
            }
            Some(job) => {
                let result = job.wait();
                self.node.committed(self.now, epoch, result);
            }
        }
        writeln!(out, "commit {epoch} {}", if fail { "failed" } else { "durable" })?;
        self.settle(out);
        Ok(())
    }

    /// Delivers `msg` from peer `from` to the node and settles.
    fn deliver(&mut self, from: NodeId, msg: Message, out: &mut String) {
        self.node.handle_peer(self.now, from, msg);
        self.settle(out);
    }

    /// Drains the node's outputs, printing what is shown and answering, as the peers,
    /// what the harness answers by itself; until nothing is left.
    fn settle(&mut self, out: &mut String) {
        loop {
            let mut answers = Vec::new();
            while let Some(o) = self.node.poll_output() {
                self.output(o, &mut answers, out);
            }
            if answers.is_empty() {
                return;
            }
            for (from, msg) in answers {
                if let Some(line) = self.peer_line(from, &msg) {
                    self.line(out, line);
                }
                self.node.handle_peer(self.now, from, msg);
            }
        }
    }

    fn line(&self, out: &mut String, line: String) {
        if self.timed {
            let _ = writeln!(out, "@{} {line}", self.now);
        } else {
            let _ = writeln!(out, "{line}");
        }
    }

    /// Prints one output of the node (unless hidden) and queues what peers answer by
    /// themselves.
    fn output(&mut self, o: Output, answers: &mut Vec<(NodeId, Message)>, out: &mut String) {
        match o {
            Output::Send { to, msg, .. } => {
                let up = self.peers.get(&to).is_some_and(|p| p.up);
                let (cat, text) = self.message_text(&msg);
                if !self.hidden.contains(cat) {
                    let lost = if up { "" } else { " (lost: the peer is down)" };
                    self.line(out, format!("{} → {} {text}{lost}", node_name(ME), node_name(to)));
                }
                if up {
                    self.note_asked(to, &msg);
                    if let Some(answer) = self.auto_answer(to, &msg) {
                        answers.push((to, answer));
                    }
                }
            }
            Output::SendAddr { addr, msg } => {
                let (cat, text) = self.message_text(&msg);
                if !self.hidden.contains(cat) {
                    self.line(out, format!("{} → {addr} {text}", node_name(ME)));
                }
            }
            Output::Reply { client, resp: ClientResponse { id, result, .. } } => {
                self.line(out, format!("client {client} ← id={id} {}", reply_text(&result)));
            }
            Output::Persist(state) => {
                if !self.hidden.contains("persist") {
                    let sync = state.last_full_sync_ms.map_or("never".into(), |t| t.to_string());
                    self.line(out, format!("persist last_full_sync=@{sync}"));
                }
            }
            Output::Event(e) => {
                let membership = matches!(e, NodeEvent::Membership(_));
                let sync = matches!(e, NodeEvent::SyncFailed { .. } | NodeEvent::Handoff(_));
                let hidden = (membership && self.hidden.contains("membership"))
                    || (sync && self.hidden.contains("sync"));
                if !hidden {
                    self.line(out, format!("event {}", event_text(&e)));
                }
            }
        }
    }

    /// Remembers the questions a peer is expected to answer by script.
    fn note_asked(&mut self, to: NodeId, msg: &Message) {
        let Message::Replica(m) = msg else { return };
        let (req, what, collection, keys) = match m {
            ReplicaMessage::Write { req, collection, records } => {
                (req, Asked::Write, collection, records.iter().map(|(k, _)| k.clone()).collect())
            }
            ReplicaMessage::Read { req, collection, keys } => {
                (req, Asked::Read, collection, keys.clone())
            }
            ReplicaMessage::ReadVersions { req, collection, keys } => {
                (req, Asked::ReadVersions, collection, keys.clone())
            }
            ReplicaMessage::RangeRead { req, collection, .. } => {
                (req, Asked::RangeRead, collection, vec![])
            }
            _ => return,
        };
        self.asked.insert((to, *req), (what, collection.clone(), keys));
    }

    /// What peer `to` answers by itself: membership, and anti-entropy as a replica that
    /// agrees.
    fn auto_answer(&self, to: NodeId, msg: &Message) -> Option<Message> {
        let peer = &self.peers.get(&to)?;
        let sender = peer.member.clone();
        match msg {
            Message::Gossip(MembershipMessage::Ping { seq, .. }) => {
                Some(Message::Gossip(MembershipMessage::Ack {
                    seq: *seq,
                    on_behalf: None,
                    sender,
                    updates: vec![],
                    clock: None,
                }))
            }
            Message::Gossip(MembershipMessage::PingReq { seq, target, .. }) => {
                let target_up = self.peers.get(target).is_some_and(|p| p.up);
                target_up.then(|| {
                    Message::Gossip(MembershipMessage::Ack {
                        seq: *seq,
                        on_behalf: Some(*target),
                        sender,
                        updates: vec![],
                        clock: None,
                    })
                })
            }
            Message::Gossip(MembershipMessage::PushPull { reply: true, .. }) => {
                let members = self.peers.values().map(|p| p.member.clone()).collect();
                Some(Message::Gossip(MembershipMessage::PushPull {
                    members,
                    reply: false,
                    clock: None,
                    partial: false,
                }))
            }
            Message::Sync(SyncMessage { session, body: SyncBody::Begin { .. } }) if peer.syncs => {
                Some(Message::Sync(SyncMessage { session: *session, body: SyncBody::Done }))
            }
            Message::Replica(ReplicaMessage::RemovalHandOff { req, member }) if peer.syncs => {
                // A peer whose sessions agree has nothing to push: handed off at once.
                let answer =
                    ReplicaMessage::RemovalHandedOff { req: *req, member: *member, ok: true };
                Some(Message::Replica(answer))
            }
            Message::Replica(ReplicaMessage::ListCollections { req }) if peer.syncs => {
                let names = self.node.replica().store().collections().unwrap_or_default();
                Some(Message::Replica(ReplicaMessage::CollectionList { req: *req, names }))
            }
            _ => None,
        }
    }

    /// A message a peer sent by itself, as printed when its category is shown.
    fn peer_line(&mut self, from: NodeId, msg: &Message) -> Option<String> {
        let (cat, text) = self.message_text(msg);
        (!self.hidden.contains(cat))
            .then(|| format!("{} → {} {text}", node_name(from), node_name(ME)))
    }

    /// A message's category and one line of text.
    fn message_text(&mut self, msg: &Message) -> (&'static str, String) {
        match msg {
            Message::Gossip(m) => ("gossip", gossip_text(m)),
            Message::Sync(SyncMessage { body, .. }) => {
                let text = match body {
                    SyncBody::Begin { collection, range, .. } => {
                        format!("Sync Begin {collection} {range}")
                    }
                    SyncBody::Step { items } => format!("Sync Step ({} items)", items.len()),
                    SyncBody::Done => "Sync Done".to_string(),
                    SyncBody::Abort { reason } => format!("Sync Abort: {reason}"),
                };
                ("sync", text)
            }
            Message::Replica(m) => self.replica_text(m),
            Message::Watch(m) => ("watch", self.watch_text(m)),
            Message::Request(r) => ("client", format!("Request {r:?}")),
            Message::Response(r) => ("client", format!("Response {r:?}")),
        }
    }

    fn replica_text(&mut self, m: &ReplicaMessage) -> (&'static str, String) {
        let text = match m {
            ReplicaMessage::Write { req, collection, records } => {
                format!("Write req={} {}", self.reqs.alias(*req), records_text(collection, records))
            }
            ReplicaMessage::WriteAck { req, error, newer } => {
                let mut s = format!("WriteAck req={}", self.reqs.alias(*req));
                match error {
                    Some(e) => write!(s, " refused: {e}").unwrap(),
                    None => s.push_str(" ok"),
                }
                if let Some(t) = newer {
                    write!(s, " newer=@{t}").unwrap();
                }
                s
            }
            ReplicaMessage::Read { req, collection, keys } => {
                format!("Read req={} {}", self.reqs.alias(*req), keys_text(collection, keys))
            }
            ReplicaMessage::ReadVersions { req, collection, keys } => {
                format!(
                    "ReadVersions req={} {}",
                    self.reqs.alias(*req),
                    keys_text(collection, keys)
                )
            }
            ReplicaMessage::ReadReply { req, entries, changing } => {
                let each: Vec<String> =
                    entries.iter().map(|e| e.as_ref().map_or("none".into(), entry_text)).collect();
                let changing = if *changing { " (changing)" } else { "" };
                format!("ReadReply req={} [{}]{changing}", self.reqs.alias(*req), each.join(", "))
            }
            ReplicaMessage::VersionsReply { req, versions, changing } => {
                let each: Vec<String> = versions.iter().map(version_text).collect();
                let changing = if *changing { " (changing)" } else { "" };
                let alias = self.reqs.alias(*req);
                format!("VersionsReply req={alias} [{}]{changing}", each.join(", "))
            }
            ReplicaMessage::Repair { collection, records } => {
                format!("Repair {}", records_text(collection, records))
            }
            ReplicaMessage::ReadFailed { req, error } => {
                format!("ReadFailed req={}: {error}", self.reqs.alias(*req))
            }
            ReplicaMessage::RangeRead { req, collection, interval, after, limit } => {
                let after = after.as_ref().map(|(_, k)| format!(" after {}", key_text(k)));
                let alias = self.reqs.alias(*req);
                let full = if *interval == Interval::full() {
                    "(full ring)".into()
                } else {
                    interval.to_string()
                };
                format!(
                    "RangeRead req={alias} {collection} {full}{} limit={limit}",
                    after.unwrap_or_default()
                )
            }
            ReplicaMessage::RangeReply { req, records, more, .. } => {
                let more = if *more { " (more)" } else { "" };
                let alias = self.reqs.alias(*req);
                format!("RangeReply req={alias} {}{more}", records.len())
            }
            ReplicaMessage::RangeFailed { req, error } => {
                format!("RangeFailed req={}: {error}", self.reqs.alias(*req))
            }
            ReplicaMessage::RemovalHandOff { req, member } => {
                format!("RemovalHandOff req={} of {}", self.reqs.alias(*req), node_name(*member))
            }
            ReplicaMessage::RemovalHandedOff { req, member, ok } => {
                let alias = self.reqs.alias(*req);
                format!("RemovalHandedOff req={alias} of {} ok={ok}", node_name(*member))
            }
            ReplicaMessage::ListCollections { .. } => return ("sync", "ListCollections".into()),
            ReplicaMessage::CollectionList { names, .. } => {
                return ("sync", format!("CollectionList {names:?}"))
            }
            other => format!("{other:?}"),
        };
        ("replica", text)
    }

    fn watch_text(&mut self, m: &WatchMessage) -> String {
        match m {
            WatchMessage::Subscribe { subs } => {
                let each: Vec<String> = subs
                    .iter()
                    .map(|s| {
                        let prefix = s
                            .prefix
                            .as_ref()
                            .map(|p| format!(" prefix={}", key_text(p)))
                            .unwrap_or_default();
                        let resume = if s.resume.is_some() { " (resume)" } else { "" };
                        format!("sub={} {}{prefix}{resume}", self.subs.alias(s.sub), s.collection)
                    })
                    .collect();
                format!("Subscribe {}", each.join(", "))
            }
            WatchMessage::Unsubscribe { subs } => {
                let each: Vec<String> =
                    subs.iter().map(|s| format!("sub={}", self.subs.alias(*s))).collect();
                format!("Unsubscribe {}", each.join(", "))
            }
            WatchMessage::Changes { sub, seq, items, lagged, .. } => {
                let lagged = if *lagged { " (lagged)" } else { "" };
                format!(
                    "Changes sub={} seq={seq} {} items{lagged}",
                    self.subs.alias(*sub),
                    items.len()
                )
            }
            WatchMessage::ChangesAck { sub, seq, .. } => {
                format!("ChangesAck sub={} seq={seq}", self.subs.alias(*sub))
            }
        }
    }

    /// `members`: node 1's view of the cluster.
    fn members(&self, out: &mut String) {
        for m in self.node.membership().members() {
            let joining = if m.joining { " joining" } else { "" };
            let _ = writeln!(
                out,
                "{} {}{joining} incarnation={}",
                node_name(m.id),
                m.status,
                m.incarnation
            );
        }
    }

    /// `state`: the node's counters that scripts look at.
    fn state(&self, out: &mut String) {
        let n = &self.node;
        let stats = n.stats();
        let h = n.hints();
        let gc = n.gc();
        let (completed, failed) = n.sessions().counts();
        let sync = n.state().last_full_sync_ms.map_or("never".into(), |t| format!("@{t}"));
        let _ = writeln!(out, "now @{} status={}", self.now, stats.status);
        let _ = writeln!(
            out,
            "keys={} tombstones={} in-flight={}",
            stats.keys,
            stats.tombstones,
            n.coordinator().in_flight()
        );
        let _ = writeln!(
            out,
            "hints pending={} delivered={} dropped={} expired={}",
            h.pending(),
            h.delivered(),
            h.dropped(),
            h.expired()
        );
        let _ = writeln!(out, "gc purged={} expired={}", gc.purged(), gc.expired());
        let _ =
            writeln!(out, "sync last_full={sync} sessions completed={completed} failed={failed}");
        let w = n.watches();
        let _ = writeln!(
            out,
            "watches={} feeds={} events={}",
            w.watch_count(),
            w.feed_count(),
            w.stats().events
        );
        let c = n.commits();
        let _ = writeln!(
            out,
            "commits begun={} resolved={} failed={} held={}",
            c.begun, c.resolved, c.failed, c.held
        );
    }

    /// `dump [collection]`: what node 1's store holds, tombstones included, by key.
    fn dump(&self, collection: &str, out: &mut String) -> Res<()> {
        let mut records =
            self.node.replica().range(collection, Interval::full(), None, usize::MAX)?;
        records.sort_by(|a, b| a.key.cmp(&b.key));
        if records.is_empty() {
            writeln!(out, "{collection}: empty")?;
        }
        for r in records {
            writeln!(out, "{collection}/{} {}", key_text(&r.key), entry_text(&r.entry))?;
        }
        Ok(())
    }
}

fn gossip_text(m: &MembershipMessage) -> String {
    let rec = |m: &Member| format!("{} {} {}", node_name(m.id), m.status, m.incarnation);
    match m {
        MembershipMessage::Ping { seq, sender, updates, .. } => {
            format!("Ping seq={seq} from {} ({} updates)", rec(sender), updates.len())
        }
        MembershipMessage::Ack { seq, on_behalf, sender, .. } => {
            let relayed = on_behalf.map(|n| format!(" for {}", node_name(n))).unwrap_or_default();
            format!("Ack seq={seq}{relayed} from {}", rec(sender))
        }
        MembershipMessage::PingReq { target, .. } => format!("PingReq {}", node_name(*target)),
        MembershipMessage::PushPull { members, reply, .. } => {
            let each: Vec<String> = members.iter().map(rec).collect();
            format!("PushPull reply={reply} [{}]", each.join(", "))
        }
        MembershipMessage::Join { member, .. } => format!("Join {}", rec(member)),
        MembershipMessage::Gossip { sender, updates, .. } => {
            let each: Vec<String> = updates.iter().map(rec).collect();
            format!("Gossip from {} [{}]", rec(sender), each.join(", "))
        }
    }
}

fn event_text(e: &NodeEvent) -> String {
    match e {
        NodeEvent::Membership(MembershipEvent::MemberJoined { id }) => {
            format!("{} joined", node_name(*id))
        }
        NodeEvent::Membership(MembershipEvent::StatusChanged { id, from, to }) => {
            format!("{} {from} → {to}", node_name(*id))
        }
        NodeEvent::Membership(MembershipEvent::MustResync) => "must re-sync".to_string(),
        NodeEvent::ReadRepaired { node, collection, key } => {
            format!("read-repaired {} {collection}/{}", node_name(*node), key_text(key))
        }
        NodeEvent::StoreFailed(e) => format!("store failed: {e}"),
        NodeEvent::CommitFailed { reason } => format!("commit failed: {reason}"),
        NodeEvent::SyncFailed { peer, reason } => {
            format!("sync with {} failed: {reason}", node_name(*peer))
        }
        NodeEvent::Handoff(p) => format!("hand-off {}/{} entries={}", p.done, p.total, p.entries),
        NodeEvent::Wiped { entries } => format!("wiped {entries} entries"),
        NodeEvent::Leaving(p) => format!("leaving {}/{} entries={}", p.done, p.total, p.entries),
        NodeEvent::Cleaned { collection, interval, entries } => {
            format!("cleaned {collection} {interval}: {entries} entries")
        }
        NodeEvent::SlowSync { took_ms, grace_ms } => {
            format!("slow sync: a round took {took_ms} ms, grace {grace_ms} ms")
        }
        other => format!("{other:?}"),
    }
}

/// Runs the script `core/tests/golden/NAME`.
fn script(name: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    if let Err(e) = goldenscript::run(&mut Golden::default(), &path) {
        panic!("{}: {e}", path.display());
    }
}

macro_rules! scripts {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                script(stringify!($name));
            }
        )*

        /// Every file in `core/tests/golden/` has its test above.
        #[test]
        fn every_script_runs() {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
            let listed = [$(stringify!($name)),*];
            for file in std::fs::read_dir(&dir).unwrap() {
                let name = file.unwrap().file_name().into_string().unwrap();
                assert!(listed.contains(&name.as_str()), "add `{name}` to scripts! in golden.rs");
            }
        }
    };
}

scripts!(
    antientropy,
    coordinator,
    durability,
    gc,
    hints,
    input_checks,
    leave,
    read_repair,
    remove,
    scan,
    watches
);
