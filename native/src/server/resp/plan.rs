//! What a data command of the Redis endpoint asks of the node, and how the node's
//! answers become its Redis reply.
//!
//! A command becomes a [`Plan`]: the dhrt operations of its first stage, and — for the
//! commands whose Redis reply depends on what was there before (DEL and UNLINK count
//! the keys that existed, SET ... GET and GETDEL return the old value) — a second stage
//! built from the first stage's answers: the keys are read at the connection's
//! consistency, then only the keys that existed are deleted. A connection runs no later
//! command's operations before such a command has finished (see `conn`), so a pipeline
//! keeps Redis's order: `DEL k` then `SET k v` never ends with `k` deleted.
//!
//! Everything here is pure — arguments in, operations and reply bytes out — so the
//! mapping is tested without a node.

use crate::resp::reply::Writer;
use bytes::Bytes;
use dhrt_core::{
    proto::client::{Consistency, ErrorCode, Op, Reply},
    Millis,
};
use smallvec::{smallvec, SmallVec};

/// Where and how a connection's commands address the node.
#[derive(Debug, Clone)]
pub struct Target {
    /// The selected collection (`SELECT`, `DHRT.COLLECTION`).
    pub collection: String,
    /// The consistency of every operation (`DHRT.CONSISTENCY`; the collection's
    /// default until set).
    pub consistency: Consistency,
}

/// The stages of a data command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// GET: the value, or nil.
    Get,
    /// SET without GET: `+OK`.
    Set,
    /// SET ... GET, GETSET: the old value read first, then written (or deleted, for an
    /// expiry already past).
    SetGet {
        /// What the second stage does.
        then: Op,
    },
    /// GETDEL: the old value read first, then deleted (`del`) if it existed.
    GetDel {
        /// The second stage.
        del: Op,
    },
    /// MGET: every value, nil for the missing.
    MGet,
    /// MSET: `+OK`.
    MSet,
    /// DEL, UNLINK: the keys read first, then those that existed deleted; their count.
    Del {
        /// The keys' collection.
        collection: String,
        /// The keys, as named.
        keys: Vec<Bytes>,
        /// The deletes' consistency.
        consistency: Consistency,
    },
    /// EXISTS: how many of the keys (counted as often as named) exist.
    Exists,
    /// STRLEN: the value's length, 0 when missing.
    StrLen,
    /// SET ... KEEPTTL: the key read first for its expiry, then written with it; the
    /// old value answered when `get`.
    SetKeep {
        /// The key.
        key: KeyRef,
        /// The new value.
        value: Bytes,
        /// Answer the old value rather than OK.
        get: bool,
    },
    /// TTL (seconds), PTTL (`millis`): -2 for a missing key, -1 for one without expiry.
    Ttl {
        /// Answer milliseconds.
        millis: bool,
    },
    /// EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT: the key read, then written again with
    /// expiry `at` (deleted when `at` is past) if it exists and `when` allows; 1 or 0.
    Expire {
        /// The key.
        key: KeyRef,
        /// The new expiry, wall-clock milliseconds.
        at: Millis,
        /// NX, XX, GT, LT.
        when: When,
    },
    /// PERSIST: the key read, then written again without expiry if it had one; 1 or 0.
    Persist {
        /// The key.
        key: KeyRef,
    },
    /// SCAN: one page, as Redis's `[cursor, [keys]]`.
    Scan {
        /// The walk (its pattern and page size).
        walk: Walk,
    },
    /// KEYS, DBSIZE, FLUSHDB: every page, gathered.
    Walk {
        /// The walk.
        walk: Walk,
        /// What it gathers.
        gather: Gather,
    },
    /// GETEX: the value answered; written again with a new expiry when one is given
    /// (`Some(None)`: PERSIST).
    GetEx {
        /// The key.
        key: KeyRef,
        /// The new expiry, if any.
        change: Option<Option<Millis>>,
    },
    /// TYPE: `string` or `none`.
    Type,
}

/// A walk over the selected collection's pages (SCAN, KEYS, DBSIZE, FLUSHDB).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Walk {
    /// The collection.
    pub collection: String,
    /// The reads' (and FLUSHDB's deletes') consistency.
    pub consistency: Consistency,
    /// An ordered collection (`ordered.*`): its cursors are written differently.
    pub ordered: bool,
    /// Only keys matching this glob (MATCH).
    pub pattern: Option<Bytes>,
    /// Entries a page asks for.
    pub limit: u32,
    /// Only keys of this type (SCAN ... TYPE): none unless `string`.
    pub strings: bool,
}

impl Walk {
    /// A walk over `to`'s collection.
    fn of(to: &Target) -> Walk {
        Walk {
            collection: to.collection.clone(),
            consistency: to.consistency,
            ordered: to.collection.starts_with(ORDERED_PREFIX),
            pattern: None,
            limit: WALK_PAGE,
            strings: true,
        }
    }

    /// The read of the page after `cursor`.
    fn page(&self, cursor: Option<Bytes>) -> Op {
        let prefix = self.pattern.as_deref().map(super::keys::literal_prefix);
        Op::Scan {
            collection: self.collection.clone(),
            cursor,
            prefix: prefix.filter(|p| !p.is_empty()).map(Bytes::copy_from_slice),
            limit: self.limit,
            consistency: self.consistency,
        }
    }

    /// The keys of a page this walk keeps.
    fn keep<'a>(&'a self, items: &'a [(Bytes, Bytes)]) -> impl Iterator<Item = &'a Bytes> {
        items.iter().map(|(k, _)| k).filter(|k| {
            self.strings && self.pattern.as_deref().is_none_or(|p| super::keys::glob(p, k))
        })
    }
}

/// The name prefix of ordered collections.
const ORDERED_PREFIX: &str = "ordered.";
/// Entries a page of KEYS, DBSIZE or FLUSHDB asks for (dhrt's largest page).
const WALK_PAGE: u32 = 1000;
/// Most keys KEYS answers; past it, an error saying to use SCAN.
pub const MAX_KEYS: usize = 100_000;

/// What a walk gathers, page after page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gather {
    /// KEYS: the matching keys.
    Keys(Vec<Bytes>),
    /// DBSIZE: how many live keys.
    Count(u64),
    /// FLUSHDB: how many deleted.
    Flush(u64),
}

/// A key a second stage writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRef {
    /// Its collection.
    pub collection: String,
    /// The key.
    pub key: Bytes,
    /// The write's consistency.
    pub consistency: Consistency,
}

impl KeyRef {
    /// `key` in `to`'s collection, at its consistency.
    fn of(to: &Target, key: &Bytes) -> KeyRef {
        KeyRef { collection: to.collection.clone(), key: key.clone(), consistency: to.consistency }
    }

    /// The read of this key.
    fn read(&self) -> Op {
        let (collection, key, consistency) =
            (self.collection.clone(), self.key.clone(), self.consistency);
        Op::Get { collection, key, consistency }
    }

    /// Writes `value` again under this key with expiry `at` (deletes it when `at` is
    /// not after `now`).
    fn write(&self, value: Bytes, at: Option<Millis>, now: Millis) -> Op {
        self.clone().into_write(value, at, now)
    }

    /// [`KeyRef::write`], taking the key.
    fn into_write(self, value: Bytes, at: Option<Millis>, now: Millis) -> Op {
        let KeyRef { collection, key, consistency } = self;
        match at {
            Some(at) if at <= now => Op::Del { collection, key, consistency },
            at => Op::Set { collection, key, value, consistency, ttl_ms: at.map(|at| at - now) },
        }
    }
}

/// The conditions of EXPIRE and friends on the key's current expiry: NX, XX, GT, LT
/// (XX may go with GT or LT; NX with none of the others, GT not with LT — as Redis).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct When {
    /// NX: only when it has none.
    pub no_expiry: bool,
    /// XX: only when it has one.
    pub has_expiry: bool,
    /// GT: only when the new one is later (no expiry counts as infinite).
    pub later: bool,
    /// LT: only when the new one is earlier.
    pub earlier: bool,
}

impl When {
    fn allows(self, current: Option<Millis>, new: Millis) -> bool {
        (!self.no_expiry || current.is_none())
            && (!self.has_expiry || current.is_some())
            && (!self.later || current.is_some_and(|c| new > c))
            && (!self.earlier || current.is_none_or(|c| new < c))
    }
}

/// The operations of one stage: one, most often, held inline.
pub type Ops = SmallVec<[Op; 1]>;

/// A data command, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// How the answers become the reply.
    pub plan: Plan,
    /// The operations of the first stage.
    pub ops: Ops,
}

/// Why a command cannot run: its Redis error reply, without the `-`.
pub type Refused = String;

/// `ERR wrong number of arguments for 'cmd' command`.
pub fn arity_error(name: &str) -> Refused {
    format!("ERR wrong number of arguments for '{}' command", name.to_ascii_lowercase())
}

const SYNTAX: &str = "ERR syntax error";

/// An integer argument as Redis reads one.
pub fn integer(arg: &[u8]) -> Option<i64> {
    std::str::from_utf8(arg).ok()?.parse().ok()
}

/// Plans data command `name` (upper case) with arguments `args` (the name excluded);
/// `None` when `name` is no data command. `now` is the wall clock, for `EXAT`/`PXAT`.
pub fn plan(
    name: &str,
    args: &mut [Bytes],
    to: &Target,
    now: Millis,
) -> Option<Result<Planned, Refused>> {
    let c = || to.collection.clone();
    let consistency = to.consistency;
    // The arguments are the command's own: the last use of one takes it.
    let get = |key: &mut Bytes| Op::Get { collection: c(), key: std::mem::take(key), consistency };
    let get_many =
        |keys: &[Bytes]| Op::GetMany { collection: c(), keys: keys.to_vec(), consistency };
    let single = |plan: Plan, op: Op| Ok(Planned { plan, ops: smallvec![op] });
    let key_ref = |key: &Bytes| KeyRef { collection: c(), key: key.clone(), consistency };
    let planned = match name {
        "GET" | "STRLEN" | "TYPE" | "GETDEL" => {
            let [key] = args else { return Some(Err(arity_error(name))) };
            let plan = match name {
                "GET" => Plan::Get,
                "STRLEN" => Plan::StrLen,
                "TYPE" => Plan::Type,
                _ => {
                    Plan::GetDel { del: Op::Del { collection: c(), key: key.clone(), consistency } }
                }
            };
            single(plan, get(key))
        }
        "SET" => {
            let [key, value, options @ ..] = args else { return Some(Err(arity_error(name))) };
            set(to, std::mem::take(key), std::mem::take(value), options, now)
        }
        "GETSET" => {
            let [key, value] = args else { return Some(Err(arity_error(name))) };
            set(to, std::mem::take(key), std::mem::take(value), &[Bytes::from_static(b"GET")], now)
        }
        "MGET" | "EXISTS" => {
            if args.is_empty() {
                return Some(Err(arity_error(name)));
            }
            let plan = if name == "MGET" { Plan::MGet } else { Plan::Exists };
            single(plan, get_many(args))
        }
        "DEL" | "UNLINK" => {
            if args.is_empty() {
                return Some(Err(arity_error(name)));
            }
            let plan = Plan::Del { collection: c(), keys: args.to_vec(), consistency };
            single(plan, get_many(args))
        }
        "TTL" | "PTTL" => {
            let [key] = args else { return Some(Err(arity_error(name))) };
            single(Plan::Ttl { millis: name == "PTTL" }, get(key))
        }
        "EXPIRE" | "PEXPIRE" | "EXPIREAT" | "PEXPIREAT" => {
            let [key, time, options @ ..] = args else { return Some(Err(arity_error(name))) };
            expire(name, key, time, options, to, now)
        }
        "PERSIST" => {
            let [key] = args else { return Some(Err(arity_error(name))) };
            single(Plan::Persist { key: key_ref(key) }, get(key))
        }
        "GETEX" => {
            let [key, options @ ..] = args else { return Some(Err(arity_error(name))) };
            getex(key_ref(key), options, now).map(|plan| Planned { plan, ops: smallvec![get(key)] })
        }
        "SCAN" => {
            let [cursor, options @ ..] = args else { return Some(Err(arity_error(name))) };
            scan(to, cursor, options)
        }
        "KEYS" => {
            let [pattern] = args else { return Some(Err(arity_error(name))) };
            let walk = Walk { pattern: Some(pattern.clone()), ..Walk::of(to) };
            let op = walk.page(None);
            single(Plan::Walk { walk, gather: Gather::Keys(Vec::new()) }, op)
        }
        "DBSIZE" | "FLUSHDB" => {
            if args.len() > usize::from(name == "FLUSHDB") {
                return Some(Err(arity_error(name)));
            }
            if let Some(mode) = args.first() {
                if !mode.eq_ignore_ascii_case(b"ASYNC") && !mode.eq_ignore_ascii_case(b"SYNC") {
                    return Some(Err(SYNTAX.into()));
                }
            }
            let walk = Walk::of(to);
            let gather = if name == "DBSIZE" { Gather::Count(0) } else { Gather::Flush(0) };
            let op = walk.page(None);
            single(Plan::Walk { walk, gather }, op)
        }
        "MSET" => {
            if args.is_empty() || !args.len().is_multiple_of(2) {
                return Some(Err(arity_error(name)));
            }
            let items = args.chunks(2).map(|kv| (kv[0].clone(), kv[1].clone())).collect();
            single(Plan::MSet, Op::SetMany { collection: c(), items, consistency, ttl_ms: None })
        }
        _ => return None,
    };
    Some(planned)
}

/// The expiry an `EX`/`PX`/`EXAT`/`PXAT` option (`option`, upper case) with argument
/// `arg` sets, as wall-clock milliseconds; `None` when `option` is none of them.
fn expiry_option(
    option: &[u8],
    arg: Option<&Bytes>,
    command: &str,
    now: Millis,
) -> Option<Result<Millis, Refused>> {
    if !matches!(option, b"EX" | b"PX" | b"EXAT" | b"PXAT") {
        return None;
    }
    let invalid = || format!("ERR invalid expire time in '{command}' command");
    let at = (|| {
        let n = integer(arg.ok_or(SYNTAX)?).ok_or("ERR value is not an integer or out of range")?;
        if n <= 0 {
            return Err(invalid());
        }
        let at = match option {
            b"EX" => n.checked_mul(1000).and_then(|ms| ms.checked_add(now as i64)),
            b"PX" => n.checked_add(now as i64),
            b"EXAT" => n.checked_mul(1000),
            _ => Some(n),
        };
        at.map(|at| at as Millis).ok_or_else(invalid)
    })();
    Some(at.map_err(|e| e.to_string()))
}

/// SET's options: `EX`/`PX`/`EXAT`/`PXAT` or `KEEPTTL` (one of them), `GET`; `NX`/`XX`
/// are refused with why.
fn set(
    to: &Target,
    key: Bytes,
    value: Bytes,
    options: &[Bytes],
    now: Millis,
) -> Result<Planned, Refused> {
    if options.is_empty() {
        // Plain SET, the one sent most.
        let (collection, consistency) = (to.collection.clone(), to.consistency);
        let op = Op::Set { collection, key, value, consistency, ttl_ms: None };
        return Ok(Planned { plan: Plan::Set, ops: smallvec![op] });
    }
    let mut at: Option<Millis> = None;
    let mut keep = false;
    let mut get = false;
    let mut i = 0;
    while i < options.len() {
        let option = options[i].to_ascii_uppercase();
        match option.as_slice() {
            b"GET" => get = true,
            b"NX" | b"XX" => return Err(NOT_CONDITIONAL.into()),
            b"KEEPTTL" if at.is_none() => keep = true,
            option => match expiry_option(option, options.get(i + 1), "set", now) {
                Some(_) if keep || at.is_some() => return Err(SYNTAX.into()),
                Some(expiry) => {
                    at = Some(expiry?);
                    i += 1;
                }
                None => return Err(SYNTAX.into()),
            },
        }
        i += 1;
    }
    let key_ref = KeyRef { collection: to.collection.clone(), key, consistency: to.consistency };
    if keep {
        let read = key_ref.read();
        let plan = Plan::SetKeep { key: key_ref, value, get };
        return Ok(Planned { plan, ops: smallvec![read] });
    }
    if get {
        // An expiry already past deletes the key, as in Redis.
        let then = key_ref.write(value, at, now);
        Ok(Planned { plan: Plan::SetGet { then }, ops: smallvec![key_ref.read()] })
    } else {
        Ok(Planned { plan: Plan::Set, ops: smallvec![key_ref.into_write(value, at, now)] })
    }
}

/// EXPIRE and friends: `time` in seconds or milliseconds, from now or since the epoch,
/// and the options NX, XX, GT, LT.
fn expire(
    name: &str,
    key: &Bytes,
    time: &Bytes,
    options: &[Bytes],
    to: &Target,
    now: Millis,
) -> Result<Planned, Refused> {
    let n = integer(time).ok_or("ERR value is not an integer or out of range")?;
    let invalid = || format!("ERR invalid expire time in '{}' command", name.to_ascii_lowercase());
    let at = match name {
        "EXPIRE" => n.checked_mul(1000).and_then(|ms| ms.checked_add(now as i64)),
        "PEXPIRE" => n.checked_add(now as i64),
        "EXPIREAT" => n.checked_mul(1000),
        _ => Some(n),
    }
    .ok_or_else(invalid)?
    .max(0) as Millis;
    let mut when = When::default();
    for option in options {
        match option.to_ascii_uppercase().as_slice() {
            b"NX" => when.no_expiry = true,
            b"XX" => when.has_expiry = true,
            b"GT" => when.later = true,
            b"LT" => when.earlier = true,
            _ => {
                let option = String::from_utf8_lossy(option).into_owned();
                return Err(format!("ERR Unsupported option {option}"));
            }
        }
    }
    if when.no_expiry && (when.has_expiry || when.later || when.earlier) {
        return Err("ERR NX and XX, GT or LT options at the same time are not compatible".into());
    }
    if when.later && when.earlier {
        return Err("ERR GT and LT options at the same time are not compatible".into());
    }
    let key_ref = KeyRef::of(to, key);
    let read = key_ref.read();
    Ok(Planned { plan: Plan::Expire { key: key_ref, at, when }, ops: smallvec![read] })
}

/// SCAN's cursor and options: MATCH, COUNT, TYPE.
fn scan(to: &Target, cursor: &Bytes, options: &[Bytes]) -> Result<Planned, Refused> {
    let mut walk = Walk { limit: 10, ..Walk::of(to) };
    let cursor = super::keys::dhrt_cursor(cursor, walk.ordered)?;
    let mut i = 0;
    while i < options.len() {
        let arg = options.get(i + 1).ok_or(SYNTAX)?;
        match options[i].to_ascii_uppercase().as_slice() {
            b"MATCH" => walk.pattern = Some(arg.clone()),
            b"COUNT" => {
                let n = integer(arg).filter(|&n| n >= 1).ok_or(SYNTAX)?;
                walk.limit = n.min(i64::from(WALK_PAGE)) as u32;
            }
            b"TYPE" => walk.strings = arg.eq_ignore_ascii_case(b"string"),
            _ => return Err(SYNTAX.into()),
        }
        i += 2;
    }
    let op = walk.page(cursor);
    Ok(Planned { plan: Plan::Scan { walk }, ops: smallvec![op] })
}

/// GETEX's options: one of `EX`/`PX`/`EXAT`/`PXAT` or `PERSIST`, or none.
fn getex(key: KeyRef, options: &[Bytes], now: Millis) -> Result<Plan, Refused> {
    let change = match options {
        [] => None,
        [p] if p.eq_ignore_ascii_case(b"PERSIST") => Some(None),
        [option, arg] => match expiry_option(&option.to_ascii_uppercase(), Some(arg), "getex", now)
        {
            Some(at) => Some(Some(at?)),
            None => return Err(SYNTAX.into()),
        },
        _ => return Err(SYNTAX.into()),
    };
    Ok(Plan::GetEx { key, change })
}

/// The refusal of conditional writes (SET NX/XX, SETNX, MSETNX).
pub const NOT_CONDITIONAL: &str = "ERR conditional writes (NX, XX, SETNX, MSETNX) are not \
    supported: dhrt's replicas accept writes independently and the newest wins, so \
    whether a key exists cannot be checked and acted on atomically";

/// What a first stage's answers lead to.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// The command is done: its reply was written.
    Done,
    /// Run `ops`, then [`second`] writes the reply from their answers.
    Then {
        /// The second stage.
        ops: Ops,
        /// What the reply will be.
        finish: Box<Finish>,
    },
}

/// The reply of a second stage, once its operations succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// The old value (SET ... GET, GETSET, GETDEL).
    Old(Option<Bytes>),
    /// How many keys existed (DEL, UNLINK), or 1 for a change made (EXPIRE, PERSIST).
    Count(usize),
    /// `+OK` (SET ... KEEPTTL).
    Ok,
    /// A walk's page was read: gather it, then read the next.
    Walk {
        /// The walk.
        walk: Walk,
        /// What it gathered so far.
        gather: Gather,
    },
    /// FLUSHDB's deletes of a page are done: go on after `cursor`, if any.
    Flushed {
        /// The walk.
        walk: Walk,
        /// Keys deleted so far, this page's included.
        deleted: u64,
        /// Where the page ended.
        cursor: Option<Bytes>,
    },
}

/// Given the answers to the first stage's operations (in order), writes the reply — or
/// says which operations come next.
pub fn first(plan: &Plan, answers: &[Reply], now: Millis, out: &mut Writer) -> Next {
    if let Some(e) = answers.iter().find_map(error_of) {
        out.error(&e);
        return Next::Done;
    }
    let (value, expires) = match answers.first() {
        Some(Reply::Value { value, expires, .. }) => (value.as_ref(), *expires),
        _ => (None, None),
    };
    let values = match answers.first() {
        Some(Reply::Values { values }) => values.as_slice(),
        _ => &[],
    };
    match plan {
        Plan::Get => out.bulk_or_nil(value.map(|v| &v[..])),
        Plan::Set | Plan::MSet => out.ok(),
        Plan::StrLen => out.integer(value.map_or(0, |v| v.len() as i64)),
        Plan::Type => out.simple(if value.is_some() { "string" } else { "none" }),
        Plan::MGet => {
            out.array(values.len());
            for v in values {
                out.bulk_or_nil(v.as_deref());
            }
        }
        Plan::Exists => out.integer(values.iter().filter(|v| v.is_some()).count() as i64),
        Plan::SetKeep { key, value: new, get } => {
            let op = key.write(new.clone(), expires, now);
            let finish = if *get { Finish::Old(value.cloned()) } else { Finish::Ok };
            return Next::Then { ops: smallvec![op], finish: Box::new(finish) };
        }
        Plan::Ttl { millis } => {
            let left = |at: Millis| at.saturating_sub(now) as i64;
            out.integer(match (&value, expires) {
                (None, _) => -2,
                (Some(_), None) => -1,
                (Some(_), Some(at)) if *millis => left(at),
                (Some(_), Some(at)) => (left(at) + 500) / 1000,
            })
        }
        Plan::Expire { key, at, when } => match value {
            Some(v) if when.allows(expires, *at) => {
                let op = key.write(v.clone(), Some(*at), now);
                return Next::Then { ops: smallvec![op], finish: Box::new(Finish::Count(1)) };
            }
            _ => out.integer(0),
        },
        Plan::Persist { key } => match (value, expires) {
            (Some(v), Some(_)) => {
                return Next::Then {
                    ops: smallvec![key.write(v.clone(), None, now)],
                    finish: Box::new(Finish::Count(1)),
                }
            }
            _ => out.integer(0),
        },
        Plan::GetEx { key, change } => match (value, change) {
            (Some(v), Some(at)) => {
                let op = key.write(v.clone(), *at, now);
                return Next::Then {
                    ops: smallvec![op],
                    finish: Box::new(Finish::Old(Some(v.clone()))),
                };
            }
            (value, _) => out.bulk_or_nil(value.map(|v| &v[..])),
        },
        Plan::Scan { walk } => {
            let Some(Reply::Page { items, cursor }) = answers.first() else {
                out.error("ERR the node answered a scan with something else");
                return Next::Done;
            };
            match super::keys::redis_cursor(cursor.as_deref(), walk.ordered) {
                Ok(next) => {
                    let keys: Vec<&Bytes> = walk.keep(items).collect();
                    out.array(2);
                    out.bulk(next.as_bytes());
                    out.array(keys.len());
                    keys.into_iter().for_each(|k| out.bulk(k));
                }
                Err(e) => out.error(&e),
            }
        }
        Plan::Walk { walk, gather } => {
            let finish = Finish::Walk { walk: walk.clone(), gather: gather.clone() };
            return second(&finish, answers, now, out);
        }
        Plan::SetGet { then } => {
            return Next::Then {
                ops: smallvec![then.clone()],
                finish: Box::new(Finish::Old(value.cloned())),
            }
        }
        Plan::GetDel { del } => match value {
            Some(old) => {
                return Next::Then {
                    ops: smallvec![del.clone()],
                    finish: Box::new(Finish::Old(Some(old.clone()))),
                }
            }
            None => out.nil(),
        },
        Plan::Del { collection, keys, consistency } => {
            // Each key that existed, once (DEL k k deletes k once and counts 1).
            let mut seen = std::collections::HashSet::new();
            let ops: Ops = keys
                .iter()
                .zip(values)
                .filter(|(key, value)| value.is_some() && seen.insert(*key))
                .map(|(key, _)| Op::Del {
                    collection: collection.clone(),
                    key: key.clone(),
                    consistency: *consistency,
                })
                .collect();
            if ops.is_empty() {
                out.integer(0);
            } else {
                return Next::Then { finish: Box::new(Finish::Count(ops.len())), ops };
            }
        }
    }
    Next::Done
}

/// Writes the reply of a second stage from its answers.
pub fn second(finish: &Finish, answers: &[Reply], now: Millis, out: &mut Writer) -> Next {
    if let Some(e) = answers.iter().find_map(error_of) {
        out.error(&e);
        return Next::Done;
    }
    let _ = now;
    match finish {
        Finish::Old(old) => out.bulk_or_nil(old.as_deref()),
        Finish::Count(n) => out.integer(*n as i64),
        Finish::Ok => out.ok(),
        Finish::Walk { walk, gather } => {
            let Some(Reply::Page { items, cursor }) = answers.first() else {
                out.error("ERR the node answered a scan with something else");
                return Next::Done;
            };
            let mut gather = gather.clone();
            match &mut gather {
                Gather::Keys(keys) => {
                    keys.extend(walk.keep(items).cloned());
                    if keys.len() > MAX_KEYS {
                        out.error(&format!(
                            "ERR KEYS matched more than {MAX_KEYS} keys; use SCAN to walk them"
                        ));
                        return Next::Done;
                    }
                }
                Gather::Count(n) => *n += items.len() as u64,
                Gather::Flush(deleted) if !items.is_empty() => {
                    let ops: Ops = items
                        .iter()
                        .map(|(key, _)| Op::Del {
                            collection: walk.collection.clone(),
                            key: key.clone(),
                            consistency: walk.consistency,
                        })
                        .collect();
                    let deleted = *deleted + ops.len() as u64;
                    let finish =
                        Finish::Flushed { walk: walk.clone(), deleted, cursor: cursor.clone() };
                    return Next::Then { ops, finish: Box::new(finish) };
                }
                Gather::Flush(_) => {}
            }
            if cursor.is_some() {
                let ops = smallvec![walk.page(cursor.clone())];
                let finish = Box::new(Finish::Walk { walk: walk.clone(), gather });
                return Next::Then { ops, finish };
            }
            match gather {
                Gather::Keys(keys) => {
                    out.array(keys.len());
                    keys.iter().for_each(|k| out.bulk(k));
                }
                Gather::Count(n) => out.integer(n as i64),
                Gather::Flush(_) => out.ok(),
            }
        }
        Finish::Flushed { walk, deleted, cursor } => match cursor {
            Some(_) => {
                let ops = smallvec![walk.page(cursor.clone())];
                let finish = Finish::Walk { walk: walk.clone(), gather: Gather::Flush(*deleted) };
                return Next::Then { ops, finish: Box::new(finish) };
            }
            None => out.ok(),
        },
    }
    Next::Done
}

/// The Redis error for a failed dhrt operation, without the `-`: a stable prefix per
/// kind of failure (see docs/redis.md), then dhrt's message.
pub fn error_of(reply: &Reply) -> Option<String> {
    let Reply::Error { code, message, .. } = reply else { return None };
    let prefix = match code {
        ErrorCode::QuorumNotReached => "QUORUM",
        ErrorCode::Unauthorized => "NOAUTH",
        ErrorCode::Forbidden => "NOPERM",
        ErrorCode::StorageFull => "STORAGEFULL",
        ErrorCode::QuotaExceeded => "QUOTA",
        ErrorCode::TooLarge => "TOOLARGE",
        ErrorCode::Timeout => "TIMEOUT",
        ErrorCode::Unavailable => "UNAVAILABLE",
        _ => "ERR",
    };
    Some(format!("{prefix} {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::reply::Protocol;
    use dhrt_core::Timestamp;

    fn to() -> Target {
        Target { collection: "c".into(), consistency: Consistency::Quorum }
    }

    fn args(words: &[&str]) -> Vec<Bytes> {
        words.iter().map(|w| Bytes::copy_from_slice(w.as_bytes())).collect()
    }

    fn planned(name: &str, words: &[&str]) -> Result<Planned, Refused> {
        plan(name, &mut args(words), &to(), 10_000).expect("a data command")
    }

    fn value(v: Option<&str>, expires: Option<Millis>) -> Reply {
        let ts = Some(Timestamp::from_parts(9_000, 0));
        Reply::Value { value: v.map(|v| Bytes::copy_from_slice(v.as_bytes())), ts, expires }
    }

    fn reply_of(plan: &Plan, answers: &[Reply]) -> (String, Next) {
        let mut out = Vec::new();
        let next = first(plan, answers, 10_000, &mut Writer::new(&mut out, Protocol::Resp2));
        (String::from_utf8(out).unwrap(), next)
    }

    #[test]
    fn set_options_become_one_write() {
        let p = planned("SET", &["k", "v", "EX", "5"]).unwrap();
        assert_eq!(p.plan, Plan::Set);
        assert!(matches!(&p.ops[..], [Op::Set { ttl_ms: Some(5_000), .. }]));
        let p = planned("SET", &["k", "v", "PXAT", "12000"]).unwrap();
        assert!(matches!(&p.ops[..], [Op::Set { ttl_ms: Some(2_000), .. }]));
        let p = planned("SET", &["k", "v", "EXAT", "5"]).unwrap();
        assert!(matches!(&p.ops[..], [Op::Del { .. }]), "a past expiry deletes");
        assert!(planned("SET", &["k", "v", "EX", "0"]).unwrap_err().contains("invalid expire"));
        assert!(planned("SET", &["k", "v", "EX", "1", "PX", "1"]).unwrap_err().contains("syntax"));
        assert!(planned("SET", &["k", "v", "NX"]).unwrap_err().contains("conditional"));
        assert!(planned("SET", &["k", "v", "BOGUS"]).unwrap_err().contains("syntax"));
        assert!(planned("MSET", &["k"]).unwrap_err().contains("wrong number"));
        assert!(plan("LPUSH", &mut [], &to(), 0).is_none(), "not a data command");
    }

    #[test]
    fn del_reads_then_deletes_what_existed_once() {
        let p = planned("DEL", &["a", "b", "a"]).unwrap();
        let found = Reply::Values { values: vec![Some("1".into()), None, Some("1".into())] };
        let (text, next) = reply_of(&p.plan, &[found]);
        assert_eq!(text, "");
        let Next::Then { ops, finish } = next else { panic!("a second stage") };
        assert_eq!(ops.len(), 1, "a deleted once");
        assert_eq!(*finish, Finish::Count(1));
        let none = Reply::Values { values: vec![None, None, None] };
        assert_eq!(reply_of(&p.plan, &[none]).0, ":0\r\n");
    }

    #[test]
    fn ttl_and_expire_read_the_expiry() {
        let ttl = planned("TTL", &["k"]).unwrap().plan;
        assert_eq!(reply_of(&ttl, &[value(None, None)]).0, ":-2\r\n");
        assert_eq!(reply_of(&ttl, &[value(Some("v"), None)]).0, ":-1\r\n");
        assert_eq!(reply_of(&ttl, &[value(Some("v"), Some(14_600))]).0, ":5\r\n");
        let pttl = planned("PTTL", &["k"]).unwrap().plan;
        assert_eq!(reply_of(&pttl, &[value(Some("v"), Some(14_600))]).0, ":4600\r\n");
        let gt = planned("EXPIRE", &["k", "100", "GT"]).unwrap().plan;
        assert_eq!(reply_of(&gt, &[value(Some("v"), None)]).0, ":0\r\n", "no expiry is infinite");
        let xx_lt = planned("EXPIRE", &["k", "1", "XX", "LT"]).unwrap().plan;
        let (_, next) = reply_of(&xx_lt, &[value(Some("v"), Some(50_000))]);
        assert!(matches!(next, Next::Then { finish, .. } if *finish == Finish::Count(1)));
        assert!(planned("EXPIRE", &["k", "1", "NX", "GT"]).unwrap_err().contains("NX and XX"));
        assert!(planned("EXPIRE", &["k", "1", "GT", "LT"])
            .unwrap_err()
            .starts_with("ERR GT and LT"));
        let missing = planned("EXPIRE", &["k", "100"]).unwrap().plan;
        assert_eq!(reply_of(&missing, &[value(None, None)]).0, ":0\r\n");
    }

    #[test]
    fn errors_keep_a_stable_prefix() {
        let quorum = Reply::Error {
            code: ErrorCode::QuorumNotReached,
            message: "only 1 of 2 replicas answered".into(),
            acked: Some((1, 2)),
        };
        let get = planned("GET", &["k"]).unwrap().plan;
        assert_eq!(reply_of(&get, &[quorum]).0, "-QUORUM only 1 of 2 replicas answered\r\n");
        let full =
            Reply::Error { code: ErrorCode::StorageFull, message: "full".into(), acked: None };
        assert_eq!(error_of(&full).unwrap(), "STORAGEFULL full");
    }
}
