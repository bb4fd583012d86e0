//! The commands the Redis endpoint knows: their arity, flags and key positions (what
//! `COMMAND`, `COMMAND INFO` and `COMMAND DOCS` answer, and what redis-cli's hints and
//! cluster-aware client libraries read), and the commands it refuses with a reason.

/// One command, as `COMMAND INFO` describes it.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Lower-case name.
    pub name: &'static str,
    /// Redis's arity: the number of words with the name, negative for "at least".
    pub arity: i32,
    /// Redis's flags (`readonly`, `write`, `fast`...).
    pub flags: &'static [&'static str],
    /// Position of the first key (0: none).
    pub first_key: i32,
    /// Position of the last key (-1: the last word).
    pub last_key: i32,
    /// Step between keys.
    pub step: i32,
    /// Redis's group (`string`, `generic`, `connection`, `server`).
    pub group: &'static str,
    /// One line on what it does here.
    pub summary: &'static str,
}

const fn spec(
    name: &'static str,
    arity: i32,
    flags: &'static [&'static str],
    keys: (i32, i32, i32),
    group: &'static str,
    summary: &'static str,
) -> Spec {
    Spec { name, arity, flags, first_key: keys.0, last_key: keys.1, step: keys.2, group, summary }
}

const NONE: (i32, i32, i32) = (0, 0, 0);
const READ: &[&str] = &["readonly", "fast"];
const WRITE: &[&str] = &["write"];
const CONN: &[&str] = &["noscript", "loading", "stale", "fast"];

/// Every command served (the most used first).
pub const COMMANDS: &[Spec] = &[
    // The commands most sent first: `find` looks them up in order.
    spec("get", 2, READ, (1, 1, 1), "string", "Reads a key."),
    spec("set", -3, WRITE, (1, 1, 1), "string", "Writes a key (EX, PX, EXAT, PXAT, KEEPTTL, GET)."),
    spec("mget", -2, READ, (1, -1, 1), "string", "Reads several keys."),
    spec("mset", -3, WRITE, (1, -1, 2), "string", "Writes several keys with one timestamp."),
    spec("del", -2, WRITE, (1, -1, 1), "generic", "Deletes keys, counting those that existed."),
    spec("exists", -2, READ, (1, -1, 1), "generic", "Counts the keys that exist."),
    spec("ping", -1, CONN, NONE, "connection", "Answers PONG, or the message given."),
    spec("echo", 2, CONN, NONE, "connection", "Answers the message given."),
    spec("quit", -1, CONN, NONE, "connection", "Closes the connection."),
    spec("hello", -1, CONN, NONE, "connection", "Switches protocol (2 or 3), authenticates."),
    spec("auth", -2, CONN, NONE, "connection", "Presents a dhrt token."),
    spec("select", 2, CONN, NONE, "connection", "Selects the collection mapped to a database."),
    spec("client", -2, CONN, NONE, "connection", "SETNAME, GETNAME, ID, INFO, SETINFO."),
    spec("command", -1, CONN, NONE, "server", "Describes the commands served."),
    spec(
        "info",
        -1,
        &["loading", "stale"],
        NONE,
        "server",
        "The node's state, Redis's sections and a ring one.",
    ),
    spec(
        "config",
        -2,
        &["admin", "loading", "stale"],
        NONE,
        "server",
        "GET and SET of the few parameters that apply.",
    ),
    spec(
        "subscribe",
        -2,
        &["pubsub", "noscript", "loading", "stale"],
        NONE,
        "pubsub",
        "Keyspace notifications of channels.",
    ),
    spec(
        "psubscribe",
        -2,
        &["pubsub", "noscript", "loading", "stale"],
        NONE,
        "pubsub",
        "Keyspace notifications of patterns.",
    ),
    spec(
        "unsubscribe",
        -1,
        &["pubsub", "noscript", "loading", "stale"],
        NONE,
        "pubsub",
        "Ends channel subscriptions.",
    ),
    spec(
        "punsubscribe",
        -1,
        &["pubsub", "noscript", "loading", "stale"],
        NONE,
        "pubsub",
        "Ends pattern subscriptions.",
    ),
    spec("getset", 3, WRITE, (1, 1, 1), "string", "Writes a key, answering its old value."),
    spec("getdel", 2, WRITE, (1, 1, 1), "string", "Deletes a key, answering its old value."),
    spec("strlen", 2, READ, (1, 1, 1), "string", "The length of a key's value."),
    spec("ttl", 2, READ, (1, 1, 1), "generic", "Seconds until a key expires."),
    spec("pttl", 2, READ, (1, 1, 1), "generic", "Milliseconds until a key expires."),
    spec("expire", -3, WRITE, (1, 1, 1), "generic", "Sets a key's expiry, in seconds."),
    spec("pexpire", -3, WRITE, (1, 1, 1), "generic", "Sets a key's expiry, in milliseconds."),
    spec("expireat", -3, WRITE, (1, 1, 1), "generic", "Sets a key's expiry, a Unix time."),
    spec("pexpireat", -3, WRITE, (1, 1, 1), "generic", "Sets a key's expiry, in Unix ms."),
    spec("persist", 2, WRITE, (1, 1, 1), "generic", "Removes a key's expiry."),
    spec("getex", -2, WRITE, (1, 1, 1), "string", "Reads a key, and sets or removes its expiry."),
    spec("scan", -2, &["readonly"], NONE, "generic", "A page of the collection's keys."),
    spec("keys", 2, &["readonly"], NONE, "generic", "Every matching key (at most 100,000)."),
    spec("dbsize", 1, &["readonly"], NONE, "server", "Counts the collection's keys (a full scan)."),
    spec("flushdb", -1, WRITE, NONE, "server", "Deletes every key of the collection."),
    spec("unlink", -2, WRITE, (1, -1, 1), "generic", "As DEL."),
    spec("type", 2, READ, (1, 1, 1), "generic", "string, or none."),
    spec(
        "dhrt.collection",
        -1,
        CONN,
        NONE,
        "connection",
        "Selects a collection by name, or names the selected one.",
    ),
    spec(
        "dhrt.consistency",
        -1,
        CONN,
        NONE,
        "connection",
        "Sets the connection's consistency (one, quorum, all, N, default), or names it.",
    ),
];

/// The command named `name` (upper case).
pub fn find(name: &str) -> Option<&'static Spec> {
    COMMANDS.iter().find(|s| s.name.eq_ignore_ascii_case(name))
}

/// Whether `words` (the name included) is a count `spec` accepts.
pub fn arity_ok(spec: &Spec, words: usize) -> bool {
    let n = spec.arity.unsigned_abs() as usize;
    if spec.arity < 0 {
        words >= n
    } else {
        words == n
    }
}

/// Why a Redis command that dhrt cannot honour in a last-writer-wins store is refused
/// (the error reply, without the `-`); `None` for any other name.
pub fn refused(name: &str) -> Option<&'static str> {
    const COUNTERS: &str = "ERR dhrt cannot run read-modify-write commands (INCR, DECR, \
        APPEND, SETRANGE...): its replicas accept writes independently and the newest \
        write wins, so two clients incrementing at once would lose one increment; keep \
        counters in the application, or one key per writer";
    const TRANSACTIONS: &str = "ERR dhrt has no transactions (MULTI, EXEC, WATCH): a \
        write is applied key by key on each replica, newest wins";
    const SCRIPTS: &str = "ERR dhrt does not run scripts (EVAL, FUNCTION): commands run on \
        whichever node a client reaches, with no single owner to run a script atomically";
    match name {
        "INCR" | "INCRBY" | "INCRBYFLOAT" | "DECR" | "DECRBY" | "APPEND" | "SETRANGE" => {
            Some(COUNTERS)
        }
        "SETNX" | "MSETNX" => Some(super::plan::NOT_CONDITIONAL),
        "MULTI" | "EXEC" | "DISCARD" | "WATCH" | "UNWATCH" => Some(TRANSACTIONS),
        "EVAL" | "EVALSHA" | "EVAL_RO" | "EVALSHA_RO" | "SCRIPT" | "FUNCTION" | "FCALL"
        | "FCALL_RO" => Some(SCRIPTS),
        _ => None,
    }
}

/// Redis's reply to a command it does not know, word for word: the name, and the
/// first arguments, quoted, up to 128 bytes.
pub fn unknown(name: &[u8], args: &[bytes::Bytes]) -> String {
    let mut listed = String::new();
    for arg in args {
        if listed.len() >= 128 {
            break;
        }
        let room = 128 - listed.len();
        let text = String::from_utf8_lossy(&arg[..arg.len().min(room)]).into_owned();
        listed.push_str(&format!("'{text}' "));
    }
    let name = String::from_utf8_lossy(&name[..name.len().min(128)]).into_owned();
    format!("ERR unknown command '{name}', with args beginning with: {listed}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arity_as_redis_counts_it() {
        let get = find("GET").unwrap();
        assert!(arity_ok(get, 2));
        assert!(!arity_ok(get, 1) && !arity_ok(get, 3));
        let set = find("set").unwrap();
        assert!(arity_ok(set, 3) && arity_ok(set, 7) && !arity_ok(set, 2));
        assert!(find("FLUSHALL").is_none());
    }

    #[test]
    fn unknown_commands_answer_as_redis() {
        assert_eq!(
            unknown(b"foo", &["a".into(), "b".into()]),
            "ERR unknown command 'foo', with args beginning with: 'a' 'b' "
        );
        assert_eq!(unknown(b"foo", &[]), "ERR unknown command 'foo', with args beginning with: ");
        assert!(unknown(b"x", &[vec![b'a'; 500].into()]).len() < 200);
    }

    #[test]
    fn what_cannot_be_honoured_says_why() {
        assert!(refused("INCR").unwrap().contains("newest write wins"));
        assert!(refused("SETNX").unwrap().contains("conditional"));
        assert!(refused("MULTI").unwrap().contains("transactions"));
        assert!(refused("GET").is_none());
        for spec in COMMANDS {
            assert!(refused(&spec.name.to_ascii_uppercase()).is_none(), "{}", spec.name);
        }
    }
}
