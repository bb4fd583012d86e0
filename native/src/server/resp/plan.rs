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
    /// TYPE: `string` or `none`.
    Type,
}

/// A data command, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// How the answers become the reply.
    pub plan: Plan,
    /// The operations of the first stage.
    pub ops: Vec<Op>,
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
    args: &[Bytes],
    to: &Target,
    now: Millis,
) -> Option<Result<Planned, Refused>> {
    let c = || to.collection.clone();
    let consistency = to.consistency;
    let get = |key: &Bytes| Op::Get { collection: c(), key: key.clone(), consistency };
    let get_many =
        |keys: &[Bytes]| Op::GetMany { collection: c(), keys: keys.to_vec(), consistency };
    let single = |plan: Plan, op: Op| Ok(Planned { plan, ops: vec![op] });
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
            set(to, key, value, options, now)
        }
        "GETSET" => {
            let [key, value] = args else { return Some(Err(arity_error(name))) };
            set(to, key, value, &[Bytes::from_static(b"GET")], now)
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

/// SET's options: `EX`/`PX`/`EXAT`/`PXAT` (one of them), `GET`; `NX`/`XX` and
/// `KEEPTTL` are refused with why.
fn set(
    to: &Target,
    key: &Bytes,
    value: &Bytes,
    options: &[Bytes],
    now: Millis,
) -> Result<Planned, Refused> {
    let mut ttl_ms: Option<i64> = None;
    let mut get = false;
    let mut i = 0;
    while i < options.len() {
        let option = options[i].to_ascii_uppercase();
        match option.as_slice() {
            b"GET" => get = true,
            b"NX" | b"XX" => return Err(NOT_CONDITIONAL.into()),
            b"KEEPTTL" => {
                return Err("ERR KEEPTTL is not supported by dhrt yet: a write replaces a \
                            key's expiry; pass EX/PX again"
                    .into())
            }
            b"EX" | b"PX" | b"EXAT" | b"PXAT" => {
                let arg = options.get(i + 1).ok_or(SYNTAX)?;
                if ttl_ms.is_some() {
                    return Err(SYNTAX.into());
                }
                let n = integer(arg).ok_or("ERR value is not an integer or out of range")?;
                if n <= 0 {
                    return Err("ERR invalid expire time in 'set' command".into());
                }
                let ms = match option.as_slice() {
                    b"EX" => n.checked_mul(1000),
                    b"PX" => Some(n),
                    b"EXAT" => n.checked_mul(1000).map(|at| at - now as i64),
                    _ => Some(n - now as i64),
                };
                ttl_ms = Some(ms.ok_or("ERR invalid expire time in 'set' command")?);
                i += 1;
            }
            _ => return Err(SYNTAX.into()),
        }
        i += 1;
    }
    let (collection, consistency) = (to.collection.clone(), to.consistency);
    // An expiry already past deletes the key, as in Redis.
    let op = match ttl_ms {
        Some(ms) if ms <= 0 => Op::Del { collection, key: key.clone(), consistency },
        ttl => Op::Set {
            collection,
            key: key.clone(),
            value: value.clone(),
            consistency,
            ttl_ms: ttl.map(|ms| ms as u64),
        },
    };
    if get {
        let read = Op::Get { collection: to.collection.clone(), key: key.clone(), consistency };
        Ok(Planned { plan: Plan::SetGet { then: op }, ops: vec![read] })
    } else {
        Ok(Planned { plan: Plan::Set, ops: vec![op] })
    }
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
        ops: Vec<Op>,
        /// What the reply will be.
        finish: Finish,
    },
}

/// The reply of a second stage, once its operations succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// The old value (SET ... GET, GETSET, GETDEL).
    Old(Option<Bytes>),
    /// How many keys existed (DEL, UNLINK).
    Count(usize),
}

/// Given the answers to the first stage's operations (in order), writes the reply — or
/// says which operations come next.
pub fn first(plan: &Plan, answers: &[Reply], out: &mut Writer) -> Next {
    if let Some(e) = answers.iter().find_map(error_of) {
        out.error(&e);
        return Next::Done;
    }
    let value = match answers.first() {
        Some(Reply::Value { value, .. }) => value.clone(),
        _ => None,
    };
    let values = match answers.first() {
        Some(Reply::Values { values }) => values.as_slice(),
        _ => &[],
    };
    match plan {
        Plan::Get => out.bulk_or_nil(value.as_deref()),
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
        Plan::SetGet { then } => {
            return Next::Then { ops: vec![then.clone()], finish: Finish::Old(value) }
        }
        Plan::GetDel { del } => match value {
            Some(old) => {
                return Next::Then { ops: vec![del.clone()], finish: Finish::Old(Some(old)) }
            }
            None => out.nil(),
        },
        Plan::Del { collection, keys, consistency } => {
            // Each key that existed, once (DEL k k deletes k once and counts 1).
            let mut seen = std::collections::HashSet::new();
            let ops: Vec<Op> = keys
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
                return Next::Then { finish: Finish::Count(ops.len()), ops };
            }
        }
    }
    Next::Done
}

/// Writes the reply of a second stage from its answers.
pub fn second(finish: &Finish, answers: &[Reply], out: &mut Writer) {
    if let Some(e) = answers.iter().find_map(error_of) {
        out.error(&e);
        return;
    }
    match finish {
        Finish::Old(old) => out.bulk_or_nil(old.as_deref()),
        Finish::Count(n) => out.integer(*n as i64),
    }
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
        ErrorCode::TooLarge => "TOOLARGE",
        ErrorCode::Timeout => "TIMEOUT",
        ErrorCode::Unavailable => "UNAVAILABLE",
        _ => "ERR",
    };
    Some(format!("{prefix} {message}"))
}
