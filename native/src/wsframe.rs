//! WebSocket framing of the client protocol's connections (RFC 6455), both ends: one
//! read buffer the frames are parsed and unmasked in, and one write buffer every
//! message of a flush is framed into.
//!
//! A client connection is the node's hottest path, and the client's too: at a pipeline
//! of one, a general WebSocket stream cost a zero-filled read buffer, a message
//! allocation, a split lock and a buffer copy per request (docs/benchmarks.md). Here a
//! connection's bytes are read into a buffer that is filled once and reused
//! ([`FrameReader`]); a message is handed out as a slice of it, decoded where it lies;
//! what is sent is framed one message after the other into a buffer written with one
//! call ([`FrameWriter`]). The frame header itself is read and written by tungstenite's
//! [`FrameHeader`], so the wire format has one implementation. The node serves
//! `/v1/ws` with it (`server::ws`), and [`crate::client`] speaks to it with it once
//! tungstenite has done the opening handshake.
//!
//! What the other end sends is checked as RFC 6455 §5 says: a client's frames must be
//! masked and a server's must not, no reserved bits or opcodes, control frames final
//! and at most 125 bytes, fragments in order. A message larger than the limit is
//! refused as soon as its header says so, before its payload is read
//! ([`Violation::too_big`]), so it never takes memory.

use std::{
    io::{self, Cursor},
    pin::Pin,
    task::{ready, Context, Poll},
    time::Duration,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::frame::{
    coding::{Control, Data, OpCode},
    FrameHeader,
};

/// Bytes a connection's read buffer starts with, and shrinks back to once empty.
pub const READ_BUFFER: usize = 4 * 1024;
/// A read buffer grown past this (by a large message) is given back once empty.
const KEEP_AT_MOST: usize = 64 * 1024;
/// A write buffer grown past this is given back once written.
const KEEP_WRITTEN_AT_MOST: usize = 256 * 1024;
/// The longest frame header (a 64-bit length and a mask).
const MAX_HEADER: usize = 14;

/// Close code: normal closure.
pub const NORMAL: u16 = 1000;
/// Close code: a protocol error.
pub const PROTOCOL: u16 = 1002;
/// Close code: the endpoint refuses what it was sent (policy).
pub const POLICY: u16 = 1008;
/// Close code: a message too big to process.
pub const TOO_BIG: u16 = 1009;

/// A frame that breaks the protocol or the limits: the connection is closed with this
/// code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The close code ([`PROTOCOL`] or [`TOO_BIG`]).
    pub code: u16,
    /// Why, for the close frame.
    pub reason: &'static str,
}

impl Violation {
    fn protocol(reason: &'static str) -> Self {
        Violation { code: PROTOCOL, reason }
    }

    fn too_big() -> Self {
        Violation { code: TOO_BIG, reason: "message too big" }
    }
}

/// What a client sent, as the connection sees it.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// A whole binary message (its fragments joined).
    Binary(&'a [u8]),
    /// A whole text message (not understood by dhrt; its content is not needed).
    Text,
    /// A ping, to be answered with a pong carrying the same bytes.
    Ping(&'a [u8]),
    /// A pong.
    Pong,
    /// A close frame, with its status code if it had one.
    Close(Option<u16>),
}

/// The read side of a client connection: bytes as they arrive, and the frames in them.
#[derive(Debug)]
pub struct FrameReader {
    /// Read bytes live in `buf[start..end]`; `buf[end..]` is room to read into.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The largest message accepted, in bytes.
    max: usize,
    /// A fragmented message being joined: whether it is text, and its bytes so far.
    fragments: Option<(bool, Vec<u8>)>,
    /// The last message joined from fragments (handed out as a slice of this).
    joined: Vec<u8>,
    /// The bytes the frame waiting for the rest of its bytes takes, header included (0
    /// while its header is incomplete).
    wanted: usize,
    /// Whether the frames come from a client (masked) or a server (not masked).
    from_client: bool,
}

impl FrameReader {
    /// A server's reader of a client's messages of at most `max` bytes, starting with
    /// the bytes `early` already read from the connection (sent right behind the upgrade
    /// request).
    pub fn new(max: usize, early: Vec<u8>) -> Self {
        let end = early.len();
        let mut buf = early;
        buf.resize(end.max(READ_BUFFER), 0);
        FrameReader {
            buf,
            start: 0,
            end,
            max,
            fragments: None,
            joined: Vec::new(),
            wanted: 0,
            from_client: true,
        }
    }

    /// A client's reader of a server's messages of at most `max` bytes.
    pub fn of_server(max: usize) -> Self {
        FrameReader::of_server_after(max, Vec::new())
    }

    /// A client's reader of a server's messages of at most `max` bytes, starting with
    /// the bytes `early` the server sent right behind its answer to the upgrade.
    pub fn of_server_after(max: usize, early: Vec<u8>) -> Self {
        FrameReader { from_client: false, ..FrameReader::new(max, early) }
    }

    /// Bytes read but not yet taken as frames (the start of the next one).
    pub fn unread(&self) -> usize {
        self.end - self.start
    }

    /// Reads what `io` has into the buffer: the number of bytes read, 0 at the end of
    /// the stream.
    pub fn poll_fill<R: AsyncRead + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut R,
    ) -> Poll<io::Result<usize>> {
        self.make_room();
        let mut read = ReadBuf::new(&mut self.buf[self.end..]);
        ready!(Pin::new(io).poll_read(cx, &mut read))?;
        let n = read.filled().len();
        self.end += n;
        Poll::Ready(Ok(n))
    }

    /// The next whole message or control frame in the buffer; `None` until more bytes
    /// arrive; a [`Violation`] when the client broke the protocol (the connection
    /// should be closed with it: nothing after it is read).
    pub fn next_frame(&mut self) -> Result<Option<Incoming<'_>>, Violation> {
        if !self.joined.is_empty() {
            self.joined = Vec::new();
        }
        loop {
            let mut cursor = Cursor::new(&self.buf[self.start..self.end]);
            let (header, len) = match FrameHeader::parse(&mut cursor) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => {
                    self.wanted = 0;
                    self.make_room();
                    return Ok(None);
                }
                Err(_) => return Err(Violation::protocol("reserved opcode")),
            };
            let head = cursor.position() as usize;
            if header.rsv1 || header.rsv2 || header.rsv3 {
                return Err(Violation::protocol("reserved bits set"));
            }
            let mask = match (header.mask, self.from_client) {
                (None, true) => {
                    return Err(Violation::protocol("a client's frames must be masked"))
                }
                (Some(_), false) => {
                    return Err(Violation::protocol("a server's frames must not be masked"))
                }
                (mask, _) => mask,
            };
            let joined_so_far = self.fragments.as_ref().map_or(0, |(_, bytes)| bytes.len());
            match header.opcode {
                OpCode::Control(_) if !header.is_final || len > 125 => {
                    return Err(Violation::protocol("control frames must be whole and small"))
                }
                OpCode::Data(Data::Continue) if self.fragments.is_none() => {
                    return Err(Violation::protocol("a continuation with nothing to continue"))
                }
                OpCode::Data(Data::Text | Data::Binary) if self.fragments.is_some() => {
                    return Err(Violation::protocol("a new message inside a fragmented one"))
                }
                _ => {}
            }
            let len = usize::try_from(len).map_err(|_| Violation::too_big())?;
            if joined_so_far.saturating_add(len) > self.max {
                return Err(Violation::too_big());
            }
            let total = head + len;
            if self.end - self.start < total {
                self.wanted = total;
                return Ok(None);
            }
            let payload = self.start + head..self.start + total;
            self.start += total;
            if let Some(mask) = mask {
                unmask(&mut self.buf[payload.clone()], mask);
            }
            match header.opcode {
                OpCode::Control(Control::Ping) => {
                    return Ok(Some(Incoming::Ping(&self.buf[payload])))
                }
                OpCode::Control(Control::Pong) => return Ok(Some(Incoming::Pong)),
                OpCode::Control(_) => {
                    let code = self.buf[payload].get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
                    return Ok(Some(Incoming::Close(code)));
                }
                OpCode::Data(Data::Binary) if header.is_final => {
                    return Ok(Some(Incoming::Binary(&self.buf[payload])));
                }
                OpCode::Data(Data::Text) if header.is_final => return Ok(Some(Incoming::Text)),
                OpCode::Data(Data::Text | Data::Binary) => {
                    let text = header.opcode == OpCode::Data(Data::Text);
                    self.fragments = Some((text, self.buf[payload].to_vec()));
                }
                OpCode::Data(_) => {
                    let Some((text, mut bytes)) = self.fragments.take() else {
                        return Err(Violation::protocol("a continuation with nothing to continue"));
                    };
                    bytes.extend_from_slice(&self.buf[payload]);
                    if !header.is_final {
                        self.fragments = Some((text, bytes));
                    } else if text {
                        return Ok(Some(Incoming::Text));
                    } else {
                        self.joined = bytes;
                        return Ok(Some(Incoming::Binary(&self.joined)));
                    }
                }
            }
        }
    }

    /// Makes room to read into: starts over once everything is taken (giving a grown
    /// buffer back), moves what is unread to the front, and grows a buffer full of one
    /// unfinished frame — geometrically, as its bytes arrive, never past the frame: the
    /// memory a connection holds follows what it has sent ([`crate::server::read_budget`]
    /// bounds that), not what a frame header announces.
    fn make_room(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > KEEP_AT_MOST {
                self.buf = vec![0; READ_BUFFER];
            }
        }
        if self.end < self.buf.len() {
            return;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            return;
        }
        let unread = self.end;
        let grown = (2 * self.buf.len()).min(self.wanted.max(unread + READ_BUFFER));
        self.buf.resize(grown.max(unread + MAX_HEADER), 0);
    }
}

/// Unmasks (or masks) `payload` with `mask` (RFC 6455 §5.3).
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = payload.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let v = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ word;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i];
    }
}

/// The write side of a connection: frames waiting to be written, in one buffer.
#[derive(Debug, Default)]
pub struct FrameWriter {
    buf: Vec<u8>,
    /// Bytes of `buf` already written.
    written: usize,
    /// Where a message is encoded before it is framed.
    scratch: Vec<u8>,
    /// A client's writer masks every frame, with masks from this generator (xorshift,
    /// seeded by the standard library's per-process random keys); a server's does not.
    masks: Option<u64>,
    /// Bytes were written since the stream was last flushed.
    unflushed: bool,
}

impl FrameWriter {
    /// A server's writer (frames unmasked).
    pub fn server() -> Self {
        FrameWriter::default()
    }

    /// A client's writer: every frame masked, with an unpredictable mask (RFC 6455
    /// §5.3).
    pub fn client() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let seed = std::collections::hash_map::RandomState::new().build_hasher().finish();
        FrameWriter { masks: Some(seed | 1), ..FrameWriter::default() }
    }

    /// Frames the binary message `encode` writes (into an empty buffer it is given);
    /// nothing is framed when it fails.
    pub fn binary<E>(
        &mut self,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.scratch.clear();
        encode(&mut self.scratch)?;
        let scratch = std::mem::take(&mut self.scratch);
        self.frame(OpCode::Data(Data::Binary), &scratch);
        self.scratch = scratch;
        Ok(())
    }

    /// Frames a binary message already encoded (a light peer's frame): copied once,
    /// into the write buffer.
    pub fn binary_encoded(&mut self, payload: &[u8]) {
        self.frame(OpCode::Data(Data::Binary), payload);
    }

    /// Frames a pong answering a ping that carried `payload`.
    pub fn pong(&mut self, payload: &[u8]) {
        self.frame(OpCode::Control(Control::Pong), payload);
    }

    /// Frames a close frame with `code` and `reason` (cut to fit a control frame).
    pub fn close(&mut self, code: u16, reason: &str) {
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(&reason.as_bytes()[..end]);
        self.frame(OpCode::Control(Control::Close), &payload);
    }

    /// Appends one final frame of `opcode` carrying `payload`, masked by a client.
    fn frame(&mut self, opcode: OpCode, payload: &[u8]) {
        let mask = self.masks.as_mut().map(|state| {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            (*state as u32).to_ne_bytes()
        });
        let header = FrameHeader { opcode, mask, ..FrameHeader::default() };
        let out = &mut self.buf;
        out.reserve(MAX_HEADER + payload.len());
        // Formatting into a vector cannot fail.
        let _ = header.format(payload.len() as u64, out);
        let start = out.len();
        out.extend_from_slice(payload);
        if let Some(mask) = mask {
            unmask(&mut out[start..], mask);
        }
    }

    /// Writes everything framed to `io`, then flushes it (a TLS stream may hold bytes
    /// until flushed): ready once all of it is out, an error when the stream failed.
    pub fn poll_send<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut W,
    ) -> Poll<io::Result<()>> {
        while !self.is_empty() {
            let n = ready!(Pin::new(&mut *io).poll_write(cx, self.unwritten()))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.advance(n);
            self.unflushed = true;
        }
        if self.unflushed {
            ready!(Pin::new(io).poll_flush(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }

    /// Sends everything framed (a close frame last, as a rule), giving up after
    /// `grace`: the connection is ending.
    pub async fn send_within<W: AsyncWrite + Unpin>(&mut self, io: &mut W, grace: Duration) {
        let send = std::future::poll_fn(|cx| self.poll_send(cx, io));
        let _ = tokio::time::timeout(grace, send).await;
    }

    /// The framed bytes not written yet.
    pub fn unwritten(&self) -> &[u8] {
        &self.buf[self.written..]
    }

    /// Whether everything framed has been written.
    pub fn is_empty(&self) -> bool {
        self.written == self.buf.len()
    }

    /// Marks `n` more bytes as written.
    pub fn advance(&mut self, n: usize) {
        self.written = (self.written + n).min(self.buf.len());
        if self.is_empty() {
            self.buf.clear();
            self.written = 0;
            if self.buf.capacity() > KEEP_WRITTEN_AT_MOST {
                self.buf = Vec::new();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as a client sends it: masked with `mask`.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        let mut body = payload.to_vec();
        unmask(&mut body, mask);
        out.extend_from_slice(&body);
        out
    }

    /// Feeds `bytes` to a fresh reader in pieces of `step`, collecting what it yields.
    fn read_all(max: usize, bytes: &[u8], step: usize) -> Result<Vec<String>, Violation> {
        let mut reader = FrameReader::new(max, Vec::new());
        let mut seen = Vec::new();
        for piece in bytes.chunks(step) {
            if reader.buf.len() < reader.end + piece.len() {
                reader.buf.resize(reader.end + piece.len(), 0);
            }
            reader.buf[reader.end..reader.end + piece.len()].copy_from_slice(piece);
            reader.end += piece.len();
            while let Some(incoming) = reader.next_frame()? {
                seen.push(match incoming {
                    Incoming::Binary(b) => format!("binary {}", String::from_utf8_lossy(b)),
                    Incoming::Text => "text".into(),
                    Incoming::Ping(p) => format!("ping {}", String::from_utf8_lossy(p)),
                    Incoming::Pong => "pong".into(),
                    Incoming::Close(code) => format!("close {code:?}"),
                });
            }
        }
        Ok(seen)
    }

    #[test]
    fn frames_are_read_whole_however_the_bytes_arrive() {
        let big = "x".repeat(70_000);
        let mut stream = client_frame(true, 2, b"hello", [1, 2, 3, 4]);
        stream.extend(client_frame(true, 9, b"are you there", [9, 9, 9, 9]));
        stream.extend(client_frame(false, 2, b"frag", [5, 6, 7, 8]));
        stream.extend(client_frame(true, 10, b"", [0, 0, 0, 0]));
        stream.extend(client_frame(true, 0, b"mented", [8, 7, 6, 5]));
        stream.extend(client_frame(true, 2, big.as_bytes(), [3, 1, 4, 1]));
        stream.extend(client_frame(true, 1, b"some text", [2, 7, 1, 8]));
        stream.extend(client_frame(true, 8, &1000u16.to_be_bytes(), [1, 1, 2, 3]));
        let expected = vec![
            "binary hello".to_string(),
            "ping are you there".into(),
            "pong".into(),
            "binary fragmented".into(),
            format!("binary {big}"),
            "text".into(),
            "close Some(1000)".into(),
        ];
        for step in [1, 3, 7, 100, 4096, stream.len()] {
            assert_eq!(read_all(1 << 20, &stream, step).unwrap(), expected, "pieces of {step}");
        }
    }

    #[test]
    fn a_message_over_the_limit_is_refused_from_its_header_alone() {
        let frame = client_frame(true, 2, &[7; 1000], [1, 2, 3, 4]);
        // Only the header (8 bytes) has arrived: already refused.
        assert_eq!(read_all(999, &frame[..8], 8), Err(Violation::too_big()));
        assert!(read_all(1000, &frame, 8).is_ok());
        // Fragments count together.
        let mut parts = client_frame(false, 2, &[7; 600], [1, 2, 3, 4]);
        parts.extend(client_frame(true, 0, &[7; 600], [1, 2, 3, 4]));
        assert_eq!(read_all(1000, &parts, 64), Err(Violation::too_big()));
    }

    #[test]
    fn frames_breaking_the_protocol_are_refused() {
        let refused = |bytes: Vec<u8>| read_all(1 << 20, &bytes, 5).unwrap_err().code;
        let mut unmasked = client_frame(true, 2, b"hi", [1, 2, 3, 4]);
        unmasked[1] &= 0x7f;
        unmasked.drain(2..6);
        assert_eq!(refused(unmasked), PROTOCOL);
        let mut reserved_bit = client_frame(true, 2, b"hi", [1, 2, 3, 4]);
        reserved_bit[0] |= 0x40;
        assert_eq!(refused(reserved_bit), PROTOCOL);
        assert_eq!(refused(client_frame(true, 3, b"hi", [1, 2, 3, 4])), PROTOCOL);
        assert_eq!(refused(client_frame(false, 9, b"hi", [1, 2, 3, 4])), PROTOCOL);
        assert_eq!(refused(client_frame(true, 9, &[0; 126], [1, 2, 3, 4])), PROTOCOL);
        assert_eq!(refused(client_frame(true, 0, b"hi", [1, 2, 3, 4])), PROTOCOL);
        let mut nested = client_frame(false, 2, b"a", [1, 2, 3, 4]);
        nested.extend(client_frame(true, 2, b"b", [1, 2, 3, 4]));
        assert_eq!(refused(nested), PROTOCOL);
    }

    #[test]
    fn the_buffer_shrinks_back_after_a_large_message() {
        let frame = client_frame(true, 2, &[1; 200_000], [1, 2, 3, 4]);
        let mut reader = FrameReader::new(1 << 20, frame);
        assert!(matches!(reader.next_frame(), Ok(Some(Incoming::Binary(b))) if b.len() == 200_000));
        assert_eq!(reader.next_frame(), Ok(None));
        assert_eq!(reader.buf.len(), READ_BUFFER);
    }

    #[test]
    fn a_large_frame_takes_memory_as_its_bytes_arrive_not_as_announced() {
        let frame = client_frame(true, 2, &[1; 1 << 20], [1, 2, 3, 4]);
        let mut reader = FrameReader::new(16 << 20, frame[..64].to_vec());
        assert_eq!(reader.next_frame(), Ok(None));
        reader.make_room();
        assert!(reader.buf.len() <= 2 * READ_BUFFER, "{} bytes", reader.buf.len());
        // Filled as a socket would fill it: the buffer at most doubles each time.
        let mut at = 64;
        while at < frame.len() {
            reader.make_room();
            let room = (reader.buf.len() - reader.end).min(frame.len() - at);
            reader.buf[reader.end..reader.end + room].copy_from_slice(&frame[at..at + room]);
            reader.end += room;
            at += room;
            assert!(reader.buf.len() <= 2 * at + READ_BUFFER, "{} for {at}", reader.buf.len());
        }
        assert!(matches!(reader.next_frame(), Ok(Some(Incoming::Binary(b))) if b.len() == 1 << 20));
    }

    #[test]
    fn written_frames_are_what_a_client_reads() {
        let mut writer = FrameWriter::server();
        writer
            .binary(|out| {
                out.extend_from_slice(&[42; 300]);
                Ok::<_, ()>(())
            })
            .unwrap();
        writer.pong(b"p");
        writer.close(TOO_BIG, &"é".repeat(100));
        assert!(writer.binary(|_| Err("no")).is_err());
        let bytes = writer.unwritten().to_vec();
        assert_eq!(&bytes[..4], &[0x82, 126, 1, 44], "final binary, 16-bit length 300");
        assert_eq!(&bytes[304..307], &[0x8a, 1, b'p']);
        assert_eq!(&bytes[307..311], &[0x88, 124, 0x03, 0xf1], "1009, then the reason");
        assert_eq!(bytes.len(), 311 + 122, "the reason cut at a character boundary");
        writer.advance(10);
        assert_eq!(writer.unwritten().len(), bytes.len() - 10);
        writer.advance(bytes.len());
        assert!(writer.is_empty());
    }

    #[test]
    fn what_one_end_writes_the_other_reads() {
        let mut client = FrameWriter::client();
        let mut server = FrameWriter::server();
        for (i, writer) in [&mut client, &mut server].into_iter().enumerate() {
            for n in [0, 5, 300, 70_000] {
                writer
                    .binary(|out| {
                        out.extend((0..n).map(|b| (b % 251) as u8));
                        Ok::<_, ()>(())
                    })
                    .unwrap();
            }
            writer.pong(b"pp");
            let bytes = writer.unwritten().to_vec();
            let from_client = i == 0;
            let mut reader = if from_client {
                FrameReader::new(1 << 20, bytes.clone())
            } else {
                FrameReader::of_server(1 << 20)
            };
            if !from_client {
                reader.buf = bytes.clone();
                reader.end = bytes.len();
            }
            for n in [0, 5, 300, 70_000] {
                let expected: Vec<u8> = (0..n).map(|b| (b % 251) as u8).collect();
                assert_eq!(reader.next_frame(), Ok(Some(Incoming::Binary(&expected[..]))));
            }
            assert_eq!(reader.next_frame(), Ok(Some(Incoming::Pong)));
            // Each end refuses what only the other may send.
            let mut wrong = if from_client {
                FrameReader::of_server(1 << 20)
            } else {
                FrameReader::new(1 << 20, Vec::new())
            };
            wrong.buf = bytes.clone();
            wrong.end = bytes.len();
            assert_eq!(wrong.next_frame().unwrap_err().code, PROTOCOL);
        }
        // The first two frames (no payload, then 5 bytes): each mask follows a 2-byte
        // header.
        assert_ne!(client.unwritten()[2..6], client.unwritten()[8..12], "masks differ");
    }
}
