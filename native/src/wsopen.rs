//! The client's side of the WebSocket opening handshake (RFC 6455 §4.1), done by hyper,
//! keeping the bytes the server sent right behind its answer.
//!
//! A node's peer link hears first from the node it opened the link to: the accepting
//! node sends its handshake challenge as soon as it has answered the upgrade, so the
//! challenge may arrive in the same read as the `101 Switching Protocols`. A general
//! WebSocket client keeps those bytes in its own buffer; here hyper's HTTP/1 client
//! sends the upgrade request and reads the answer, and hands back the stream together
//! with whatever it read past the answer's head, for [`crate::wsframe::FrameReader`] to
//! start from.

use bytes::Bytes;
use http_body_util::Empty;
use hyper::{
    header::{self, HeaderValue},
    Request, StatusCode,
};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// Why an opening handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The connection failed, or the answer was no HTTP.
    #[error("{0}")]
    Http(#[from] hyper::Error),
    /// The server answered with something else than `101 Switching Protocols`.
    #[error("the upgrade was refused: HTTP {0}")]
    Refused(StatusCode),
    /// The server switched protocols without proving it read the key.
    #[error("the server's Sec-WebSocket-Accept does not match the key sent")]
    BadAccept,
    /// The request could not be built (a host that is no header value).
    #[error("{0}")]
    Request(String),
}

/// Asks the server at the other end of `io` to upgrade `path` (with its query) to a
/// WebSocket, naming `host` in the `Host` header: the stream, and the bytes the server
/// sent behind its answer.
pub async fn open<S>(io: S, host: &str, path: &str) -> Result<(S, Vec<u8>), OpenError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let key = websocket_key();
    let request = Request::get(path)
        .header(header::HOST, host)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_VERSION, "13")
        .header(header::SEC_WEBSOCKET_KEY, key.as_str())
        .body(Empty::<Bytes>::new())
        .map_err(|e| OpenError::Request(e.to_string()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    // The answer's head is all that is kept (its body, if any, is dropped with it), and
    // the sender goes with the request: once answered, the connection ends, handing its
    // stream back rather than shutting it down.
    let ask = async move {
        let response = sender.send_request(request).await?;
        let accept = response.headers().get(header::SEC_WEBSOCKET_ACCEPT).cloned();
        Ok::<_, hyper::Error>((response.status(), accept))
    };
    let (answer, parts) = tokio::join!(ask, conn.without_shutdown());
    let (status, accept) = answer?;
    if status != StatusCode::SWITCHING_PROTOCOLS {
        return Err(OpenError::Refused(status));
    }
    let expected = derive_accept_key(key.as_bytes());
    if accept != HeaderValue::from_str(&expected).ok() {
        return Err(OpenError::BadAccept);
    }
    let parts = parts?;
    Ok((parts.io.into_inner(), parts.read_buf.to_vec()))
}

/// A fresh `Sec-WebSocket-Key`: 16 unpredictable bytes, base64.
fn websocket_key() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&crate::server::random_u64().to_le_bytes());
    bytes[8..].copy_from_slice(&crate::server::random_u64().to_le_bytes());
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpListener, TcpStream},
    };

    /// A server that reads one request head and answers it with `answer(key)` and the
    /// bytes `behind` in one write.
    async fn server(answer: fn(&str) -> String, behind: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                tcp.read_exact(&mut byte).await.unwrap();
                head.push(byte[0]);
            }
            let head = String::from_utf8(head).unwrap();
            let key = head
                .lines()
                .find_map(|l| l.strip_prefix("sec-websocket-key: "))
                .unwrap_or_default()
                .to_string();
            let mut out = answer(&key).into_bytes();
            out.extend_from_slice(behind);
            tcp.write_all(&out).await.unwrap();
            let _ = tcp.read(&mut [0u8; 16]).await;
        });
        addr
    }

    fn switching(key: &str) -> String {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\
             sec-websocket-accept: {}\r\n\r\n",
            derive_accept_key(key.as_bytes())
        )
    }

    #[tokio::test]
    async fn the_bytes_behind_the_answer_are_kept() {
        let addr = server(switching, b"\x82\x03abc").await;
        let tcp = TcpStream::connect(&addr).await.unwrap();
        let (_, early) = open(tcp, &addr, "/v1/peer?version=1").await.unwrap();
        assert_eq!(early, b"\x82\x03abc", "the first frame, read with the answer");
    }

    #[tokio::test]
    async fn a_refusal_or_a_wrong_accept_key_fails() {
        let refuse = |_: &str| "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n".to_string();
        let addr = server(refuse, b"").await;
        let tcp = TcpStream::connect(&addr).await.unwrap();
        let err = open(tcp, &addr, "/v1/peer").await.unwrap_err();
        assert!(matches!(err, OpenError::Refused(StatusCode::BAD_REQUEST)), "{err}");

        let wrong = |_: &str| switching("another key");
        let addr = server(wrong, b"").await;
        let tcp = TcpStream::connect(&addr).await.unwrap();
        let err = open(tcp, &addr, "/v1/peer").await.unwrap_err();
        assert!(matches!(err, OpenError::BadAccept), "{err}");
    }
}
