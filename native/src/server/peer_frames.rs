//! A peer link's frames, both ends: dhrt's own WebSocket framing ([`crate::wsframe`])
//! over the link's byte stream, and the peer handshake ([`super::peer_auth`]) run on it.
//!
//! Peer links carry most of a cluster's messages — every replica write and its
//! acknowledgement, every digest read — so they are framed as client connections are:
//! one read buffer parsed where it lies, every frame of a flush written with one call,
//! and no general WebSocket stream in between (its frame copies and buffer splitting
//! were a tenth of a cluster node's time, docs/benchmarks.md). Plain links run on the
//! node thread, so a peer's message crosses no thread on either node.

use super::peer_auth::{self, Credentials, Handshake, HandshakeError};
use crate::wsframe::{FrameReader, FrameWriter, Incoming};
use dhrt_core::NodeId;
use std::io;
use tokio::io::{AsyncRead, AsyncWrite};

/// One end of a peer link: its stream, and the frames read from and written to it.
pub struct PeerFrames<S> {
    /// The byte stream.
    pub io: S,
    /// Frames as they arrive.
    pub reader: FrameReader,
    /// Frames waiting to be written.
    pub writer: FrameWriter,
}

impl<S: AsyncRead + AsyncWrite + Unpin> PeerFrames<S> {
    /// The accepting end of a link (frames from the other end are masked), starting
    /// with the bytes `early` read with the upgrade request; messages up to `max` bytes.
    pub fn accepting(io: S, early: Vec<u8>, max: usize) -> Self {
        PeerFrames { io, reader: FrameReader::new(max, early), writer: FrameWriter::server() }
    }

    /// The connecting end of a link (its own frames masked), starting with the bytes
    /// `early` read with the upgrade's answer; messages up to `max` bytes.
    pub fn connecting(io: S, early: Vec<u8>, max: usize) -> Self {
        PeerFrames {
            io,
            reader: FrameReader::of_server_after(max, early),
            writer: FrameWriter::client(),
        }
    }

    /// Reads more of the stream: the bytes read, 0 at its end.
    pub async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.reader.poll_fill(cx, &mut self.io)).await
    }

    /// Writes everything framed.
    pub async fn flush(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.writer.poll_send(cx, &mut self.io)).await
    }

    /// The next binary message of the handshake (pings answered on the way).
    async fn next_binary(&mut self) -> Result<Vec<u8>, HandshakeError> {
        loop {
            match self.reader.next_frame() {
                Ok(Some(Incoming::Binary(bytes))) => return Ok(bytes.to_vec()),
                Ok(Some(Incoming::Ping(payload))) => {
                    self.writer.pong(payload);
                    continue;
                }
                Ok(Some(Incoming::Pong)) => continue,
                Ok(Some(Incoming::Text)) => {
                    return Err(HandshakeError::Protocol("a frame that is not binary".into()))
                }
                Ok(Some(Incoming::Close(_))) => return Err(HandshakeError::Closed),
                Err(violation) => return Err(HandshakeError::Protocol(violation.reason.into())),
                Ok(None) => {}
            }
            self.flush().await.map_err(|_| HandshakeError::Closed)?;
            if self.fill().await.map_err(|_| HandshakeError::Closed)? == 0 {
                return Err(HandshakeError::Closed);
            }
        }
    }

    /// Sends one step of the handshake.
    async fn send(&mut self, step: &Handshake) -> Result<(), HandshakeError> {
        self.writer.binary_encoded(&peer_auth::encode(step));
        self.flush().await.map_err(|_| HandshakeError::Closed)
    }

    /// Runs the accepting side of the handshake as `me`: the proven id of the node at
    /// the other end, or why not (the other node is told).
    pub async fn accept(&mut self, me: &Credentials) -> Result<NodeId, HandshakeError> {
        let steps = async {
            let (challenge, nonce) = me.challenge()?;
            self.send(&challenge).await?;
            let hello = peer_auth::decode(&self.next_binary().await?)?;
            let (from, welcome) = me.check_hello(&nonce, hello)?;
            self.send(&welcome).await?;
            Ok(from)
        };
        let result = tokio::time::timeout(peer_auth::TIMEOUT, steps)
            .await
            .unwrap_or(Err(HandshakeError::Timeout));
        if let Err(e) = &result {
            self.refuse(e).await;
        }
        result
    }

    /// Runs the connecting side of the handshake as `me` on a fresh link: the peer's
    /// proven id, or why not. Nothing else is sent before it succeeds.
    pub async fn connect(&mut self, me: &Credentials) -> Result<NodeId, HandshakeError> {
        let steps = async {
            let challenge = peer_auth::decode(&self.next_binary().await?)?;
            let (hello, expect) = match me.hello(challenge) {
                Ok(step) => step,
                Err(e) => {
                    self.refuse(&e).await;
                    return Err(e);
                }
            };
            self.send(&hello).await?;
            me.check_welcome(&expect, peer_auth::decode(&self.next_binary().await?)?)
        };
        tokio::time::timeout(peer_auth::TIMEOUT, steps)
            .await
            .unwrap_or(Err(HandshakeError::Timeout))
    }

    /// Tells the other node why the handshake failed and closes the link (best effort,
    /// within a second).
    async fn refuse(&mut self, why: &HandshakeError) {
        self.writer
            .binary_encoded(&peer_auth::encode(&Handshake::Refused { reason: why.to_string() }));
        self.writer.close(crate::wsframe::POLICY, "");
        self.writer.send_within(&mut self.io, std::time::Duration::from_secs(1)).await;
    }
}
