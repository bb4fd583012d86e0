//! One HTTP/1.1 request to a node, for the end-to-end tests of its routes.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::time::Duration;

/// An HTTP answer: status, `WWW-Authenticate`, JSON body (or `Null`).
pub struct Resp {
    /// The status code.
    pub status: u16,
    /// The `WWW-Authenticate` header, if any.
    pub challenge: Option<String>,
    /// The body as JSON, `Null` when it is not.
    pub body: Value,
}

impl Resp {
    /// The error code of an error body (`""` otherwise).
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// Sends `method path` with `body` (and `Authorization: Bearer token`) to `addr`; the
/// answer within 10 s, or the test fails.
pub async fn http(addr: &str, method: &str, path: &str, token: Option<&str>, body: &str) -> Resp {
    let go = async {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
        tokio::spawn(conn);
        let mut req = hyper::Request::builder().method(method).uri(path).header("host", addr);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req.body(Full::new(Bytes::from(body.to_string()))).expect("a request");
        let resp = sender.send_request(req).await.expect("an answer");
        let status = resp.status().as_u16();
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = resp.into_body().collect().await.expect("the body").to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp { status, challenge, body }
    };
    tokio::time::timeout(Duration::from_secs(10), go).await.expect("an HTTP answer in time")
}
