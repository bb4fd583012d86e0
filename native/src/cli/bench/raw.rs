//! A bench lane's own connection to a dhrt node: requests framed into one buffer and
//! written with one call, answers read and decoded where they lie — what the Redis lane
//! does over RESP ([`super::redis::RespConn`]).
//!
//! The library's client ([`dhrt::client::conn::Conn`]) serves any number of callers on
//! a connection: a task per connection, a channel in, a one-shot channel and a timer per
//! request, a shared map of waiters. Driving a node at pipeline 16 that cost the load
//! generator twice the CPU the Redis lane spends for the same requests (0.9 of its core
//! against 0.4, docs/benchmarks.md), so a pinned run measured the generator as much as
//! the node. A lane needs none of it: it owns its socket and knows what it sent.

use dhrt::{
    client::{
        conn::{self, Stream, MAX_FRAME},
        ClientError, ConnectOptions,
    },
    wsframe::{FrameReader, FrameWriter, Incoming},
};
use dhrt_core::{
    auth::BearerToken,
    proto::{
        client::{Op, Reply},
        ClientRequest, ClientResponse, Message,
    },
    wire,
};
use std::time::Duration;

/// One WebSocket to a node, framed by hand.
pub struct RawConn {
    io: Stream,
    reader: FrameReader,
    writer: FrameWriter,
    next_id: u64,
}

impl RawConn {
    /// Connects to `addr` and presents the token of `options`, if any.
    pub async fn open(
        addr: &str,
        timeout: Duration,
        options: &ConnectOptions,
    ) -> Result<RawConn, ClientError> {
        let (io, _) = conn::connect(addr, timeout, options).await?;
        let mut conn = RawConn {
            io,
            reader: FrameReader::of_server(MAX_FRAME),
            writer: FrameWriter::client(),
            next_id: 1,
        };
        if let Some(token) = &options.token {
            let id = conn.queue(Op::Auth { token: BearerToken(token.clone()) })?;
            conn.send().await?;
            let mut replies = Vec::new();
            conn.receive(timeout, &mut replies).await?;
            match replies.pop() {
                Some((got, Reply::Ok)) if got == id => {}
                Some((_, Reply::Error { code, message, acked })) => {
                    return Err(ClientError::Server { code, message, acked })
                }
                other => return Err(ClientError::Protocol(format!("{other:?}"))),
            }
        }
        Ok(conn)
    }

    /// Frames a request to send with the next [`RawConn::send`]; returns its id.
    pub fn queue(&mut self, op: Op) -> Result<u64, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let req = Message::Request(ClientRequest { id, op, seen: None });
        self.writer
            .binary(|out| wire::encode_into(&req, MAX_FRAME, out))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(id)
    }

    /// Writes every request framed.
    pub async fn send(&mut self) -> Result<(), ClientError> {
        let (writer, io) = (&mut self.writer, &mut self.io);
        std::future::poll_fn(|cx| writer.poll_send(cx, io))
            .await
            .map_err(|e| ClientError::Connection(e.to_string()))
    }

    /// Waits (at most `timeout`) for answers, then appends to `out` every answer that
    /// has arrived, at least one.
    pub async fn receive(
        &mut self,
        timeout: Duration,
        out: &mut Vec<(u64, Reply)>,
    ) -> Result<(), ClientError> {
        let before = out.len();
        loop {
            loop {
                match self.reader.next_frame() {
                    Ok(None) => break,
                    Ok(Some(Incoming::Binary(bytes))) => {
                        match wire::decode_response(bytes, MAX_FRAME) {
                            Ok(Message::Response(ClientResponse { id, result, .. })) => {
                                out.push((id, result));
                            }
                            Ok(other) => {
                                return Err(ClientError::Protocol(format!("a node sent {other:?}")))
                            }
                            Err(e) => return Err(ClientError::Protocol(e.to_string())),
                        }
                    }
                    Ok(Some(Incoming::Ping(payload))) => self.writer.pong(payload),
                    Ok(Some(Incoming::Text | Incoming::Pong)) => {}
                    Ok(Some(Incoming::Close(_))) => {
                        return Err(ClientError::Connection("the node closed it".into()))
                    }
                    Err(v) => return Err(ClientError::Protocol(v.reason.to_string())),
                }
            }
            if out.len() > before {
                return Ok(());
            }
            let (reader, io) = (&mut self.reader, &mut self.io);
            let fill = std::future::poll_fn(|cx| reader.poll_fill(cx, io));
            match tokio::time::timeout(timeout, fill).await {
                Err(_) => return Err(ClientError::Timeout(timeout)),
                Ok(Err(e)) => return Err(ClientError::Connection(e.to_string())),
                Ok(Ok(0)) => return Err(ClientError::Connection("the node closed it".into())),
                Ok(Ok(_)) => {}
            }
        }
    }
}
