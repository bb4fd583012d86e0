//! Client tokens against real node processes: without a token every route and every
//! WebSocket request is refused (401); a token allows only its role and collections
//! (403, and nothing written); the reserved collection of tokens is out of every client's
//! reach; a revoked token stops working on every node of a cluster within seconds, on
//! new connections and on open ones; the bootstrap admin token works on every node.

mod common;

use bytes::Bytes;
use common::{http::http, run_bounded, wait_until, NodeProc};
use dhrt::client::{conn::Conn, Client, ClientError, ConnectOptions};
use dhrt_core::{
    auth::{BearerToken, Role, TOKENS_COLLECTION},
    proto::{
        client::{Consistency, ErrorCode, Op, Reply},
        ClientRequest, ClientResponse, Message,
    },
    wire,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::{process::Command, time::Duration};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message as Ws};

const WAIT: Duration = Duration::from_secs(10);

fn start(admin: &common::AdminToken, join: Option<&str>) -> NodeProc {
    let file = admin.path.to_str().expect("a UTF-8 path");
    let mut args = vec!["--admin-token-file", file];
    if let Some(seed) = join {
        args.extend(["--join", seed]);
    }
    NodeProc::start(None, &args)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime")
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A raw client WebSocket, with `Authorization: Bearer` on the upgrade when given.
async fn socket(addr: &str, bearer: Option<&str>) -> Result<Socket, u16> {
    let mut req = format!("ws://{addr}/v1/ws").into_client_request().expect("a request");
    if let Some(t) = bearer {
        req.headers_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req)).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(resp))) => Err(resp.status().as_u16()),
        other => panic!("the upgrade neither succeeded nor was refused: {:?}", other.err()),
    }
}

/// Sends `op` as request `id` and waits for the answer with that id.
async fn ask(ws: &mut Socket, id: u64, op: Op) -> Reply {
    let frame = wire::encode(&Message::Request(ClientRequest { id, op, seen: None })).unwrap();
    ws.send(Ws::Binary(frame.into())).await.expect("send");
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("an answer in time")
            .expect("the connection is open")
            .expect("no WebSocket error");
        if let Ws::Binary(b) = msg {
            if let Ok(Message::Response(ClientResponse { id: got, result, .. })) = wire::decode(&b)
            {
                if got == id {
                    return result;
                }
            }
        }
    }
}

fn code_of(reply: &Reply) -> Option<ErrorCode> {
    match reply {
        Reply::Error { code, .. } => Some(*code),
        _ => None,
    }
}

fn get(collection: &str, key: &str) -> Op {
    Op::Get {
        collection: collection.into(),
        key: Bytes::copy_from_slice(key.as_bytes()),
        consistency: Consistency::Default,
    }
}

fn set(collection: &str, key: &str, value: &str) -> Op {
    Op::Set {
        collection: collection.into(),
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
        consistency: Consistency::Default,
        ttl_ms: None,
    }
}

async fn client(addr: &str, token: &str) -> Result<Client, ClientError> {
    let options = ConnectOptions { token: Some(token.into()), ..ConnectOptions::default() };
    Client::connect_with_options(&[addr], WAIT, options).await
}

/// `dhrt ARGS...` against `node`, with `DHRT_TOKEN` when given.
fn dhrt(node: &str, token: Option<&str>, args: &[&str]) -> common::Ran {
    let mut cmd = Command::new(common::bin());
    cmd.args(args).arg("--node").arg(node).env_remove("DHRT_TOKEN");
    if let Some(t) = token {
        cmd.env("DHRT_TOKEN", t);
    }
    run_bounded(cmd, b"", WAIT * 2)
}

#[test]
fn without_a_token_every_route_and_request_is_refused() {
    let admin = common::admin_token();
    let node = start(&admin, None);
    let addr = node.addr.as_str();
    runtime().block_on(async {
        let refused = [
            ("GET", "/v1/collections/users/keys/alice"),
            ("PUT", "/v1/collections/users/keys/alice"),
            ("DELETE", "/v1/collections/users/keys/alice"),
            ("GET", "/v1/collections/users/keys"),
            ("POST", "/v1/collections/users/batch"),
            ("DELETE", "/v1/collections/users"),
            ("GET", "/v1/stats"),
            ("GET", "/v1/ring"),
            ("GET", "/v1/tokens"),
            ("POST", "/v1/tokens"),
            ("DELETE", "/v1/tokens/0123456789abcdef"),
            ("GET", "/metrics"),
            // The seed routes.
            ("GET", "/"),
            ("GET", "/alice"),
            ("DELETE", "/alice"),
            ("POST", "/alice/admin"),
            ("GET", "/users/alice"),
            ("DELETE", "/users/alice"),
            ("POST", "/users/alice/admin"),
        ];
        for (method, path) in refused {
            let r = http(addr, method, path, None, "").await;
            assert_eq!(r.status, 401, "{method} {path}: {}", r.body);
            assert_eq!(r.code(), "unauthorized", "{method} {path}");
            assert!(r.challenge.is_some_and(|c| c.starts_with("Bearer")), "{method} {path}");
            let wrong = http(addr, method, path, Some("not-the-admin-token"), "").await;
            assert_eq!(wrong.status, 401, "{method} {path} with a wrong token");
        }
        // Nothing was written by the refused writes.
        let r = http(addr, "GET", "/users/alice", Some(&admin.token), "").await;
        assert_eq!(r.status, 404, "{}", r.body);
        for path in ["/v1/health", "/openapi.json", "/dashboard", "/dashboard/app.js"] {
            assert_eq!(http(addr, "GET", path, None, "").await.status, 200, "{path} is public");
        }

        // WebSocket: a bad bearer is refused at the upgrade; without one, every request
        // is refused until Op::Auth succeeds.
        assert_eq!(socket(addr, Some("wrong")).await.err(), Some(401));
        let mut ws = socket(addr, None).await.expect("an upgrade without a token");
        let r = ask(&mut ws, 1, set("users", "alice", "admin")).await;
        assert_eq!(code_of(&r), Some(ErrorCode::Unauthorized), "{r:?}");
        let r = ask(&mut ws, 2, Op::Stats).await;
        assert_eq!(code_of(&r), Some(ErrorCode::Unauthorized), "{r:?}");
        let bad = format!("dhrt_0123456789abcdef_{}", "A".repeat(43));
        let r = ask(&mut ws, 3, Op::Auth { token: BearerToken(bad) }).await;
        assert_eq!(code_of(&r), Some(ErrorCode::Unauthorized), "an unknown token: {r:?}");
        let r = ask(&mut ws, 4, get("users", "alice")).await;
        assert_eq!(code_of(&r), Some(ErrorCode::Unauthorized), "{r:?}");
        let r = ask(&mut ws, 5, Op::Auth { token: BearerToken(admin.token.clone()) }).await;
        assert_eq!(r, Reply::Ok);
        let r = ask(&mut ws, 6, set("users", "alice", "admin")).await;
        assert!(matches!(r, Reply::Written { .. }), "{r:?}");
        // A bearer on the upgrade works as well.
        let mut ws = socket(addr, Some(&admin.token)).await.expect("an upgrade");
        let r = ask(&mut ws, 1, get("users", "alice")).await;
        assert!(matches!(r, Reply::Value { value: Some(_), .. }), "{r:?}");
    });
    // The CLI: refused without a token, served with DHRT_TOKEN.
    let ran = dhrt(addr, None, &["get", "users", "alice"]);
    assert_ne!(ran.code, Some(0));
    assert!(ran.stderr.contains("requires a token"), "{}", ran.stderr);
    let ran = dhrt(addr, Some(&admin.token), &["get", "users", "alice"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(String::from_utf8_lossy(&ran.stdout).trim(), "admin");
}

#[test]
fn a_token_allows_only_its_role_and_collections() {
    let admin = common::admin_token();
    let node = start(&admin, None);
    let addr = node.addr.as_str();
    // Created with the CLI: the token is the only line on stdout.
    let ran = dhrt(
        addr,
        Some(&admin.token),
        &["token", "create", "--role", "read", "--collections", "a", "--note", "reader"],
    );
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let reader = String::from_utf8(ran.stdout).unwrap().trim().to_string();
    assert!(reader.starts_with("dhrt_"), "{reader}");
    runtime().block_on(async {
        let made = http(
            addr,
            "POST",
            "/v1/tokens",
            Some(&admin.token),
            r#"{"role": "write", "collections": ["logs.*"], "note": "ingest"}"#,
        )
        .await;
        assert_eq!(made.status, 201, "{}", made.body);
        let writer = made.body["token"].as_str().expect("the token").to_string();
        let admin_http = |m, p, b| http(addr, m, p, Some(&admin.token), b);
        assert_eq!(admin_http("PUT", "/v1/collections/a/keys/k", "1").await.status, 200);
        assert_eq!(admin_http("PUT", "/v1/collections/b/keys/k", "2").await.status, 200);

        // A read token writing: 403, and nothing written, over HTTP and WebSocket.
        for (m, p) in [("PUT", "/v1/collections/a/keys/k"), ("POST", "/a/k/changed")] {
            let r = http(addr, m, p, Some(&reader), "changed").await;
            assert_eq!((r.status, r.code()), (403, "forbidden"), "{m} {p}: {}", r.body);
        }
        let db = client(addr, &reader).await.expect("the read token connects");
        let err = db.set("a", "k", "changed", Consistency::Default, None).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");
        let err = db.del("a", "k", Consistency::Default).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");
        assert_eq!(
            db.get("a", "k", Consistency::Default).await.unwrap().as_deref(),
            Some(&b"1"[..])
        );
        // A token for collection a reading b: 403.
        let err = db.get("b", "k", Consistency::Default).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");
        assert!(err.to_string().contains("does not cover"), "{err}");
        let r = http(addr, "GET", "/v1/collections/b/keys/k", Some(&reader), "").await;
        assert_eq!(r.status, 403, "{}", r.body);
        assert_eq!(http(addr, "GET", "/b/k", Some(&reader), "").await.status, 403);
        let err = db.watch("b", None).await.err().expect("a watch of b is refused");
        assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");
        assert!(db.stats(None).await.is_ok(), "stats are allowed to every role");
        // Only admins manage tokens.
        let err = db.token_list().await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");
        assert_eq!(http(addr, "GET", "/v1/tokens", Some(&reader), "").await.status, 403);

        // A write token for logs.*: writes there, nowhere else, and drops nothing.
        let w = client(addr, &writer).await.expect("the write token connects");
        w.set("logs.web", "k", "v", Consistency::Default, None).await.expect("a write to logs.web");
        let err = w.set("a", "k", "v", Consistency::Default, None).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");
        let r = http(addr, "DELETE", "/v1/collections/logs.web", Some(&writer), "").await;
        assert_eq!(r.status, 403, "dropping a collection takes an admin: {}", r.body);

        // The list shows both tokens, never a secret or hash.
        let list = admin_http("GET", "/v1/tokens", "").await;
        assert_eq!(list.status, 200, "{}", list.body);
        let tokens = list.body["tokens"].as_array().expect("tokens").clone();
        assert_eq!(tokens.len(), 2, "{}", list.body);
        let text = list.body.to_string();
        assert!(!text.contains(&reader[22..]) && !text.contains("hash"), "{text}");
        assert!(tokens
            .iter()
            .any(|t| t["role"] == "write" && t["collections"] == json!(["logs.*"])));
        let a = Client::connect_with_options(
            &[addr],
            WAIT,
            ConnectOptions { token: Some(admin.token.clone()), ..Default::default() },
        )
        .await
        .unwrap();
        let listed = a.token_list().await.unwrap();
        assert!(listed.iter().any(|t| t.role == Role::Read && t.note == "reader"), "{listed:?}");
    });
    let ran = dhrt(addr, Some(&admin.token), &["token", "list"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let out = String::from_utf8_lossy(&ran.stdout);
    assert!(out.contains("reader") && out.contains("logs.*"), "{out}");
}

#[test]
fn the_token_collection_is_out_of_every_clients_reach() {
    let admin = common::admin_token();
    let node = start(&admin, None);
    let addr = node.addr.as_str();
    runtime().block_on(async {
        let made =
            http(addr, "POST", "/v1/tokens", Some(&admin.token), r#"{"role": "read"}"#).await;
        let id = made.body["id"].as_str().expect("an id").to_string();
        let t = TOKENS_COLLECTION;
        let paths = [
            ("GET", format!("/v1/collections/{t}/keys/{id}")),
            ("PUT", format!("/v1/collections/{t}/keys/{id}")),
            ("DELETE", format!("/v1/collections/{t}/keys/{id}")),
            ("GET", format!("/v1/collections/{t}/keys")),
            ("DELETE", format!("/v1/collections/{t}")),
            ("GET", format!("/{t}")),
            ("GET", format!("/{t}/{id}")),
            ("POST", format!("/{t}/{id}/forged")),
            ("DELETE", format!("/{t}/{id}")),
        ];
        for (m, p) in &paths {
            let r = http(addr, m, p, Some(&admin.token), "forged").await;
            // `GET /{name}` and `DELETE /{name}` first look for a key of the default
            // collection named so, and find none: 404 is as good as 403 there.
            let ok = r.status == 403 || (r.status == 404 && p.matches('/').count() == 1);
            assert!(ok, "{m} {p} answered {}: {}", r.status, r.body);
        }
        let mut ws = socket(addr, Some(&admin.token)).await.expect("an upgrade");
        let scan = Op::Scan {
            collection: t.into(),
            cursor: None,
            prefix: None,
            limit: 10,
            consistency: Consistency::Default,
        };
        let watch = Op::Watch { collection: t.into(), prefix: None };
        for (i, op) in [get(t, &id), set(t, &id, "forged"), scan, watch].into_iter().enumerate() {
            let r = ask(&mut ws, i as u64 + 1, op).await;
            assert_eq!(code_of(&r), Some(ErrorCode::Forbidden), "{r:?}");
        }
        // The token is intact: still listed.
        let list = http(addr, "GET", "/v1/tokens", Some(&admin.token), "").await;
        assert_eq!(list.body["tokens"][0]["id"], json!(id), "{}", list.body);
    });
}

#[test]
fn a_revoked_token_is_refused_on_every_node_within_seconds() {
    let _serial = common::serial();
    let admin = common::admin_token();
    let first = start(&admin, None);
    let seed = first.addr.clone();
    let nodes = vec![first, start(&admin, Some(&seed)), start(&admin, Some(&seed))];
    let rt = runtime();
    // Every node takes the same admin token file.
    let all_alive = wait_until(Duration::from_secs(30), || {
        rt.block_on(async {
            let mut alive = true;
            for n in &nodes {
                let Ok(c) = client(&n.addr, &admin.token).await else { return false };
                alive &= c.stats(None).await.is_ok_and(|s| s.members.alive == 3);
            }
            alive
        })
    });
    assert!(all_alive, "the cluster did not form:\n{}", nodes[2].log());
    let ran = dhrt(&nodes[0].addr, Some(&admin.token), &["token", "create", "--role", "write"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let token = String::from_utf8(ran.stdout).unwrap().trim().to_string();
    let options = ConnectOptions { token: Some(token.clone()), ..Default::default() };
    rt.block_on(async {
        // The token works on every node; one connection stays open on each.
        let mut open = Vec::new();
        for n in &nodes {
            let conn = Conn::open(&n.addr, WAIT, &options).await.expect("the token works");
            let r = conn.call(set("users", "k", "v"), WAIT).await.expect("an answer");
            assert!(matches!(r, Reply::Written { .. }), "{r:?}");
            open.push(conn);
        }
        let id = &token[5..21];
        let ran = dhrt(&nodes[0].addr, Some(&admin.token), &["token", "revoke", id]);
        assert_eq!(ran.code, Some(0), "{}", ran.stderr);
        for (n, conn) in nodes.iter().zip(&open) {
            let refused_everywhere = async {
                loop {
                    let fresh =
                        Conn::open(&n.addr, WAIT, &options).await.err().and_then(|e| e.code());
                    let http =
                        http(&n.addr, "GET", "/v1/collections/users/keys/k", Some(&token), "")
                            .await;
                    let held = match conn.call(get("users", "k"), WAIT).await {
                        Ok(r) => code_of(&r),
                        // The node closed the connection of a revoked token.
                        Err(ClientError::Connection(_)) => Some(ErrorCode::Unauthorized),
                        Err(e) => panic!("{e}"),
                    };
                    if fresh == Some(ErrorCode::Unauthorized)
                        && http.status == 401
                        && held == Some(ErrorCode::Unauthorized)
                    {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            };
            tokio::time::timeout(Duration::from_secs(10), refused_everywhere)
                .await
                .unwrap_or_else(|_| panic!("{} still accepts the revoked token", n.addr));
        }
        // The admin token still works on every node.
        for n in &nodes {
            let c = client(&n.addr, &admin.token).await.expect("the admin token works");
            assert!(c.get("users", "k", Consistency::Default).await.unwrap().is_some());
        }
    });
}

#[test]
fn without_an_admin_token_file_nothing_changes_but_the_reserved_collection() {
    let node = NodeProc::start(None, &[]);
    let addr = node.addr.as_str();
    runtime().block_on(async {
        let r = http(addr, "POST", "/users/alice/admin", None, "").await;
        assert_eq!(r.status, 200, "{}", r.body);
        let r =
            http(addr, "GET", &format!("/v1/collections/{TOKENS_COLLECTION}/keys"), None, "").await;
        assert_eq!(r.status, 403, "{}", r.body);
        // A client that brings a token anyway is served.
        let db = client(addr, "any-token").await.expect("connects");
        assert!(db.get("users", "alice", Consistency::Default).await.unwrap().is_some());
    });
}

#[test]
fn export_all_presents_the_token_and_leaves_the_reserved_collections_out() {
    let admin = common::admin_token();
    let node = start(&admin, None);
    let addr = node.addr.as_str();
    runtime().block_on(async {
        // A token record makes the reserved collection exist on the node.
        let made =
            http(addr, "POST", "/v1/tokens", Some(&admin.token), r#"{"role": "read"}"#).await;
        assert!(made.body["id"].is_string(), "{}", made.body);
        let c = client(addr, &admin.token).await.expect("a client");
        c.set("users", "ada", "lovelace", Consistency::Default, None).await.expect("a write");
        let listed = http(addr, "GET", "/v1/stats", Some(&admin.token), "").await;
        let names = listed.body["collections"].to_string();
        assert!(names.contains(TOKENS_COLLECTION), "the node lists it: {names}");
    });
    let ran = dhrt(addr, Some(&admin.token), &["export", "--all"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let out = String::from_utf8_lossy(&ran.stdout);
    assert!(out.contains("lovelace"), "{out}");
    assert!(!out.contains(TOKENS_COLLECTION), "{out}");
    assert!(ran.stderr.contains("from 1 collection"), "{}", ran.stderr);
}
