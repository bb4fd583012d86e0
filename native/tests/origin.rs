//! Web pages against a real `dhrt serve` process: raw HTTP/1.1 requests carrying the
//! headers a browser sends (`Origin`, `Sec-Fetch-Site`, WebSocket upgrades, CORS
//! preflights). A foreign page must not write, delete, open a client WebSocket or reach
//! `/v1/peer`; the node's own pages, its members', `--allow-origin` origins and
//! programs (no `Origin`) keep working. See docs/security.md, "Browsers and web pages".

mod common;

use common::{run_bounded, wait_until, NodeProc};
use std::{
    io::{Read, Write},
    net::TcpStream,
    process::Command,
    time::Duration,
};

const EVIL: &str = "http://evil.example";
const APP: &str = "https://app.example.com";

/// An answer: status, headers (names lowercase), body.
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, joined by ", ".
    fn all(&self, name: &str) -> String {
        let values: Vec<&str> =
            self.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect();
        values.join(", ")
    }

    /// Asserts a 403 with the JSON error body (`code` = `forbidden`) and no CORS grant.
    fn forbidden(&self) {
        assert_eq!(self.status, 403, "{}", self.body);
        let body: serde_json::Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body));
        assert_eq!(body["error"]["code"], "forbidden", "{body}");
        assert!(!body["error"]["message"].as_str().unwrap_or_default().is_empty());
        assert!(body["error"].get("acked").is_some(), "{body}");
        assert_eq!(self.header("access-control-allow-origin"), None);
    }
}

/// Sends `method path` to `addr` with `headers` (and `Host: addr` unless given) and reads
/// the answer; a `101` is returned as soon as its head has arrived.
fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("upgrade")) {
        head.push_str("Content-Length: 0\r\nConnection: close\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("send");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut chunk).expect("read the answer's head");
        assert!(n > 0, "the connection closed before the answer's head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let text = String::from_utf8_lossy(&buf[..end]).to_string();
    let mut lines = text.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let status = status.expect("a status line");
    let mut body = buf[end + 4..].to_vec();
    if status != 101 {
        let len = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok());
        while len.is_none_or(|len| body.len() < len) {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
    }
    Resp { status, headers, body: String::from_utf8_lossy(&body).to_string() }
}

/// The headers of a WebSocket upgrade, plus `extra`.
fn upgrade<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    h.extend_from_slice(extra);
    h
}

/// The value of `collection/key`, read as a program would (no `Origin`); `None` when
/// missing.
fn value(addr: &str, collection: &str, key: &str) -> Option<String> {
    let r = request(addr, "GET", &format!("/{collection}/{key}"), &[]);
    match r.status {
        200 => {
            let body: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
            Some(body["value"].as_str().expect("a text value").to_string())
        }
        404 => None,
        other => panic!("GET /{collection}/{key}: {other} {}", r.body),
    }
}

fn peer_path() -> String {
    format!("/v1/peer?node=12345&version={}", dhrt_core::wire::VERSION)
}

#[test]
fn a_foreign_page_cannot_write_or_delete() {
    let node = NodeProc::start(None, &[]);
    let addr = node.addr.as_str();
    let evil = [("Origin", EVIL), ("Sec-Fetch-Site", "cross-site")];
    // The seed route, as a no-cors fetch or a form would send it.
    request(addr, "POST", "/users/alice/pwned", &evil).forbidden();
    request(addr, "POST", "/users/alice/pwned", &[("Origin", EVIL)]).forbidden();
    request(addr, "POST", "/users/alice", &[("Origin", "null")]).forbidden();
    request(addr, "PUT", "/v1/collections/users/keys/alice", &evil).forbidden();
    request(addr, "POST", "/v1/collections/users/batch", &evil).forbidden();
    assert_eq!(value(addr, "users", "alice"), None, "nothing was written");
    // Deletes, of a key and of a collection.
    assert_eq!(request(addr, "POST", "/users/bob/kept", &[]).status, 200);
    request(addr, "DELETE", "/users/bob", &evil).forbidden();
    request(addr, "DELETE", "/v1/collections/users/keys/bob", &evil).forbidden();
    request(addr, "DELETE", "/users", &evil).forbidden();
    request(addr, "DELETE", "/v1/collections/users", &evil).forbidden();
    assert_eq!(value(addr, "users", "bob").as_deref(), Some("kept"), "nothing was deleted");
}

#[test]
fn sec_fetch_site_cross_site_is_refused_without_an_origin() {
    let node = NodeProc::start(None, &[]);
    let addr = node.addr.as_str();
    request(addr, "POST", "/users/alice/pwned", &[("Sec-Fetch-Site", "cross-site")]).forbidden();
    request(addr, "POST", "/users/alice/pwned", &[("Sec-Fetch-Site", "same-site")]).forbidden();
    assert_eq!(value(addr, "users", "alice"), None, "nothing was written");
}

#[test]
fn the_nodes_own_pages_and_programs_write() {
    let node = NodeProc::start(None, &[]);
    let addr = node.addr.as_str();
    let own = format!("http://{addr}");
    let r = request(
        addr,
        "POST",
        "/users/alice/admin",
        &[("Origin", &own), ("Sec-Fetch-Site", "same-origin")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("access-control-allow-origin"), Some(own.as_str()));
    assert!(r.all("vary").contains("origin"), "{:?}", r.headers);
    let localhost = format!("http://localhost:{}", node.port());
    let r = request(addr, "POST", "/users/carol/x", &[("Origin", &localhost)]);
    assert_eq!(r.status, 200, "the localhost spelling of a loopback node is its own: {}", r.body);
    let r = request(addr, "POST", "/users/bob/builder", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("access-control-allow-origin"), None, "no CORS without an Origin");
    assert_eq!(value(addr, "users", "alice").as_deref(), Some("admin"));
    assert_eq!(value(addr, "users", "bob").as_deref(), Some("builder"));
}

#[test]
fn client_websocket_upgrades_check_the_origin() {
    let node = NodeProc::start(None, &[]);
    let addr = node.addr.as_str();
    let foreign = request(addr, "GET", "/v1/ws", &upgrade(&[("Origin", EVIL)]));
    foreign.forbidden();
    let own = format!("http://{addr}");
    assert_eq!(request(addr, "GET", "/v1/ws", &upgrade(&[("Origin", &own)])).status, 101);
    assert_eq!(
        request(addr, "GET", "/v1/ws", &upgrade(&[])).status,
        101,
        "programs send no Origin"
    );
}

#[test]
fn the_peer_endpoint_refuses_every_browser() {
    let node = NodeProc::start(None, &[]);
    let addr = node.addr.as_str();
    let own = format!("http://{addr}");
    request(addr, "GET", &peer_path(), &upgrade(&[("Origin", EVIL)])).forbidden();
    request(addr, "GET", &peer_path(), &upgrade(&[("Origin", &own)])).forbidden();
    request(addr, "GET", &peer_path(), &upgrade(&[("Sec-Fetch-Site", "same-origin")])).forbidden();
}

#[test]
fn an_allowed_origin_gets_cors_and_a_foreign_one_gets_none() {
    let node = NodeProc::start(None, &["--allow-origin", APP]);
    let addr = node.addr.as_str();
    let preflight = request(
        addr,
        "OPTIONS",
        "/v1/collections/users/keys/alice",
        &[
            ("Origin", APP),
            ("Access-Control-Request-Method", "PUT"),
            ("Access-Control-Request-Headers", "authorization, content-type"),
        ],
    );
    assert!((200..300).contains(&preflight.status), "{} {}", preflight.status, preflight.body);
    assert_eq!(preflight.header("access-control-allow-origin"), Some(APP));
    let methods = preflight.all("access-control-allow-methods");
    assert!(methods.contains("PUT") && methods.contains("DELETE"), "{methods}");
    let headers = preflight.all("access-control-allow-headers").to_ascii_lowercase();
    assert!(headers.contains("authorization") && headers.contains("content-type"), "{headers}");
    assert!(preflight.all("vary").contains("origin"));
    let app = [("Origin", APP), ("Sec-Fetch-Site", "cross-site")];
    let r = request(addr, "POST", "/users/alice/from-the-app", &app);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("access-control-allow-origin"), Some(APP));
    assert_eq!(request(addr, "GET", "/v1/ws", &upgrade(&[("Origin", APP)])).status, 101);
    // A foreign origin: its preflight is refused, its reads carry no CORS grant (so its
    // page cannot read them), it never sees `*`.
    request(
        addr,
        "OPTIONS",
        "/v1/collections/users/keys/alice",
        &[("Origin", EVIL), ("Access-Control-Request-Method", "PUT")],
    )
    .forbidden();
    let read = request(addr, "GET", "/users/alice", &[("Origin", EVIL)]);
    assert_eq!(read.status, 200);
    assert_eq!(read.header("access-control-allow-origin"), None);
    assert_eq!(read.header("access-control-allow-credentials"), None);
    assert_eq!(value(addr, "users", "alice").as_deref(), Some("from-the-app"));
}

#[test]
fn a_loopback_node_refuses_names_a_page_could_rebind() {
    let node = NodeProc::start(None, &[]);
    let addr = node.addr.as_str();
    let rebound = format!("evil.example:{}", node.port());
    request(addr, "GET", "/users/alice", &[("Host", &rebound)]).forbidden();
    let localhost = format!("localhost:{}", node.port());
    assert_eq!(request(addr, "GET", "/v1/health", &[("Host", &localhost)]).status, 200);
}

#[test]
fn members_pages_may_open_websockets_to_every_member() {
    let _serial = common::serial();
    let a = NodeProc::start(None, &[]);
    let b = NodeProc::start(None, &["--join", &a.addr]);
    let a_origin = format!("http://{}", a.addr);
    // The dashboard served by `a` connects to `b` once `b` knows `a` as a member.
    let admitted = wait_until(Duration::from_secs(30), || {
        request(&b.addr, "GET", "/v1/ws", &upgrade(&[("Origin", &a_origin)])).status == 101
    });
    assert!(admitted, "b never admitted a's pages");
    request(&b.addr, "GET", "/v1/ws", &upgrade(&[("Origin", EVIL)])).forbidden();
}

#[test]
fn an_allow_origin_that_is_no_origin_is_refused_at_start() {
    for bad in ["*", "app.example.com", "https://app.example.com/path"] {
        let mut cmd = Command::new(common::bin());
        cmd.args(["serve", "--memory", "--port", "0", "--allow-origin", bad])
            .env_remove("DHRT_CONFIG");
        let ran = run_bounded(cmd, b"", Duration::from_secs(20));
        assert_ne!(ran.code, Some(0), "{bad} was accepted");
        assert!(ran.code.is_some(), "dhrt serve --allow-origin {bad} kept running");
        assert!(ran.stderr.contains("--allow-origin"), "{bad}: {}", ran.stderr);
    }
}
