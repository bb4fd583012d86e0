//! Answers to client sockets on the node thread, written through io_uring.
//!
//! A client connection whose socket moved to the node thread ([`super::handoff`]) made
//! two system calls a request at pipeline 1 — a `recvfrom` when epoll said it was
//! readable and a `sendto` for its answer — and the kernel's system-call layer was
//! about 0.6 µs of a request's 7.5 (docs/benchmarks.md, "Pipeline 1 at parity"). Here
//! the answers of a whole turn — every connection served in it — go to the kernel in
//! one `io_uring_enter`, one send entry each, instead of one `sendto` each.
//!
//! A [`RingSocket`] is an `AsyncRead` + `AsyncWrite` like the `TcpStream` it wraps, so
//! framing, the read meter, the output limit and the desk are unchanged:
//!
//! - **Reading** is the `TcpStream`'s: epoll readiness, then `recvfrom`. (Receives on
//!   the ring were tried: they complete as deferred task work, whose eventfd
//!   notification the kernel did not always give — with 6.18 the node slept with
//!   receives waiting, about once per 3,000 requests; see docs/benchmarks.md.)
//! - **Writing.** A write is copied into the socket's queue ([`QUEUE_MAX`] bytes at
//!   most; past that the writer waits) and a send entry is queued for the turn's
//!   submission. Sends are non-blocking (`MSG_DONTWAIT`), so each completes during the
//!   submission itself: the bytes are in the kernel's socket buffer, as a `TcpStream`'s
//!   written bytes would be. A send the socket has no room for comes back `EAGAIN`
//!   (or short); the socket is then *blocked*, and the driver writes the rest as epoll
//!   had it written before — `write` when the socket is writable — while the queue
//!   still bounds what the connection may add: a slow reader costs what it did.
//! - **The turn.** A connection that queues a send wakes the ring's driver task; on the
//!   node thread's single-threaded runtime the driver runs after every connection woken
//!   before it, so it submits the whole turn at once and reaps the completions.
//! - **Closing.** A socket dropped with bytes queued stays in its slot until they have
//!   left (a close frame still reaches a client that reads), for at most [`LINGER`];
//!   its descriptor is never closed while an entry names it.
//!
//! The ring is per node thread ([`Ring::start`], kept in a thread-local so the handoff
//! finds it). A kernel without io_uring (or one that refuses it, as some container
//! sandboxes do) leaves the node on epoll alone ([`super::handoff::SocketIo`],
//! `dhrt serve --client-io`).

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use std::{
    cell::RefCell,
    future::{poll_fn, Future},
    io,
    os::fd::AsRawFd,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard, Weak},
    task::{Context, Poll, Waker},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    time::Instant,
};

/// Bytes a socket queues for sending beyond the send in flight before its writer waits.
pub const QUEUE_MAX: usize = 256 << 10;
/// How long a closed socket's queued bytes may take to leave.
pub const LINGER: Duration = Duration::from_secs(1);
/// Submission queue entries (completions get twice as many; the kernel keeps any
/// overflow, `IORING_FEAT_NODROP`).
const ENTRIES: u32 = 1024;

thread_local! {
    /// This thread's ring, once started.
    static LOCAL: RefCell<Option<Ring>> = const { RefCell::new(None) };
}

/// The node thread's ring, shared by its sockets and its driver task.
#[derive(Clone)]
pub struct Ring(Arc<Mutex<Shared>>);

/// A client socket whose answers leave through the node thread's [`Ring`].
pub struct RingSocket {
    ring: Arc<Mutex<Shared>>,
    slot: u32,
    tcp: Arc<TcpStream>,
}

struct Shared {
    ring: IoUring,
    socks: Vec<Option<Sock>>,
    free: Vec<u32>,
    /// Slots whose socket is blocked (or closed with bytes still to send): the driver
    /// writes what they hold as the sockets become writable.
    blocked: Vec<u32>,
    /// The driver task, to wake when a send is queued or a socket blocks.
    driver: Option<Waker>,
    /// Entries were queued since the last submission.
    queued: bool,
    /// Completions reaped, kept for its allocation.
    done: Vec<(u64, i32)>,
}

struct Sock {
    tcp: Arc<TcpStream>,
    /// Bytes queued behind the send in flight.
    queue: Vec<u8>,
    /// The bytes of the send in flight (the kernel reads them), and how many have left.
    sending: Vec<u8>,
    sent: usize,
    /// A send entry is queued or in flight.
    send: bool,
    /// The socket had no room: the driver writes the rest of `sending`, then `queue`.
    blocked: bool,
    werr: Option<i32>,
    writer: Option<Waker>,
    /// The [`RingSocket`] is gone: freed once its bytes have left, or by this time.
    closed: Option<Instant>,
}

impl Ring {
    /// Sets up a ring for this thread and spawns its driver on the current (the node
    /// thread's) runtime; an error when the kernel refuses io_uring.
    pub fn start() -> io::Result<Ring> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_cqsize(ENTRIES * 2)
            .build(ENTRIES)
            .or_else(|_| IoUring::builder().setup_cqsize(ENTRIES * 2).build(ENTRIES))?;
        let shared = Arc::new(Mutex::new(Shared {
            ring,
            socks: Vec::new(),
            free: Vec::new(),
            blocked: Vec::new(),
            driver: None,
            queued: false,
            done: Vec::with_capacity(256),
        }));
        tokio::spawn(drive(Arc::downgrade(&shared)));
        let ring = Ring(shared);
        LOCAL.with(|l| *l.borrow_mut() = Some(ring.clone()));
        Ok(ring)
    }

    /// This thread's ring, if [`Ring::start`] ran on it.
    pub fn local() -> Option<Ring> {
        LOCAL.with(|l| l.borrow().clone())
    }

    /// Writes `tcp`'s answers through the ring from now on.
    pub fn adopt(&self, tcp: TcpStream) -> RingSocket {
        let tcp = Arc::new(tcp);
        let sock = Sock {
            tcp: tcp.clone(),
            queue: Vec::new(),
            sending: Vec::new(),
            sent: 0,
            send: false,
            blocked: false,
            werr: None,
            writer: None,
            closed: None,
        };
        let mut sh = lock(&self.0);
        let slot = match sh.free.pop() {
            Some(slot) => {
                sh.socks[slot as usize] = Some(sock);
                slot
            }
            None => {
                sh.socks.push(Some(sock));
                (sh.socks.len() - 1) as u32
            }
        };
        RingSocket { ring: self.0.clone(), slot, tcp }
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn sock(&mut self, slot: u32) -> &mut Sock {
        self.socks[slot as usize].as_mut().expect("a live socket's slot is filled")
    }

    fn wake_driver(&mut self) {
        if let Some(waker) = self.driver.take() {
            waker.wake();
        }
    }

    /// Queues `entry` for the turn's submission (submitting at once if the queue is full).
    fn push(&mut self, entry: squeue::Entry) {
        // SAFETY: the bytes an entry points to are its socket's `sending`, which is not
        // moved, changed or freed until the entry completes (`send` is set meanwhile),
        // and the slot — holding the socket open — is not freed before either.
        while unsafe { self.ring.submission().push(&entry) }.is_err() {
            self.submit();
        }
        self.queued = true;
        self.wake_driver();
    }

    /// Submits what is queued (the sends complete as it returns) and handles the
    /// completions.
    fn submit(&mut self) {
        if let Err(e) = self.ring.submit() {
            if !matches!(e.raw_os_error(), Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)) {
                tracing::warn!(error = %e, "io_uring submission failed");
            }
        }
        self.reap();
    }

    /// Sends what is queued, if nothing is in flight and the socket is not blocked.
    fn start_send(&mut self, slot: u32) {
        let s = self.sock(slot);
        if s.send || s.blocked || s.queue.is_empty() || s.werr.is_some() {
            return;
        }
        std::mem::swap(&mut s.queue, &mut s.sending);
        s.sent = 0;
        s.send = true;
        let fd = s.tcp.as_raw_fd();
        let entry = opcode::Send::new(types::Fd(fd), s.sending.as_ptr(), s.sending.len() as u32)
            .flags(libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT)
            .build()
            .user_data(u64::from(slot));
        self.push(entry);
    }

    /// Handles every completion the kernel posted.
    fn reap(&mut self) {
        let mut done = std::mem::take(&mut self.done);
        done.extend(self.ring.completion().map(|c: cqueue::Entry| (c.user_data(), c.result())));
        for &(slot, result) in &done {
            self.sent(slot as u32, result);
        }
        done.clear();
        self.done = done;
    }

    fn sent(&mut self, slot: u32, result: i32) {
        let s = self.sock(slot);
        s.send = false;
        match result {
            n if n >= 0 && s.sent + n as usize >= s.sending.len() => {
                s.sending.clear();
                s.sent = 0;
            }
            // Short, or no room at all: the socket is full.
            n if n >= 0 => {
                s.sent += n as usize;
                s.blocked = true;
            }
            e if -e == libc::EAGAIN || -e == libc::EINTR => s.blocked = true,
            e => {
                s.werr = Some(-e);
                s.sending = Vec::new();
                s.queue = Vec::new();
            }
        }
        let blocked = s.blocked;
        if let Some(waker) = s.writer.take() {
            waker.wake();
        }
        if blocked {
            self.blocked.push(slot);
            self.wake_driver();
        } else {
            self.start_send(slot);
            self.free_if_done(slot);
        }
    }

    /// Frees a closed socket's slot (closing the socket) once nothing of it remains.
    fn free_if_done(&mut self, slot: u32) {
        let Some(s) = self.socks[slot as usize].as_ref() else { return };
        let idle = !s.send && !s.blocked && (s.queue.is_empty() || s.werr.is_some());
        if s.closed.is_some() && idle {
            self.socks[slot as usize] = None;
            self.free.push(slot);
        }
    }

    /// Writes what blocked sockets hold, as far as they take it: `write` until it would
    /// block, then a wait (on `cx`) for epoll to say the socket is writable. A socket
    /// that has taken everything is unblocked (its next bytes go through the ring
    /// again); a closed one past its [`LINGER`] is given up. The earliest such deadline.
    fn unblock(&mut self, cx: &mut Context<'_>) -> Option<Instant> {
        let mut blocked = std::mem::take(&mut self.blocked);
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        let mut ended = Vec::new();
        blocked.retain(|&slot| {
            let Some(s) = self.socks[slot as usize].as_mut() else { return false };
            if s.write_out(cx) {
                match s.closed {
                    Some(by) if by <= now => {
                        s.werr = Some(libc::ETIMEDOUT);
                        s.blocked = false;
                    }
                    Some(by) => next = Some(next.map_or(by, |n| n.min(by))),
                    None => {}
                }
            }
            if s.blocked {
                return true;
            }
            if let Some(waker) = s.writer.take() {
                waker.wake();
            }
            ended.push(slot);
            false
        });
        self.blocked = blocked;
        for slot in ended {
            self.start_send(slot);
            self.free_if_done(slot);
        }
        next
    }
}

impl Sock {
    /// Writes the rest of a blocked socket's bytes: whether it is still blocked.
    fn write_out(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.werr.is_some() {
                self.blocked = false;
                return false;
            }
            if self.sent == self.sending.len() {
                self.sending.clear();
                self.sent = 0;
                if self.queue.is_empty() {
                    self.blocked = false;
                    return false;
                }
                std::mem::swap(&mut self.queue, &mut self.sending);
            }
            match self.tcp.try_write(&self.sending[self.sent..]) {
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match self.tcp.poll_write_ready(cx) {
                        Poll::Ready(Ok(())) => continue,
                        Poll::Ready(Err(e)) => self.werr = e.raw_os_error().or(Some(libc::EIO)),
                        Poll::Pending => return true,
                    }
                }
                Err(e) => self.werr = e.raw_os_error().or(Some(libc::EIO)),
            }
        }
    }
}

/// The ring's driver: submits each turn's sends once every connection woken before it
/// has run, and writes out blocked sockets as they become writable. Ends when the ring
/// is gone.
async fn drive(ring: Weak<Mutex<Shared>>) {
    let mut linger: Option<Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        let go = poll_fn(|cx| {
            let Some(shared) = ring.upgrade() else { return Poll::Ready(false) };
            let mut sh = lock(&shared);
            let next = sh.unblock(cx);
            if sh.queued {
                return Poll::Ready(true);
            }
            sh.driver = Some(cx.waker().clone());
            drop(sh);
            linger = next.map(|at| Box::pin(tokio::time::sleep_until(at)));
            if let Some(sleep) = linger.as_mut() {
                if sleep.as_mut().poll(cx).is_ready() {
                    cx.waker().wake_by_ref();
                }
            }
            Poll::Pending
        })
        .await;
        let Some(shared) = ring.upgrade().filter(|_| go) else { return };
        let mut sh = lock(&shared);
        sh.queued = false;
        sh.submit();
    }
}

impl RingSocket {
    fn with<R>(&self, f: impl FnOnce(&mut Shared, u32) -> R) -> R {
        let mut sh = lock(&self.ring);
        f(&mut sh, self.slot)
    }
}

impl AsyncRead for RingSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // As `TcpStream::poll_read`: readiness first, so an empty socket costs no call,
        // and a read that did not fill the buffer took all there was — the readiness is
        // cleared without another call (epoll signals the next bytes as they arrive).
        loop {
            std::task::ready!(self.tcp.poll_read_ready(cx))?;
            let room = buf.remaining();
            match self.tcp.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    if n > 0 && n < room {
                        let _ = self.tcp.try_io(tokio::io::Interest::READABLE, || {
                            Err::<(), _>(io::ErrorKind::WouldBlock.into())
                        });
                    }
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for RingSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.with(|sh, slot| {
            let s = sh.sock(slot);
            if let Some(e) = s.werr {
                return Poll::Ready(Err(io::Error::from_raw_os_error(e)));
            }
            let room = QUEUE_MAX.saturating_sub(s.queue.len());
            if room == 0 {
                s.writer = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let n = room.min(buf.len());
            s.queue.extend_from_slice(&buf[..n]);
            sh.start_send(slot);
            Poll::Ready(Ok(n))
        })
    }

    /// Ready at once (unless the socket failed): what was written leaves with the turn's
    /// submission, or through the driver when the socket is blocked, as a
    /// `TcpStream`'s written bytes sit in the kernel's socket buffer.
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|sh, slot| match sh.sock(slot).werr {
            Some(e) => Poll::Ready(Err(io::Error::from_raw_os_error(e))),
            None => Poll::Ready(Ok(())),
        })
    }

    /// Waits for everything queued to leave, then shuts the sending side down.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let pending = self.with(|sh, slot| {
            let s = sh.sock(slot);
            if let Some(e) = s.werr {
                return Some(Err(io::Error::from_raw_os_error(e)));
            }
            if s.send || s.blocked || !s.queue.is_empty() {
                s.writer = Some(cx.waker().clone());
                return Some(Ok(()));
            }
            None
        });
        match pending {
            Some(Err(e)) => Poll::Ready(Err(e)),
            Some(Ok(())) => Poll::Pending,
            None => {
                let fd = rustix::fd::AsFd::as_fd(&*self.tcp);
                Poll::Ready(
                    rustix::net::shutdown(fd, rustix::net::Shutdown::Write).map_err(Into::into),
                )
            }
        }
    }
}

impl Drop for RingSocket {
    fn drop(&mut self) {
        let mut sh = lock(&self.ring);
        let slot = self.slot;
        sh.start_send(slot);
        let s = sh.sock(slot);
        s.writer = None;
        s.closed = Some(Instant::now() + LINGER);
        if s.blocked {
            // The driver gives it up at the deadline.
            sh.wake_driver();
        }
        sh.free_if_done(slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// This thread's ring, or `None` (printed) where the kernel refuses io_uring.
    fn ring() -> Option<Ring> {
        match Ring::start() {
            Ok(ring) => Some(ring),
            Err(e) => {
                println!("skipped: io_uring is not available here ({e})");
                None
            }
        }
    }

    /// A connected pair: the server's end adopted by `ring` with a small send buffer,
    /// the client's with a small receive buffer, so a few KiB fill them.
    async fn pair(ring: &Ring) -> (RingSocket, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpSocket::new_v4().unwrap();
        client.set_recv_buffer_size(4096).unwrap();
        let (client, accepted) =
            tokio::join!(client.connect(listener.local_addr().unwrap()), listener.accept());
        let server = accepted.unwrap().0;
        rustix::net::sockopt::set_socket_send_buffer_size(&server, 4096).unwrap();
        (ring.adopt(server), client.unwrap())
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn bytes_written_through_a_full_socket_arrive_whole_and_in_order() {
        let Some(ring) = ring() else { return };
        let (mut sock, mut client) = pair(&ring).await;
        let data = pattern(4 << 20);
        let writer = async {
            sock.write_all(&data).await.unwrap();
            sock.shutdown().await.unwrap();
            sock
        };
        let reader = async {
            // Nothing read for a while: the sends come back short and the socket blocks.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        };
        let both =
            tokio::time::timeout(Duration::from_secs(20), async { tokio::join!(writer, reader) });
        let (sock, got) = both.await.expect("everything is written and read");
        assert!(got == data, "{} bytes of {} arrived, or out of order", got.len(), data.len());
        drop(sock);
        let sh = lock(&ring.0);
        assert!(sh.socks.iter().all(Option::is_none), "the dropped socket's slot is free");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_socket_dropped_with_bytes_queued_still_sends_them_then_closes() {
        let Some(ring) = ring() else { return };
        let (mut sock, mut client) = pair(&ring).await;
        let data = pattern(200 << 10);
        sock.write_all(&data).await.unwrap();
        drop(sock);
        let mut got = Vec::new();
        let read = tokio::time::timeout(LINGER, client.read_to_end(&mut got)).await;
        assert!(matches!(read, Ok(Ok(_))), "the stream ends within the linger: {read:?}");
        assert!(got == data, "{} bytes of {} arrived, or out of order", got.len(), data.len());
        assert!(lock(&ring.0).socks.iter().all(Option::is_none), "its slot is free");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_closed_socket_nobody_reads_is_given_up_after_the_linger() {
        let Some(ring) = ring() else { return };
        let (mut sock, _client) = pair(&ring).await;
        sock.write_all(&pattern(200 << 10)).await.unwrap();
        drop(sock);
        tokio::time::sleep(LINGER + Duration::from_millis(300)).await;
        assert!(lock(&ring.0).socks.iter().all(Option::is_none), "its slot is free");
    }
}
