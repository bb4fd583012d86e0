//! The Redis endpoint (`dhrt serve --resp-port`) against real in-process nodes (port 0
//! for both ports), driven over a raw TCP stream with the crate's own RESP codec
//! (`dhrt::resp::encode_command` to send, `dhrt::resp::parse` to read): the string
//! commands and their exact replies, pipelining order, expiry, errors and protocol
//! errors, the connection commands, authentication with tokens, the node's bounds
//! (connection cap, unread replies), and a three-node cluster behind the endpoint.

mod common;

use bytes::Bytes;
use dhrt::{
    resp::{encode_command, parse, Value},
    server::{
        bind, driver::Ephemeral, node_config, random_u64, security::SecurityOptions, start,
        ServeOptions, Server,
    },
};
use dhrt_core::{node::Node, store::MemStore, NodeId};
use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::{sleep, timeout},
};

/// How long any one answer may take.
const WAIT: Duration = Duration::from_secs(10);
/// Largest value the test nodes accept (unless a test says otherwise).
const MAX_VALUE: usize = 4096;

/// One test at a time among those that start clusters or flood a node: a few cores
/// cannot run two of them and keep failure detection fed.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------------------------------------------------------------------------------
// A node under test.

struct TestNode {
    server: Server,
    /// The main (HTTP/WebSocket) port.
    addr: SocketAddr,
    /// The Redis port.
    redis: SocketAddr,
}

fn options(replicas: usize) -> ServeOptions {
    ServeOptions {
        port: 0,
        replicas,
        max_value_bytes: MAX_VALUE,
        resp_port: Some(0),
        ..ServeOptions::default()
    }
}

impl TestNode {
    async fn start(opts: ServeOptions, join: Vec<String>) -> TestNode {
        let bound = bind(&opts).await.expect("bind port 0");
        let redis = bound.resp_addr.expect("a Redis port");
        let mut config = node_config(&opts, NodeId(random_u64()), &bound.advertise);
        config.request_timeout_ms = 2000;
        let node = Node::new(config, MemStore::new()).expect("a node");
        let server = start(bound, node, Ephemeral, &opts, join).expect("start");
        let addr = server.local_addr;
        TestNode { server, addr, redis }
    }

    /// A lone node (one replica) with the Redis port, ready.
    async fn single() -> TestNode {
        let node = TestNode::start(options(1), Vec::new()).await;
        node.ready(None).await;
        node
    }

    async fn connect(&self) -> Redis {
        Redis::connect(self.redis).await
    }

    /// Waits until a data command is answered (after `AUTH token` when given).
    async fn ready(&self, token: Option<&str>) {
        let mut c = self.connect().await;
        if let Some(token) = token {
            assert_eq!(c.call(&["AUTH", token]).await, ok());
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let v = c.call(&["GET", "__ready__"]).await;
            if v == nil() {
                return;
            }
            assert!(Instant::now() < deadline, "the node never answered a GET: {v:?}");
            sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(mut self) {
        self.server.stop().await;
    }
}

// ---------------------------------------------------------------------------------
// A Redis client by hand.

struct Redis {
    tcp: TcpStream,
    /// Bytes read, not yet parsed.
    buf: Vec<u8>,
}

/// `args` encoded as commands, one after the other.
fn encode(cmds: &[&[&str]]) -> Vec<u8> {
    let mut out = Vec::new();
    for cmd in cmds {
        let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_bytes()).collect();
        encode_command(&mut out, &args);
    }
    out
}

impl Redis {
    async fn connect(addr: SocketAddr) -> Redis {
        let tcp = timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connected in time")
            .expect("connect");
        let _ = tcp.set_nodelay(true);
        Redis { tcp, buf: Vec::new() }
    }

    /// Writes raw bytes.
    async fn write(&mut self, bytes: &[u8]) {
        timeout(WAIT, self.tcp.write_all(bytes)).await.expect("written in time").expect("write");
    }

    /// Sends `cmds` in one write.
    async fn send(&mut self, cmds: &[&[&str]]) {
        self.write(&encode(cmds)).await;
    }

    /// Reads more bytes; false once the server closed the connection.
    async fn fill(&mut self) -> bool {
        let mut chunk = vec![0; 64 * 1024];
        match timeout(WAIT, self.tcp.read(&mut chunk)).await.expect("an answer in time") {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next reply, or `None` once the connection closed.
    async fn try_read(&mut self) -> Option<Value> {
        loop {
            if let Some((v, n)) = parse(&self.buf).expect("a RESP2 reply") {
                self.buf.drain(..n);
                return Some(v);
            }
            if !self.fill().await {
                assert!(self.buf.is_empty(), "cut off: {:?}", String::from_utf8_lossy(&self.buf));
                return None;
            }
        }
    }

    async fn read(&mut self) -> Value {
        self.try_read().await.expect("a reply before the connection closed")
    }

    async fn call(&mut self, args: &[&str]) -> Value {
        self.send(&[args]).await;
        self.read().await
    }

    async fn call_bytes(&mut self, args: &[&[u8]]) -> Value {
        let mut out = Vec::new();
        encode_command(&mut out, args);
        self.write(&out).await;
        self.read().await
    }

    /// Raw bytes, read until they end with `suffix` (for RESP3, which `parse` does not
    /// read): everything read so far.
    async fn read_until(&mut self, suffix: &[u8]) -> Vec<u8> {
        while !self.buf.ends_with(suffix) {
            assert!(
                self.fill().await,
                "closed before {:?}: {:?}",
                String::from_utf8_lossy(suffix),
                String::from_utf8_lossy(&self.buf)
            );
        }
        std::mem::take(&mut self.buf)
    }

    /// Whether the server closes the connection, with nothing more said, within `WAIT`.
    async fn closes(&mut self) -> bool {
        assert!(self.buf.is_empty(), "unread: {:?}", String::from_utf8_lossy(&self.buf));
        let mut chunk = [0; 1024];
        match timeout(WAIT, self.tcp.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => true,
            Ok(Ok(n)) => panic!("more bytes instead of a close: {:?}", &chunk[..n]),
            Err(_) => false,
        }
    }
}

fn ok() -> Value {
    Value::Simple("OK".into())
}

fn pong() -> Value {
    Value::Simple("PONG".into())
}

fn bulk(s: impl AsRef<[u8]>) -> Value {
    Value::Bulk(Some(Bytes::copy_from_slice(s.as_ref())))
}

fn nil() -> Value {
    Value::Bulk(None)
}

fn int(n: i64) -> Value {
    Value::Integer(n)
}

fn err(text: &str) -> Value {
    Value::Error(text.into())
}

fn array(items: Vec<Value>) -> Value {
    Value::Array(Some(items))
}

/// The text of an error reply; panics on anything else.
fn error_text(v: &Value) -> &str {
    match v {
        Value::Error(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

// ---------------------------------------------------------------------------------
// 1. Strings.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn string_commands_reply_as_redis() {
    let node = TestNode::single().await;
    let mut c = node.connect().await;

    // SET / GET, and a missing key is nil (`$-1`).
    assert_eq!(c.call(&["SET", "k", "v"]).await, ok());
    assert_eq!(c.call(&["GET", "k"]).await, bulk("v"));
    assert_eq!(c.call(&["GET", "missing"]).await, nil());
    c.send(&[&["GET", "missing"]]).await;
    assert_eq!(c.read_until(b"\r\n").await, b"$-1\r\n", "nil is $-1 in RESP2");
    // Lower case, an empty value, binary bytes with CRLF inside.
    assert_eq!(c.call(&["set", "empty", ""]).await, ok());
    assert_eq!(c.call(&["get", "empty"]).await, bulk(""));
    let binary: &[u8] = b"a\r\nb\0\xff";
    assert_eq!(c.call_bytes(&[b"SET", b"bin", binary]).await, ok());
    assert_eq!(c.call(&["GET", "bin"]).await, bulk(binary));
    // SET ... GET answers the old value.
    assert_eq!(c.call(&["SET", "k", "v2", "GET"]).await, bulk("v"));
    assert_eq!(c.call(&["SET", "fresh", "x", "get"]).await, nil());
    assert_eq!(c.call(&["GET", "k"]).await, bulk("v2"));
    assert_eq!(c.call(&["GET", "fresh"]).await, bulk("x"));

    // GETSET: the old value, or nil; the new value is written either way.
    assert_eq!(c.call(&["GETSET", "k", "v3"]).await, bulk("v2"));
    assert_eq!(c.call(&["GET", "k"]).await, bulk("v3"));
    assert_eq!(c.call(&["GETSET", "gs", "first"]).await, nil());
    assert_eq!(c.call(&["GET", "gs"]).await, bulk("first"));

    // GETDEL: the old value once, then nil.
    assert_eq!(c.call(&["GETDEL", "gs"]).await, bulk("first"));
    assert_eq!(c.call(&["GETDEL", "gs"]).await, nil());
    assert_eq!(c.call(&["GET", "gs"]).await, nil());

    // MSET / MGET: nil for the missing, duplicates answered each time.
    assert_eq!(c.call(&["MSET", "a", "1", "b", "2"]).await, ok());
    assert_eq!(
        c.call(&["MGET", "a", "b", "nope", "a"]).await,
        array(vec![bulk("1"), bulk("2"), nil(), bulk("1")])
    );
    assert_eq!(
        c.call(&["MSET", "a", "1", "b"]).await,
        err("ERR wrong number of arguments for 'mset' command")
    );
    assert_eq!(c.call(&["MGET"]).await, err("ERR wrong number of arguments for 'mget' command"));

    // EXISTS counts keys as often as named; DEL counts those that existed, once each.
    assert_eq!(c.call(&["EXISTS", "a"]).await, int(1));
    assert_eq!(c.call(&["EXISTS", "a", "a"]).await, int(2));
    assert_eq!(c.call(&["EXISTS", "a", "b", "nope"]).await, int(2));
    assert_eq!(c.call(&["EXISTS", "nope"]).await, int(0));
    assert_eq!(c.call(&["DEL", "a", "nope"]).await, int(1));
    assert_eq!(c.call(&["EXISTS", "a"]).await, int(0));
    assert_eq!(c.call(&["DEL", "a"]).await, int(0));
    assert_eq!(c.call(&["DEL", "b", "b"]).await, int(1));
    assert_eq!(c.call(&["GET", "b"]).await, nil());
    assert_eq!(c.call(&["MSET", "u1", "x", "u2", "y"]).await, ok());
    assert_eq!(c.call(&["UNLINK", "u1", "u2", "u3", "u1"]).await, int(2));
    assert_eq!(c.call(&["MGET", "u1", "u2"]).await, array(vec![nil(), nil()]));
    assert_eq!(c.call(&["UNLINK", "u1"]).await, int(0));

    // STRLEN and TYPE.
    assert_eq!(c.call(&["STRLEN", "k"]).await, int(2));
    assert_eq!(c.call(&["STRLEN", "bin"]).await, int(binary.len() as i64));
    assert_eq!(c.call(&["STRLEN", "nope"]).await, int(0));
    assert_eq!(c.call(&["TYPE", "k"]).await, Value::Simple("string".into()));
    assert_eq!(c.call(&["TYPE", "nope"]).await, Value::Simple("none".into()));
    assert_eq!(c.call(&["DEL", "k"]).await, int(1));
    assert_eq!(c.call(&["TYPE", "k"]).await, Value::Simple("none".into()));

    // A value over the node's limit is refused, and nothing is written.
    let big = vec![b'x'; MAX_VALUE + 1];
    let r = c.call_bytes(&[b"SET", b"big", &big]).await;
    assert!(matches!(&r, Value::Error(_)), "{r:?}");
    assert_eq!(c.call(&["GET", "big"]).await, nil());
    node.stop().await;
}

// ---------------------------------------------------------------------------------
// 2. Pipelining.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_commands_run_and_answer_in_order() {
    let node = TestNode::single().await;
    let mut c = node.connect().await;

    c.send(&[&["SET", "k", "v1"], &["DEL", "k"], &["SET", "k", "v2"], &["GET", "k"]]).await;
    assert_eq!(c.read().await, ok());
    assert_eq!(c.read().await, int(1));
    assert_eq!(c.read().await, ok());
    assert_eq!(c.read().await, bulk("v2"));

    c.send(&[&["SET", "k", "a"], &["GETDEL", "k"], &["GET", "k"]]).await;
    assert_eq!(c.read().await, ok());
    assert_eq!(c.read().await, bulk("a"));
    assert_eq!(c.read().await, nil());

    // Connection commands answered at once keep their place among data commands.
    c.send(&[
        &["SET", "p", "1"],
        &["PING"],
        &["GET", "p"],
        &["ECHO", "e"],
        &["SELECT", "1"],
        &["GET", "p"],
        &["SELECT", "0"],
        &["GETSET", "p", "2"],
        &["PING", "m"],
        &["GET", "p"],
    ])
    .await;
    for want in
        [ok(), pong(), bulk("1"), bulk("e"), ok(), nil(), ok(), bulk("1"), bulk("m"), bulk("2")]
    {
        assert_eq!(c.read().await, want);
    }

    // 500 SETs then 500 GETs in one write.
    let keys: Vec<String> = (0..500).map(|i| format!("key-{i}")).collect();
    let values: Vec<String> = (0..500).map(|i| format!("value-{i}")).collect();
    let mut cmds: Vec<Vec<&str>> = Vec::new();
    for (k, v) in keys.iter().zip(&values) {
        cmds.push(vec!["SET", k, v]);
    }
    for k in &keys {
        cmds.push(vec!["GET", k]);
    }
    let refs: Vec<&[&str]> = cmds.iter().map(Vec::as_slice).collect();
    c.send(&refs).await;
    for i in 0..500 {
        assert_eq!(c.read().await, ok(), "SET {i}");
    }
    for (i, v) in values.iter().enumerate() {
        assert_eq!(c.read().await, bulk(v), "GET {i}");
    }
    assert_eq!(c.call(&["PING"]).await, pong());
    node.stop().await;
}

/// More commands in one write than a connection keeps waiting for the node
/// (`conn::MAX_QUEUED`, 1024): every one is answered, in order, without the client
/// sending anything more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_longer_than_the_queue_is_answered_whole() {
    let node = TestNode::single().await;
    let mut c = node.connect().await;
    assert_eq!(c.call(&["SET", "k", "v"]).await, ok());
    let n = 3000;
    let gets: Vec<&[&str]> = vec![&["GET", "k"]; n];
    c.send(&gets).await;
    for i in 0..n {
        assert_eq!(c.read().await, bulk("v"), "GET {i} of {n}");
    }
    // Inline commands are short: one read takes in more than the queue holds.
    let n = 5000;
    c.write(&b"GET k\n".repeat(n)).await;
    for i in 0..n {
        let r = timeout(Duration::from_secs(5), c.read()).await;
        assert!(r.is_ok(), "inline GET {i} of {n} never answered");
        assert_eq!(r.unwrap(), bulk("v"), "inline GET {i} of {n}");
    }
    assert_eq!(c.call(&["PING"]).await, pong());
    node.stop().await;
}

// ---------------------------------------------------------------------------------
// 3. Expiry.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_options_of_set() {
    let node = TestNode::single().await;
    let mut c = node.connect().await;

    assert_eq!(c.call(&["SET", "ex", "v", "EX", "1"]).await, ok());
    let set_at = Instant::now();
    assert_eq!(c.call(&["SET", "px", "v", "px", "300"]).await, ok());
    assert_eq!(c.call(&["GET", "ex"]).await, bulk("v"));
    assert_eq!(c.call(&["GET", "px"]).await, bulk("v"));
    // KEEPTTL: refused with a reason (key untouched), or — as Redis — the value is
    // replaced and the expiry kept.
    assert_eq!(c.call(&["SET", "kt", "v", "PX", "300"]).await, ok());
    let keep = c.call(&["SET", "kt", "w", "KEEPTTL"]).await;
    match &keep {
        Value::Error(e) => {
            assert!(e.starts_with("ERR "), "SET KEEPTTL: {e}");
            assert_eq!(c.call(&["GET", "kt"]).await, bulk("v"));
        }
        other => {
            assert_eq!(*other, ok(), "SET KEEPTTL");
            assert_eq!(c.call(&["GET", "kt"]).await, bulk("w"));
        }
    }
    sleep(Duration::from_millis(500)).await;
    assert_eq!(c.call(&["GET", "px"]).await, nil(), "PX 300 is gone after 500 ms");
    assert_eq!(c.call(&["GET", "kt"]).await, nil(), "KEEPTTL kept PX 300: gone after 500 ms");
    sleep(Duration::from_millis(1500).saturating_sub(set_at.elapsed())).await;
    assert_eq!(c.call(&["GET", "ex"]).await, nil(), "EX 1 is gone after 1.5 s");
    assert_eq!(c.call(&["EXISTS", "ex", "px"]).await, int(0));

    // EXAT / PXAT in the past delete the key (the reply is still +OK).
    assert_eq!(c.call(&["SET", "at", "v"]).await, ok());
    assert_eq!(c.call(&["SET", "at", "w", "EXAT", "1000"]).await, ok());
    assert_eq!(c.call(&["GET", "at"]).await, nil());
    assert_eq!(c.call(&["SET", "pat", "v"]).await, ok());
    let past = (now_ms() - 10_000).to_string();
    assert_eq!(c.call(&["SET", "pat", "w", "PXAT", &past]).await, ok());
    assert_eq!(c.call(&["GET", "pat"]).await, nil());
    // ... and with GET, the old value is answered.
    assert_eq!(c.call(&["SET", "pat", "v"]).await, ok());
    assert_eq!(c.call(&["SET", "pat", "w", "PXAT", &past, "GET"]).await, bulk("v"));
    assert_eq!(c.call(&["GET", "pat"]).await, nil());
    // EXAT / PXAT in the future keep the key.
    let later_s = (now_ms() / 1000 + 100).to_string();
    let later_ms = (now_ms() + 100_000).to_string();
    assert_eq!(c.call(&["SET", "f1", "v", "EXAT", &later_s]).await, ok());
    assert_eq!(c.call(&["SET", "f2", "v", "PXAT", &later_ms]).await, ok());
    assert_eq!(c.call(&["MGET", "f1", "f2"]).await, array(vec![bulk("v"), bulk("v")]));

    // Bad expiries, as Redis words them; nothing is written.
    let invalid = err("ERR invalid expire time in 'set' command");
    assert_eq!(c.call(&["SET", "bad", "v", "EX", "0"]).await, invalid);
    assert_eq!(c.call(&["SET", "bad", "v", "EX", "-1"]).await, invalid);
    assert_eq!(c.call(&["SET", "bad", "v", "PX", "0"]).await, invalid);
    assert_eq!(c.call(&["SET", "bad", "v", "EXAT", "0"]).await, invalid);
    assert_eq!(c.call(&["SET", "bad", "v", "EX", "99999999999999999"]).await, invalid);
    assert_eq!(
        c.call(&["SET", "bad", "v", "EX", "soon"]).await,
        err("ERR value is not an integer or out of range")
    );
    assert_eq!(c.call(&["SET", "bad", "v", "EX"]).await, err("ERR syntax error"));
    assert_eq!(c.call(&["SET", "bad", "v", "EX", "1", "PX", "5"]).await, err("ERR syntax error"));
    assert_eq!(c.call(&["SET", "bad", "v", "BOGUS"]).await, err("ERR syntax error"));
    assert_eq!(c.call(&["GET", "bad"]).await, nil());

    // Conditional writes are refused with a reason; the key is untouched.
    assert_eq!(c.call(&["SET", "cond", "old"]).await, ok());
    for option in ["NX", "XX"] {
        let r = c.call(&["SET", "cond", "new", option]).await;
        let text = error_text(&r);
        assert!(text.starts_with("ERR "), "SET {option}: {text}");
    }
    assert!(error_text(&c.call(&["SETNX", "cond", "new"]).await).starts_with("ERR "));
    assert_eq!(c.call(&["GET", "cond"]).await, bulk("old"));
    node.stop().await;
}

// ---------------------------------------------------------------------------------
// 4. Errors.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_leave_the_connection_usable() {
    let node = TestNode::single().await;
    let mut c = node.connect().await;

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["foo", "a", "b"], "ERR unknown command 'foo', with args beginning with: 'a' 'b' "),
        (vec!["nosuchcmd"], "ERR unknown command 'nosuchcmd', with args beginning with: "),
        (vec!["GET"], "ERR wrong number of arguments for 'get' command"),
        (vec!["get", "a", "b"], "ERR wrong number of arguments for 'get' command"),
        (vec!["SET", "k"], "ERR wrong number of arguments for 'set' command"),
        (vec!["ECHO"], "ERR wrong number of arguments for 'echo' command"),
        (vec!["DEL"], "ERR wrong number of arguments for 'del' command"),
        (vec!["PING", "a", "b"], "ERR wrong number of arguments for 'ping' command"),
    ];
    for (cmd, want) in &cases {
        assert_eq!(c.call(cmd).await, err(want), "{cmd:?}");
        assert_eq!(c.call(&["PING"]).await, pong(), "after {cmd:?}");
    }

    // What dhrt cannot honour is refused with why.
    let refused: Vec<(Vec<&str>, &str)> = vec![
        (vec!["INCR", "k"], "INCR"),
        (vec!["DECRBY", "k", "2"], "DECR"),
        (vec!["APPEND", "k", "x"], "APPEND"),
        (vec!["MULTI"], "MULTI"),
        (vec!["EXEC"], "EXEC"),
        (vec!["EVAL", "return 1", "0"], "EVAL"),
        (vec!["FCALL", "f", "0"], "FUNCTION"),
    ];
    for (cmd, names) in &refused {
        let r = c.call(cmd).await;
        let text = error_text(&r);
        assert!(text.starts_with("ERR "), "{cmd:?}: {text}");
        assert!(text.contains(names), "{cmd:?} says what it refuses: {text}");
        assert!(text.len() > 40, "{cmd:?} says why: {text}");
        assert_eq!(c.call(&["PING"]).await, pong(), "after {cmd:?}");
    }
    // Nothing was written by the refused commands.
    assert_eq!(c.call(&["GET", "k"]).await, nil());
    node.stop().await;
}

// ---------------------------------------------------------------------------------
// 5. Protocol errors and inline commands.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_close_only_their_connection() {
    let node = TestNode::single().await;
    let mut bystander = node.connect().await;
    assert_eq!(bystander.call(&["SET", "k", "v"]).await, ok());

    // Not a bulk string inside an array.
    let mut c = node.connect().await;
    c.write(b"*1\r\n+PING\r\n").await;
    assert_eq!(c.read().await, err("ERR Protocol error: expected '$', got '+'"));
    assert!(c.closes().await, "closed after a protocol error");
    assert_eq!(bystander.call(&["GET", "k"]).await, bulk("v"));

    // An inline line longer than 64 KiB without a newline.
    let mut c = node.connect().await;
    c.write(&vec![b'a'; 64 * 1024 + 1]).await;
    assert_eq!(c.read().await, err("ERR Protocol error: too big inline request"));
    assert!(c.closes().await, "closed after a too big inline request");
    assert_eq!(bystander.call(&["PING"]).await, pong());

    // A bulk string longer than the node's largest frame.
    let mut c = node.connect().await;
    let max_frame = node.server.state.max_frame;
    c.write(format!("*2\r\n$3\r\nGET\r\n${}\r\n", max_frame + 1).as_bytes()).await;
    assert_eq!(c.read().await, err("ERR Protocol error: invalid bulk length"));
    assert!(c.closes().await, "closed after an invalid bulk length");

    // A multibulk count that is no number.
    let mut c = node.connect().await;
    c.write(b"*x\r\n").await;
    assert_eq!(c.read().await, err("ERR Protocol error: invalid multibulk length"));
    assert!(c.closes().await);

    // Commands before the error are answered first.
    let mut c = node.connect().await;
    let mut bytes = encode(&[&["GET", "k"], &["PING"]]);
    bytes.extend_from_slice(b"*1\r\n+PING\r\n");
    c.write(&bytes).await;
    assert_eq!(c.read().await, bulk("v"));
    assert_eq!(c.read().await, pong());
    assert_eq!(c.read().await, err("ERR Protocol error: expected '$', got '+'"));
    assert!(c.closes().await);

    assert_eq!(bystander.call(&["GET", "k"]).await, bulk("v"), "the bystander is served");

    // Inline commands, as telnet sends them; empty lines and empty arrays are skipped.
    let mut c = node.connect().await;
    c.write(b"PING\r\n").await;
    assert_eq!(c.read().await, pong());
    c.write(b"SET a \"b c\"\r\n").await;
    assert_eq!(c.read().await, ok());
    c.write(b"get a\n").await;
    assert_eq!(c.read().await, bulk("b c"));
    c.write(b"SET q 'x y'\r\nGET  q\r\n").await;
    assert_eq!(c.read().await, ok());
    assert_eq!(c.read().await, bulk("x y"));
    c.write(b"\r\n*0\r\n\r\nECHO hi\r\n").await;
    assert_eq!(c.read().await, bulk("hi"));
    assert_eq!(c.call(&["GET", "a"]).await, bulk("b c"), "RESP after inline");
    node.stop().await;
}

// ---------------------------------------------------------------------------------
// 6. Connection commands.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_commands() {
    let node = TestNode::single().await;
    let mut c = node.connect().await;

    assert_eq!(c.call(&["PING"]).await, pong());
    assert_eq!(c.call(&["ping", "hello world"]).await, bulk("hello world"));
    assert_eq!(c.call_bytes(&[b"ECHO", b"a\r\nb\0"]).await, bulk(b"a\r\nb\0"));

    // CLIENT.
    assert_eq!(c.call(&["CLIENT", "GETNAME"]).await, nil());
    assert_eq!(c.call(&["CLIENT", "SETNAME", "conn-a"]).await, ok());
    assert_eq!(c.call(&["client", "getname"]).await, bulk("conn-a"));
    let r = c.call(&["CLIENT", "SETNAME", "a b"]).await;
    assert!(error_text(&r).starts_with("ERR Client names cannot contain spaces"), "{r:?}");
    assert_eq!(c.call(&["CLIENT", "GETNAME"]).await, bulk("conn-a"));
    let Value::Integer(id) = c.call(&["CLIENT", "ID"]).await else { panic!("CLIENT ID") };
    assert!(id > 0);
    let Value::Bulk(Some(info)) = c.call(&["CLIENT", "INFO"]).await else { panic!("CLIENT INFO") };
    let info = String::from_utf8_lossy(&info).into_owned();
    assert!(info.contains(&format!("id={id} ")), "{info}");
    assert!(info.contains("name=conn-a"), "{info}");
    assert!(info.contains("db=0"), "{info}");
    assert_eq!(c.call(&["CLIENT", "SETINFO", "lib-name", "redis-rs"]).await, ok());
    assert_eq!(c.call(&["CLIENT", "SETINFO", "lib-ver", "0.25.0"]).await, ok());
    assert!(error_text(&c.call(&["CLIENT", "KILL", "x"]).await).starts_with("ERR "));
    assert_eq!(
        c.call(&["CLIENT"]).await,
        err("ERR wrong number of arguments for 'client' command")
    );

    // COMMAND: COUNT is the number of entries; INFO describes a command.
    let Value::Array(Some(all)) = c.call(&["COMMAND"]).await else { panic!("COMMAND") };
    assert_eq!(c.call(&["COMMAND", "COUNT"]).await, int(all.len() as i64));
    let names: Vec<Value> = all
        .iter()
        .map(|e| match e {
            Value::Array(Some(fields)) => fields[0].clone(),
            other => panic!("a COMMAND entry: {other:?}"),
        })
        .collect();
    for name in ["get", "set", "del", "ping", "hello", "select"] {
        assert!(names.contains(&bulk(name)), "{name} in COMMAND");
    }
    let Value::Array(Some(info)) = c.call(&["COMMAND", "INFO", "get", "nosuch"]).await else {
        panic!("COMMAND INFO")
    };
    assert_eq!(info.len(), 2);
    let Value::Array(Some(get)) = &info[0] else { panic!("GET's entry: {:?}", info[0]) };
    assert_eq!(&get[..2], &[bulk("get"), int(2)]);
    assert_eq!(&get[3..6], &[int(1), int(1), int(1)], "GET's key positions");
    assert_eq!(info[1], nil());

    // DHRT.CONSISTENCY.
    assert_eq!(c.call(&["DHRT.CONSISTENCY"]).await, bulk("default"));
    assert_eq!(c.call(&["DHRT.CONSISTENCY", "quorum"]).await, ok());
    assert_eq!(c.call(&["DHRT.CONSISTENCY"]).await, bulk("quorum"));
    assert_eq!(c.call(&["dhrt.consistency", "ALL"]).await, ok());
    assert_eq!(c.call(&["DHRT.CONSISTENCY"]).await, bulk("all"));
    assert_eq!(c.call(&["SET", "c", "at all"]).await, ok());
    assert_eq!(c.call(&["GET", "c"]).await, bulk("at all"));
    let r = c.call(&["DHRT.CONSISTENCY", "bogus"]).await;
    assert!(error_text(&r).starts_with("ERR "), "{r:?}");
    assert_eq!(c.call(&["DHRT.CONSISTENCY"]).await, bulk("all"), "unchanged by a bad level");
    assert_eq!(c.call(&["DHRT.CONSISTENCY", "default"]).await, ok());

    // SELECT: database 1 is the collection db1.
    assert_eq!(c.call(&["SELECT", "1"]).await, ok());
    assert_eq!(c.call(&["SET", "sk", "in-db1"]).await, ok());
    assert_eq!(c.call(&["GET", "sk"]).await, bulk("in-db1"));
    assert_eq!(c.call(&["DHRT.COLLECTION"]).await, bulk("db1"));
    let Value::Bulk(Some(info)) = c.call(&["CLIENT", "INFO"]).await else { panic!("CLIENT INFO") };
    assert!(contains(&info, b"db=1 "), "{:?}", String::from_utf8_lossy(&info));
    for bad in ["99", "16", "-1"] {
        assert_eq!(c.call(&["SELECT", bad]).await, err("ERR DB index is out of range"), "{bad}");
    }
    assert_eq!(c.call(&["SELECT", "x"]).await, err("ERR value is not an integer or out of range"));
    assert_eq!(c.call(&["GET", "sk"]).await, bulk("in-db1"), "still in db1");

    let mut d = node.connect().await;
    assert_eq!(d.call(&["DHRT.COLLECTION"]).await, bulk("default"), "a new connection is in 0");
    assert_eq!(d.call(&["GET", "sk"]).await, nil());
    assert_eq!(d.call(&["SELECT", "0"]).await, ok());
    assert_eq!(d.call(&["GET", "sk"]).await, nil());
    assert_eq!(d.call(&["DHRT.COLLECTION", "db1"]).await, ok());
    assert_eq!(d.call(&["GET", "sk"]).await, bulk("in-db1"));
    assert_eq!(d.call(&["DHRT.COLLECTION", "other"]).await, ok());
    assert_eq!(d.call(&["GET", "sk"]).await, nil());
    assert_eq!(d.call(&["SELECT", "1"]).await, ok());
    assert_eq!(d.call(&["GET", "sk"]).await, bulk("in-db1"));

    // HELLO 3: a RESP3 map, and nil is `_` afterwards; HELLO 2 goes back.
    c.send(&[&["HELLO", "3"], &["PING"]]).await;
    let raw = c.read_until(b"+PONG\r\n").await;
    assert_eq!(raw[0], b'%', "{:?}", String::from_utf8_lossy(&raw));
    assert!(contains(&raw, b"$5\r\nproto\r\n:3\r\n"), "{:?}", String::from_utf8_lossy(&raw));
    assert!(contains(&raw, format!("$2\r\nid\r\n:{id}\r\n").as_bytes()), "HELLO's id is CLIENT ID");
    c.send(&[&["GET", "missing"], &["PING"]]).await;
    assert_eq!(c.read_until(b"+PONG\r\n").await, b"_\r\n+PONG\r\n");
    c.send(&[&["MGET", "sk", "missing"], &["PING"]]).await;
    assert_eq!(c.read_until(b"+PONG\r\n").await, b"*2\r\n$6\r\nin-db1\r\n_\r\n+PONG\r\n");
    // A pipeline across HELLO: each reply in the protocol of its time.
    c.send(&[&["GET", "missing"], &["HELLO", "2"], &["GET", "missing"]]).await;
    let raw = c.read_until(b"$-1\r\n").await;
    assert!(raw.starts_with(b"_\r\n*16\r\n"), "{:?}", String::from_utf8_lossy(&raw));
    let r = c.call(&["HELLO"]).await;
    let Value::Array(Some(fields)) = r else { panic!("HELLO in RESP2: {r:?}") };
    let at = fields.iter().position(|f| *f == bulk("proto")).expect("proto");
    assert_eq!(fields[at + 1], int(2));
    assert!(fields.contains(&bulk("server")) && fields.contains(&bulk("version")));
    assert_eq!(c.call(&["GET", "missing"]).await, nil());
    assert_eq!(c.call(&["HELLO", "4"]).await, err("NOPROTO unsupported protocol version"));
    assert_eq!(c.call(&["GET", "missing"]).await, nil(), "still RESP2 after HELLO 4");
    c.send(&[&["HELLO", "3", "SETNAME", "named-by-hello"], &["PING"]]).await;
    let raw = c.read_until(b"+PONG\r\n").await;
    assert_eq!(raw[0], b'%', "{:?}", String::from_utf8_lossy(&raw));
    c.send(&[&["HELLO", "2"]]).await;
    assert!(matches!(c.read().await, Value::Array(Some(_))));
    assert_eq!(c.call(&["CLIENT", "GETNAME"]).await, bulk("named-by-hello"));

    // QUIT: +OK, then the connection closes.
    assert_eq!(c.call(&["QUIT"]).await, ok());
    assert!(c.closes().await, "closed after QUIT");
    assert_eq!(d.call(&["PING"]).await, pong());
    node.stop().await;
}

/// `--resp-db 1=users`: SELECT 1 is the collection `users`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databases_can_be_mapped_to_collections() {
    let mut opts = options(1);
    opts.resp_databases = vec!["1=users".into(), "20=logs".into()];
    let node = TestNode::start(opts, Vec::new()).await;
    node.ready(None).await;
    let mut c = node.connect().await;
    assert_eq!(c.call(&["SELECT", "1"]).await, ok());
    assert_eq!(c.call(&["DHRT.COLLECTION"]).await, bulk("users"));
    assert_eq!(c.call(&["SET", "u", "alice"]).await, ok());
    assert_eq!(c.call(&["SELECT", "20"]).await, ok());
    assert_eq!(c.call(&["SET", "l", "line"]).await, ok());
    assert_eq!(c.call(&["SELECT", "17"]).await, err("ERR DB index is out of range"));
    assert_eq!(c.call(&["SELECT", "2"]).await, ok(), "the rest of the table stays");
    assert_eq!(c.call(&["DHRT.COLLECTION"]).await, bulk("db2"));

    let mut d = node.connect().await;
    assert_eq!(d.call(&["DHRT.COLLECTION", "users"]).await, ok());
    assert_eq!(d.call(&["GET", "u"]).await, bulk("alice"));
    let Value::Bulk(Some(info)) = d.call(&["CLIENT", "INFO"]).await else { panic!("CLIENT INFO") };
    assert!(contains(&info, b"db=1 "), "{:?}", String::from_utf8_lossy(&info));
    assert_eq!(d.call(&["DHRT.COLLECTION", "db1"]).await, ok());
    assert_eq!(d.call(&["GET", "u"]).await, nil());
    assert_eq!(d.call(&["DHRT.COLLECTION", "logs"]).await, ok());
    assert_eq!(d.call(&["GET", "l"]).await, bulk("line"));
    node.stop().await;
}

// ---------------------------------------------------------------------------------
// 7. Authentication.

async fn node_with_tokens(admin: &common::AdminToken) -> TestNode {
    let mut opts = options(1);
    opts.security = SecurityOptions {
        admin_token_file: Some(admin.path.clone()),
        ..SecurityOptions::default()
    };
    let node = TestNode::start(opts, Vec::new()).await;
    node.ready(Some(&admin.token)).await;
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_required_before_anything_else() {
    let admin = common::admin_token();
    let node = node_with_tokens(&admin).await;
    let token = admin.token.as_str();
    let noauth = err("NOAUTH Authentication required.");
    let wrongpass = err("WRONGPASS invalid username-password pair or user is disabled.");

    let mut c = node.connect().await;
    assert_eq!(c.call(&["GET", "k"]).await, noauth);
    assert_eq!(c.call(&["SET", "k", "v"]).await, noauth);
    assert_eq!(c.call(&["PING"]).await, noauth);
    assert_eq!(c.call(&["SELECT", "1"]).await, noauth);
    assert!(error_text(&c.call(&["HELLO", "3"]).await).starts_with("NOAUTH "));
    assert_eq!(c.call(&["AUTH", "wrong"]).await, wrongpass);
    assert_eq!(c.call(&["GET", "k"]).await, noauth);
    assert_eq!(c.call(&["AUTH", "default", "wrong"]).await, wrongpass);
    assert_eq!(c.call(&["AUTH", "a", "b", "c"]).await, err("ERR syntax error"));
    assert_eq!(c.call(&["AUTH", token]).await, ok());
    assert_eq!(c.call(&["SET", "k", "v"]).await, ok());
    assert_eq!(c.call(&["GET", "k"]).await, bulk("v"));
    assert_eq!(c.call(&["PING"]).await, pong());

    // The two-argument form.
    let mut c = node.connect().await;
    assert_eq!(c.call(&["AUTH", "default", token]).await, ok());
    assert_eq!(c.call(&["GET", "k"]).await, bulk("v"));

    // HELLO 3 AUTH default <token>: a RESP3 map, then served in RESP3.
    let mut c = node.connect().await;
    c.send(&[&["HELLO", "3", "AUTH", "default", token], &["GET", "k"], &["GET", "nope"]]).await;
    let raw = c.read_until(b"$1\r\nv\r\n_\r\n").await;
    assert_eq!(raw[0], b'%', "{:?}", String::from_utf8_lossy(&raw));
    // HELLO with a wrong token is refused, and the connection stays a guest.
    let mut c = node.connect().await;
    assert_eq!(c.call(&["HELLO", "3", "AUTH", "default", "wrong"]).await, wrongpass);
    assert_eq!(c.call(&["GET", "k"]).await, noauth, "still RESP2, still a guest");

    // Before authenticating, at most 10 arguments ...
    let mut c = node.connect().await;
    c.write(b"*11\r\n").await;
    assert_eq!(c.read().await, err("ERR Protocol error: unauthenticated multibulk length"));
    assert!(c.closes().await);
    // ... of at most 16 KiB.
    let mut c = node.connect().await;
    c.write(b"*2\r\n$4\r\nAUTH\r\n$20000\r\n").await;
    assert_eq!(c.read().await, err("ERR Protocol error: unauthenticated bulk length"));
    assert!(c.closes().await);
    // Once authenticated, the node's bounds.
    let mut c = node.connect().await;
    assert_eq!(c.call(&["AUTH", token]).await, ok());
    let big = vec![b'x'; 3000];
    let mut args: Vec<&[u8]> = vec![b"MGET"];
    args.extend(vec![&b"k"[..]; 20]);
    let Value::Array(Some(values)) = c.call_bytes(&args).await else { panic!("MGET") };
    assert_eq!(values.len(), 20);
    assert_eq!(c.call_bytes(&[b"SET", b"big", &big]).await, ok());
    node.stop().await;
}

/// Redis keeps a connection authenticated when a later AUTH fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_auth_keeps_the_earlier_authentication() {
    let admin = common::admin_token();
    let node = node_with_tokens(&admin).await;
    let mut c = node.connect().await;
    assert_eq!(c.call(&["AUTH", &admin.token]).await, ok());
    assert_eq!(c.call(&["SET", "k", "v"]).await, ok());
    let r = c.call(&["AUTH", "wrong"]).await;
    assert!(error_text(&r).starts_with("WRONGPASS"), "{r:?}");
    assert_eq!(c.call(&["GET", "k"]).await, bulk("v"), "still authenticated, as in Redis");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_without_tokens_required_answers_as_redis_without_a_password() {
    let node = TestNode::single().await;
    let mut c = node.connect().await;
    let r = c.call(&["AUTH", "x"]).await;
    assert!(
        error_text(&r).starts_with("ERR AUTH <password> called without any password configured"),
        "{r:?}"
    );
    assert_eq!(c.call(&["SET", "k", "v"]).await, ok(), "still served");
    assert_eq!(c.call(&["GET", "k"]).await, bulk("v"));
    node.stop().await;
}

/// Redis with no password set accepts any password for the `default` user when it is
/// named (the two-argument AUTH, and HELLO ... AUTH default), which is what client
/// libraries configured with a password send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_default_user_auth_without_tokens_is_accepted_as_redis_does() {
    let node = TestNode::single().await;
    let mut c = node.connect().await;
    let auth = c.call(&["AUTH", "default", "anything"]).await;
    let mut c = node.connect().await;
    c.send(&[&["HELLO", "3", "AUTH", "default", "anything"], &["PING"]]).await;
    let mut raw = c.read_until(b"+PONG\r\n").await;
    raw.truncate(raw.len().min(40));
    let hello = String::from_utf8_lossy(&raw).into_owned();
    assert!(auth == ok() && hello.starts_with('%'), "AUTH default: {auth:?}; HELLO: {hello:?}");
    node.stop().await;
}

// ---------------------------------------------------------------------------------
// 8. Limits.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_port_shares_the_connection_cap() {
    let mut opts = options(1);
    opts.limits.max_connections = 4;
    let node = TestNode::start(opts, Vec::new()).await;
    let mut open = Vec::new();
    for i in 0..4 {
        let mut c = node.connect().await;
        assert_eq!(c.call(&["PING"]).await, pong(), "connection {i}");
        open.push(c);
    }
    let refused_before = node.server.state.counters.connections_refused.load(Ordering::Relaxed);
    // The fifth is closed at once, unanswered.
    let mut extra = node.connect().await;
    let _ = extra.tcp.write_all(&encode(&[&["PING"]])).await;
    assert!(extra.closes().await, "a connection over the cap is closed");
    // So is one to the main port: the slots are shared.
    let mut http = Redis::connect(node.addr).await;
    let _ = http.tcp.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(http.closes().await, "the main port is full too");
    let refused = node.server.state.counters.connections_refused.load(Ordering::Relaxed);
    assert!(refused >= refused_before + 2, "{refused_before} -> {refused}");
    // The open ones are still served.
    for c in &mut open {
        assert_eq!(c.call(&["PING"]).await, pong());
    }
    // Closing one frees its slot.
    drop(open.pop());
    let deadline = Instant::now() + WAIT;
    loop {
        let mut c = node.connect().await;
        let _ = c.tcp.write_all(&encode(&[&["PING"]])).await;
        if c.try_read().await == Some(pong()) {
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot was never reused");
        sleep(Duration::from_millis(50)).await;
    }
    node.stop().await;
}

/// A lone node taking values of up to 2 MiB, holding a 1 MiB value under `big`: the
/// node, a client of it, and the value.
async fn node_with_a_big_value() -> (TestNode, Redis, Vec<u8>) {
    let mut opts = options(1);
    opts.max_value_bytes = 2 << 20;
    let node = TestNode::start(opts, Vec::new()).await;
    node.ready(None).await;
    let mut c = node.connect().await;
    let value = vec![b'x'; 1 << 20];
    assert_eq!(c.call_bytes(&[b"SET", b"big", &value]).await, ok());
    (node, c, value)
}

/// A client that pipelines GETs of a 1 MiB value and never reads the replies: the node
/// holds at most its output limit of replies for it (it stops reading the client, or
/// disconnects it), and keeps serving everyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_replies_is_bounded() {
    let _serial = SERIAL.lock().await;
    let (node, mut well, _) = node_with_a_big_value().await;
    assert_eq!(well.call(&["SET", "small", "yes"]).await, ok());

    // The node's unsent replies, sampled while the abuse runs.
    let output = node.server.state.output.clone();
    let limit = output.limit;
    let peak = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done, output) = (peak.clone(), done.clone(), output.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(output.total(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_micros(20));
            }
        })
    };

    let mut abuser = node.connect().await;
    let mut batch = Vec::new();
    for _ in 0..4096 {
        encode_command(&mut batch, &[b"GET", b"big"]);
    }
    // Up to 200 batches: 800 Ki GETs, 800 GiB of replies if nothing bounded them.
    let mut outcome = None;
    for i in 0..200 {
        match timeout(Duration::from_secs(2), abuser.tcp.write_all(&batch)).await {
            Err(_) => {
                outcome = Some(format!("writes blocked after {i} batches"));
                break;
            }
            Ok(Err(e)) => {
                outcome = Some(format!("disconnected after {i} batches: {e}"));
                break;
            }
            Ok(Ok(())) => {}
        }
    }
    let outcome = outcome.expect("the node kept reading GETs it could not answer");
    println!("a client that never reads: {outcome}");
    if outcome.starts_with("disconnected") {
        let slow = node.server.state.counters.slow_clients_disconnected.load(Ordering::Relaxed);
        assert_eq!(slow, 1, "disconnected as a slow client, for its unread replies");
    }

    // Everyone else is served promptly, meanwhile.
    let mut other = node.connect().await;
    let answered = timeout(Duration::from_secs(5), async {
        assert_eq!(other.call(&["PING"]).await, pong());
        assert_eq!(other.call(&["GET", "small"]).await, bulk("yes"));
        assert_eq!(well.call(&["GET", "small"]).await, bulk("yes"));
    })
    .await;
    assert!(answered.is_ok(), "the node did not answer others while flooded");
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = peak.load(Ordering::Relaxed);
    println!("unsent replies peaked at {} KiB (limit {} KiB)", peak >> 10, limit >> 10);
    assert!(peak <= limit + (2 << 20), "unsent replies reached {peak} bytes, limit {limit}");
    drop(abuser);
    node.stop().await;
}

/// A client that pipelines more replies than the output limit and reads them late is
/// only stopped being read until it catches up (as conn.rs says, and as Redis serves a
/// normal client): every reply arrives, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_its_replies_late_gets_them_all() {
    let _serial = SERIAL.lock().await;
    let (node, mut c, value) = node_with_a_big_value().await;
    let limit = node.server.state.output.limit;
    let n = 300;
    assert!(n << 20 > limit, "more replies than the output limit");
    let gets: Vec<&[&str]> = vec![&["GET", "big"]; n];
    c.send(&gets).await;
    sleep(Duration::from_millis(300)).await;
    for i in 0..n {
        let r = c.try_read().await;
        let slow = node.server.state.counters.slow_clients_disconnected.load(Ordering::Relaxed);
        assert!(r.is_some(), "closed after {i} of {n} replies (slow clients disconnected: {slow})");
        if r != Some(bulk(&value)) {
            let text = format!("{r:?}");
            panic!("reply {i} of {n}: {}", &text[..text.len().min(300)]);
        }
    }
    assert_eq!(c.call(&["PING"]).await, pong());
    node.stop().await;
}

// ---------------------------------------------------------------------------------
// 9. A cluster.

/// Three nodes with three replicas, every one seeing all three alive.
async fn cluster3() -> Vec<TestNode> {
    let a = TestNode::start(options(3), Vec::new()).await;
    let seed = a.addr.to_string();
    let b = TestNode::start(options(3), vec![seed.clone()]).await;
    let c = TestNode::start(options(3), vec![seed]).await;
    let nodes = vec![a, b, c];
    let deadline = Instant::now() + Duration::from_secs(30);
    for node in &nodes {
        loop {
            let alive = match dhrt::client::Client::connect(&node.addr.to_string()).await {
                Ok(client) => client
                    .stats(None)
                    .await
                    .is_ok_and(|s| s.members.alive == 3 && s.status == "alive"),
                Err(_) => false,
            };
            if alive {
                break;
            }
            assert!(Instant::now() < deadline, "{} never saw 3 alive members", node.addr);
            sleep(Duration::from_millis(100)).await;
        }
    }
    for node in &nodes {
        node.ready(None).await;
    }
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_one_node_is_read_through_another() {
    let _serial = SERIAL.lock().await;
    let nodes = cluster3().await;
    let mut a = nodes[0].connect().await;
    let mut b = nodes[1].connect().await;
    let mut c = nodes[2].connect().await;
    for conn in [&mut a, &mut b, &mut c] {
        assert_eq!(conn.call(&["DHRT.CONSISTENCY", "quorum"]).await, ok());
    }

    assert_eq!(a.call(&["SET", "k", "from-a"]).await, ok());
    assert_eq!(b.call(&["GET", "k"]).await, bulk("from-a"));
    assert_eq!(c.call(&["MSET", "m1", "x", "m2", "y"]).await, ok());
    assert_eq!(
        b.call(&["MGET", "m1", "m2", "k"]).await,
        array(vec![bulk("x"), bulk("y"), bulk("from-a")])
    );
    assert_eq!(b.call(&["EXISTS", "k", "m1", "nope"]).await, int(2));
    assert_eq!(c.call(&["DEL", "k", "k", "m1"]).await, int(2));
    assert_eq!(a.call(&["GET", "k"]).await, nil());
    assert_eq!(b.call(&["GETSET", "m2", "z"]).await, bulk("y"));
    assert_eq!(a.call(&["GETDEL", "m2"]).await, bulk("z"));
    assert_eq!(c.call(&["GET", "m2"]).await, nil());
    assert_eq!(a.call(&["SELECT", "3"]).await, ok());
    assert_eq!(a.call(&["SET", "s", "in-db3"]).await, ok());
    assert_eq!(b.call(&["DHRT.COLLECTION", "db3"]).await, ok());
    assert_eq!(b.call(&["GET", "s"]).await, bulk("in-db3"));

    // Pipelines keep their order when the node must ask other replicas.
    b.send(&[&["SET", "p", "v1"], &["DEL", "p"], &["SET", "p", "v2"], &["GET", "p"]]).await;
    assert_eq!(b.read().await, ok());
    assert_eq!(b.read().await, int(1));
    assert_eq!(b.read().await, ok());
    assert_eq!(b.read().await, bulk("v2"));
    let keys: Vec<String> = (0..100).map(|i| format!("rw-{i}")).collect();
    let mut cmds: Vec<Vec<&str>> = Vec::new();
    for k in &keys {
        cmds.push(vec!["SET", k, k]);
        cmds.push(vec!["GET", k]);
    }
    let refs: Vec<&[&str]> = cmds.iter().map(Vec::as_slice).collect();
    c.send(&refs).await;
    for k in &keys {
        assert_eq!(c.read().await, ok());
        assert_eq!(c.read().await, bulk(k), "a pipelined GET sees the SET before it");
    }
    assert_eq!(a.call(&["DHRT.CONSISTENCY", "all"]).await, ok());
    assert_eq!(a.call(&["DHRT.COLLECTION", "default"]).await, ok());
    assert_eq!(a.call(&["GET", "rw-99"]).await, bulk("rw-99"));
    for node in nodes {
        node.stop().await;
    }
}

/// QUIT closes the connection only after the replies of the commands before it, even
/// when those wait for other replicas (Redis answers every command before QUIT).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quit_closes_only_after_the_replies_before_it() {
    let _serial = SERIAL.lock().await;
    let nodes = cluster3().await;

    let mut c = nodes[1].connect().await;
    assert_eq!(c.call(&["DHRT.CONSISTENCY", "all"]).await, ok());
    c.send(&[&["SET", "q", "v"], &["GET", "q"], &["QUIT"], &["SET", "q", "after-quit"]]).await;
    assert_eq!(c.try_read().await, Some(ok()), "SET before QUIT");
    assert_eq!(c.try_read().await, Some(bulk("v")), "GET before QUIT");
    assert_eq!(c.try_read().await, Some(ok()), "QUIT's +OK");
    assert!(c.closes().await);

    for node in nodes {
        node.stop().await;
    }
}

/// As [`quit_closes_only_after_the_replies_before_it`], for a protocol error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protocol_error_closes_only_after_the_replies_before_it() {
    let _serial = SERIAL.lock().await;
    let nodes = cluster3().await;
    let mut a = nodes[0].connect().await;
    assert_eq!(a.call(&["SET", "q", "v"]).await, ok());
    let mut c = nodes[2].connect().await;
    assert_eq!(c.call(&["DHRT.CONSISTENCY", "all"]).await, ok());
    let mut bytes = encode(&[&["SET", "r", "v"], &["DEL", "q"]]);
    bytes.extend_from_slice(b"*1\r\n+PING\r\n");
    c.write(&bytes).await;
    assert_eq!(c.try_read().await, Some(ok()), "SET before the protocol error");
    assert_eq!(c.try_read().await, Some(int(1)), "DEL before the protocol error");
    assert_eq!(
        c.try_read().await,
        Some(err("ERR Protocol error: expected '$', got '+'")),
        "the protocol error"
    );
    assert!(c.closes().await);

    assert_eq!(a.call(&["DHRT.CONSISTENCY", "all"]).await, ok());
    assert_eq!(a.call(&["MGET", "q", "r"]).await, array(vec![nil(), bulk("v")]));
    for node in nodes {
        node.stop().await;
    }
}

/// With replicas down, a write at `all` answers Redis error `-QUORUM` saying how many
/// answered — a reply, never a dropped connection — and the connection goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_replicas_answer_quorum_errors() {
    let _serial = SERIAL.lock().await;
    let mut nodes = cluster3().await;
    let c_node = nodes.pop().expect("three nodes");
    let b_node = nodes.pop().expect("three nodes");
    b_node.stop().await;
    c_node.stop().await;
    let a = &nodes[0];
    let mut conn = a.connect().await;
    assert_eq!(conn.call(&["DHRT.CONSISTENCY", "all"]).await, ok());
    let reply = conn.call(&["SET", "k", "v"]).await;
    let text = error_text(&reply);
    assert!(text.starts_with("QUORUM only 1 of the 3 replicas"), "{text}");
    assert_eq!(conn.call(&["DHRT.CONSISTENCY", "one"]).await, ok());
    assert_eq!(conn.call(&["SET", "k", "v"]).await, ok());
    assert_eq!(conn.call(&["GET", "k"]).await, bulk("v"));
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_whose_time_runs_out_is_announced_expired() {
    // The collector turns expired entries into tombstones once a second here (a
    // minute by default): the `expired` event comes from that pass.
    let opts = ServeOptions { gc_interval: Duration::from_secs(1), ..options(1) };
    let node = TestNode::start(opts, Vec::new()).await;
    node.ready(None).await;
    let mut sub = node.connect().await;
    assert_eq!(sub.call(&["CONFIG", "SET", "notify-keyspace-events", "Ex"]).await, ok());
    let channel = "__keyevent@0__:expired";
    assert_eq!(
        sub.call(&["SUBSCRIBE", channel]).await,
        array(vec![bulk("subscribe"), bulk(channel), int(1)])
    );
    let mut c = node.connect().await;
    assert_eq!(c.call(&["SET", "kept", "v"]).await, ok());
    assert_eq!(c.call(&["SET", "brief", "v", "PX", "300"]).await, ok());
    // Within a few collector passes of its expiry: one message, naming the key.
    let message = timeout(Duration::from_secs(20), sub.read()).await.expect("expired in time");
    assert_eq!(message, array(vec![bulk("message"), bulk(channel), bulk("brief")]));
    assert_eq!(c.call(&["GET", "brief"]).await, nil());
    assert_eq!(c.call(&["GET", "kept"]).await, bulk("v"), "a key without expiry stays");
    node.stop().await;
}
