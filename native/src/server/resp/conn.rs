//! One Redis client connection, served on the node thread.
//!
//! The connection reads commands ([`crate::resp::request`]), answers the ones about
//! the connection itself at once (PING, SELECT, HELLO, AUTH...), and turns data
//! commands into dhrt operations ([`super::plan`]) that it hands to the node at the
//! desk ([`crate::server::desk`]) — the same path, limits and checks as a WebSocket
//! client's requests. The node answers by request id, in any order; Redis clients
//! expect replies in command order, so the connection keeps its commands in a queue
//! and writes each reply once every command before it has been answered.
//!
//! A command with two stages (DEL, GETDEL, SET ... GET) is a barrier: the commands
//! after it wait, unsent, until it has finished, so no later write overtakes its
//! delete. Everything a connection holds is bounded: a command is at most one frame
//! ([`crate::server::AppState::max_frame`]); at most [`MAX_QUEUED`] commands, holding at
//! most the output limit in arguments and waiting replies, wait in its queue; requests
//! go to the node in growing chunks (slow start, [`Conn::hand`]) and stop while half the
//! output limit of replies is unwritten; no more input is read while the output limit
//! is. So a client that pipelines more than the limit in replies gets all of them as it
//! reads, and one that does not read only stops being read (TCP pushes back), as in
//! Redis.

use super::{
    commands::{self, COMMANDS},
    notify::{self, Subscriptions, MAX_SUBSCRIPTIONS},
    plan::{self, Target},
    queue::{Queue, Requests, MAX_QUEUED},
    RespConfig,
};
use crate::resp::{
    reply::{Protocol, Writer},
    request::{self, BadRequest, Bounds},
};
use crate::server::{
    auth::{session::Session, Refusal},
    desk::Desk,
    driver::{Input, Sink},
    inbox,
    outbox::{self, OutboxReceiver, Parcel},
    read_budget::{Metered, ReadMeter},
    wall_ms, AppState,
};
use bytes::Bytes;
use dhrt_core::{
    node::ClientId,
    proto::{
        client::{Consistency, Op, Reply},
        ClientRequest, ClientResponse,
    },
    Millis,
};
use std::{
    ops::Range,
    pin::Pin,
    sync::{atomic::Ordering, Arc},
    task::Poll,
    time::Duration,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Most requests handed to the node in one call.
const MAX_CHUNK: usize = 256;
/// Bytes read from the socket at a time (at least).
const READ_CHUNK: usize = 16 * 1024;
/// How long a closing connection may take to receive its last replies.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How a connection reaches the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// At the desk: the connection runs on the node thread and its requests are
    /// handled within its own poll (plain TCP).
    Desk,
    /// Through the node's inbox, from the server's runtime (TLS: the session stays
    /// with the stream).
    Inbox,
}

/// The byte stream a connection is served on.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Serves one Redis connection until it closes, the node closes it, or the server
/// stops.
pub async fn serve<IO: Stream>(
    io: Metered<IO>,
    port: u16,
    meter: ReadMeter,
    state: AppState,
    config: Arc<RespConfig>,
    route: Route,
) {
    let desk = match route {
        Route::Desk => match state.desk.get().cloned() {
            Some(desk) => Some(desk),
            None => return,
        },
        Route::Inbox => None,
    };
    let hand = |input: Input| match &desk {
        Some(desk) => desk.hand(input),
        None => state.submit(input),
    };
    let client = state.next_client();
    let (outbox, rx, _tx) = outbox::outbox(state.output.clone());
    if !hand(Input::Open { client, sink: Sink::Conn(outbox) }) {
        return;
    }
    state.counters.clients.fetch_add(1, Ordering::Relaxed);
    let mut conn = Conn::new(client, io, meter, state.clone(), config, desk.clone());
    conn.port = port;
    tokio::select! {
        biased;
        () = conn.run(rx) => {}
        () = state.stopped() => {}
    }
    state.counters.clients.fetch_sub(1, Ordering::Relaxed);
    hand(Input::Gone(client));
}

/// What the connection waits for next.
enum Event {
    Read,
    /// Replies were written: requests held back may go to the node.
    Drained,
    Answers,
    ClosedByNode(String),
    Gone,
}

struct Conn<IO> {
    client: ClientId,
    io: Metered<IO>,
    meter: ReadMeter,
    /// Bytes read: `buf[start..end]` is not yet taken.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Replies not yet written: `out[written..]`.
    out: Vec<u8>,
    written: usize,
    /// Output budget bytes of the node's answers, given back once `out` is written.
    owed: usize,
    state: AppState,
    config: Arc<RespConfig>,
    /// The node's desk, when the connection is served at it ([`Route::Desk`]).
    desk: Option<Arc<dyn Desk>>,
    /// Requests handed through the inbox and not yet answered ([`Route::Inbox`]).
    in_flight: usize,
    session: Session,
    refused: Option<Refusal>,
    proto: Protocol,
    target: Target,
    name: Option<Bytes>,
    queue: Queue,
    requests: Requests,
    answers: Vec<Parcel>,
    args: Vec<Range<usize>>,
    /// The arguments of the command being run (kept for its capacity).
    argv: Vec<Bytes>,
    /// QUIT, or a protocol error: close once `out` is written.
    closing: bool,
    /// The port the connection came in on (INFO).
    port: u16,
    /// Keyspace notifications subscribed to ([`notify`]).
    subs: Subscriptions,
    /// Requests handed to the node in one call now (see [`Conn::hand`]).
    chunk: usize,
    /// The wall clock when the event being handled came.
    now: Millis,
}

impl<IO: Stream> Conn<IO> {
    fn new(
        client: ClientId,
        io: Metered<IO>,
        meter: ReadMeter,
        state: AppState,
        config: Arc<RespConfig>,
        desk: Option<Arc<dyn Desk>>,
    ) -> Conn<IO> {
        let (state_limit, max_value) = (state.output.limit, state.max_value);
        let target = Target {
            collection: config
                .database(0)
                .unwrap_or(dhrt_core::proto::client::DEFAULT_COLLECTION)
                .to_string(),
            consistency: Consistency::Default,
        };
        Conn {
            client,
            io,
            meter,
            buf: vec![0; READ_CHUNK],
            start: 0,
            end: 0,
            out: Vec::with_capacity(READ_CHUNK),
            written: 0,
            owed: 0,
            state,
            config,
            desk,
            in_flight: 0,
            session: Session::default(),
            refused: None,
            proto: Protocol::Resp2,
            target,
            name: None,
            queue: Queue::default(),
            requests: Requests::default(),
            answers: Vec::new(),
            args: Vec::new(),
            argv: Vec::new(),
            closing: false,
            port: 0,
            subs: Subscriptions::default(),
            // As many answers of the largest value as fit in half the output limit.
            chunk: (state_limit / 2 / max_value.max(1)).clamp(1, 16),
            now: wall_ms(),
        }
    }

    fn required(&self) -> bool {
        self.state.tokens.required()
    }

    fn authenticated(&self) -> bool {
        !self.required() || self.session.grant.is_some()
    }

    async fn run(&mut self, mut rx: OutboxReceiver) {
        let mut parcels = Vec::new();
        loop {
            let event = std::future::poll_fn(|cx| {
                // Write first: replies leave before more is taken in.
                while self.written < self.out.len() {
                    match Pin::new(&mut self.io).poll_write(cx, &self.out[self.written..]) {
                        Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                            return Poll::Ready(Event::Gone)
                        }
                        Poll::Ready(Ok(n)) => self.written += n,
                        Poll::Pending => break,
                    }
                }
                if self.written == self.out.len() {
                    self.out.clear();
                    self.written = 0;
                    if self.owed > 0 {
                        rx.sent(std::mem::take(&mut self.owed));
                    }
                    if self.may_hand() {
                        return Poll::Ready(Event::Drained);
                    }
                    // Closing (QUIT, a protocol error): once every reply before it left.
                    if self.closing && self.queue.is_empty() {
                        return Poll::Ready(Event::Gone);
                    }
                }
                // Answers and notifications wait in the outbox (under its limits) while
                // the replies written here are over the output limit.
                let room = self.out.len() - self.written <= self.state.output.limit;
                if room {
                    if let Poll::Ready(n) = rx.poll_recv_many(cx, &mut parcels, 256) {
                        if n == 0 {
                            return Poll::Ready(Event::Gone);
                        }
                        return Poll::Ready(match rx.closed() {
                            Some(reason) => Event::ClosedByNode(reason),
                            None => Event::Answers,
                        });
                    }
                }
                if self.may_read() {
                    self.make_room();
                    let mut read = ReadBuf::new(&mut self.buf[self.end..]);
                    match Pin::new(&mut self.io).poll_read(cx, &mut read) {
                        Poll::Ready(Ok(())) if read.filled().is_empty() => {
                            return Poll::Ready(Event::Gone)
                        }
                        Poll::Ready(Ok(())) => {
                            self.end += read.filled().len();
                            return Poll::Ready(Event::Read);
                        }
                        Poll::Ready(Err(_)) => return Poll::Ready(Event::Gone),
                        Poll::Pending => {}
                    }
                }
                Poll::Pending
            })
            .await;
            // The wall clock, read once a pass (as Redis's cached `mstime`).
            self.now = wall_ms();
            match event {
                Event::Read => {
                    if !self.take_commands().await {
                        break;
                    }
                }
                Event::Answers => {
                    self.take_parcels(&mut parcels);
                    self.advance();
                    if !self.hand().await {
                        break;
                    }
                    // Commands left unread while the queue was full.
                    if self.may_read() && self.start < self.end && !self.take_commands().await {
                        break;
                    }
                }
                Event::Drained => {
                    if !self.hand().await {
                        break;
                    }
                    if self.may_read() && self.start < self.end && !self.take_commands().await {
                        break;
                    }
                }
                Event::ClosedByNode(reason) => {
                    Writer::new(&mut self.out, self.proto).error(&format!("ERR {reason}"));
                    break;
                }
                Event::Gone => return,
            }
        }
        // Say what there is to say, briefly.
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            use tokio::io::AsyncWriteExt;
            let _ = self.io.write_all(&self.out[self.written..]).await;
        })
        .await;
    }

    /// Whether more input may be read: not while the queue is full, nor while the
    /// replies not yet written are over the output limit.
    fn may_read(&self) -> bool {
        !self.closing
            && self.queue.len() < MAX_QUEUED
            && self.out.len() - self.written <= self.state.output.limit
            && self.queue.held() <= self.state.output.limit
    }

    /// Room at the end of the buffer for a read: taken bytes dropped, the buffer grown
    /// while a command longer than it is being read (up to a frame).
    fn make_room(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.buf.len() - self.end >= READ_CHUNK / 4 {
            return;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < READ_CHUNK / 4 {
            let grown = (self.buf.len() * 2).min(self.state.max_frame + READ_CHUNK);
            self.buf.resize(grown.max(self.end + READ_CHUNK / 4), 0);
        }
    }

    /// Takes every whole command read (while the queue has room), answers or sends
    /// it; false when the connection must close.
    async fn take_commands(&mut self) -> bool {
        if self.required() && self.session.presented.is_some() {
            self.refused = self.session.refresh(&self.state).await.err();
        }
        let mut taken = false;
        let (mut batch, mut from) = (Bytes::new(), 0);
        // Commands are taken while the queue has room; handing them to the node may
        // answer some at once (an in-memory node does), which makes room again.
        loop {
            let mut took = false;
            while self.queue.len() < MAX_QUEUED && !self.closing {
                let bounds = if self.authenticated() {
                    Bounds::new(self.state.max_frame)
                } else {
                    Bounds::new(self.state.max_frame).unauthenticated()
                };
                let window = &self.buf[self.start..self.end];
                let used = match request::parse(window, bounds, &mut self.args) {
                    Ok(Some(n)) => n,
                    Ok(None) if window.len() > self.state.max_frame => {
                        let max = self.state.max_frame;
                        self.protocol_error(BadRequest(format!(
                            "a command larger than {max} bytes (the node's frame limit)"
                        )));
                        break;
                    }
                    Ok(None) => break,
                    Err(bad) => {
                        self.protocol_error(bad);
                        break;
                    }
                };
                // One copy of what was read (up to a read's worth past a whole
                // command), its commands' arguments slices of it: one allocation for a
                // pipeline's commands rather than one each.
                if self.start < from || self.start + used > from + batch.len() {
                    let take = window.len().min(used.max(READ_CHUNK));
                    batch = Bytes::copy_from_slice(&window[..take]);
                    from = self.start;
                }
                let at = self.start - from;
                self.start += used;
                took = true;
                let Some((name, rest)) = self.args.split_first() else { continue };
                let name = at + name.start..at + name.end;
                let mut argv = std::mem::take(&mut self.argv);
                argv.extend(rest.iter().map(|r| batch.slice(at + r.start..at + r.end)));
                self.command(&batch[name], &mut argv).await;
                argv.clear();
                self.argv = argv;
            }
            taken |= took;
            self.advance();
            if !self.hand().await {
                return false;
            }
            let full = self.queue.len() >= MAX_QUEUED;
            if !took || full || self.closing || !self.may_read() {
                break;
            }
        }
        if taken {
            self.meter.settle_but(self.end - self.start);
        }
        !(self.closing && self.out.is_empty() && self.queue.is_empty())
    }

    fn protocol_error(&mut self, bad: BadRequest) {
        tracing::debug!(reason = %bad, "a Redis client broke the protocol");
        self.state.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
        self.reply_now(|w| w.error(&format!("ERR {bad}")));
        self.closing = true;
    }

    /// Answers at once, in order behind the commands still waiting.
    fn reply_now(&mut self, write: impl FnOnce(&mut Writer)) {
        if self.queue.is_empty() {
            write(&mut Writer::new(&mut self.out, self.proto));
        } else {
            let mut bytes = Vec::new();
            write(&mut Writer::new(&mut bytes, self.proto));
            self.queue.push_reply(self.proto, bytes);
        }
    }

    fn error(&mut self, text: &str) {
        self.reply_now(|w| w.error(text));
    }

    /// Runs one command.
    async fn command(&mut self, name: &[u8], args: &mut [Bytes]) {
        // The name in upper case, on the stack for any command's name.
        let mut buf = [0u8; 32];
        let lossy;
        let upper: &str = match std::str::from_utf8(name) {
            Ok(text) if text.len() <= buf.len() => {
                buf[..text.len()].copy_from_slice(text.as_bytes());
                buf[..text.len()].make_ascii_uppercase();
                std::str::from_utf8(&buf[..text.len()]).unwrap_or_default()
            }
            _ => {
                lossy = String::from_utf8_lossy(name).to_ascii_uppercase();
                &lossy
            }
        };
        let Some(spec) = commands::find(upper) else {
            let why = match commands::refused(upper) {
                Some(why) => why.to_string(),
                None => commands::unknown(name, args),
            };
            return self.error(&why);
        };
        if !commands::arity_ok(spec, args.len() + 1) {
            return self.error(&plan::arity_error(spec.name));
        }
        if !self.authenticated() && !matches!(upper, "AUTH" | "HELLO" | "QUIT") {
            return self.error("NOAUTH Authentication required.");
        }
        let pubsub = || {
            matches!(
                upper,
                "SUBSCRIBE" | "PSUBSCRIBE" | "UNSUBSCRIBE" | "PUNSUBSCRIBE" | "PING" | "QUIT"
            )
        };
        if self.subs.active() && self.proto == Protocol::Resp2 && !pubsub() {
            return self.error(&format!(
                "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / \
                 RESET are allowed in this context",
                spec.name
            ));
        }
        match upper {
            "PING" if self.subs.active() && self.proto == Protocol::Resp2 => {
                let msg = args.first().cloned().unwrap_or_default();
                self.reply_now(|w| {
                    w.array(2);
                    w.bulk(b"pong");
                    w.bulk(&msg);
                });
            }
            "SUBSCRIBE" | "PSUBSCRIBE" => self.subscribe(args, upper == "PSUBSCRIBE"),
            "UNSUBSCRIBE" | "PUNSUBSCRIBE" => self.unsubscribe(args, upper == "PUNSUBSCRIBE"),
            "PING" => match args {
                [] => self.reply_now(|w| w.simple("PONG")),
                [msg] => self.reply_now(|w| w.bulk(msg)),
                _ => self.error(&plan::arity_error("ping")),
            },
            "ECHO" => self.reply_now(|w| w.bulk(&args[0])),
            "QUIT" => {
                self.reply_now(|w| w.ok());
                self.closing = true;
            }
            "AUTH" => self.auth(args).await,
            "HELLO" => self.hello(args).await,
            "SELECT" => self.select(&args[0]),
            "CLIENT" => self.client_command(args),
            "COMMAND" => self.command_command(args),
            "INFO" => self.info(args).await,
            "CONFIG" => self.config_command(args).await,
            "DHRT.COLLECTION" => self.collection(args),
            "DHRT.CONSISTENCY" => self.consistency(args),
            _ => self.data(upper, args),
        }
    }

    /// A data command: planned, checked against the connection's grant, queued.
    fn data(&mut self, upper: &str, args: &mut [Bytes]) {
        // Dropping a collection is an admin's, as over HTTP.
        if upper == "FLUSHDB" && self.required() {
            let allowed = match &self.session.grant {
                Some(grant) => grant.may_drop(&self.target.collection).map_err(|e| e.to_string()),
                None => Err("no token".into()),
            };
            if let Err(why) = allowed {
                return self.error(&format!("NOPERM {why}"));
            }
        }
        let size = args.iter().map(Bytes::len).sum();
        let planned = match plan::plan(upper, args, &self.target, self.now) {
            Some(Ok(planned)) => planned,
            Some(Err(refused)) => return self.error(&refused),
            None => return self.error(&commands::unknown(upper.as_bytes(), args)),
        };
        for op in &planned.ops {
            if let Err(refusal) = self.session.check(&self.state, op, &self.refused) {
                let reply = refusal.reply();
                return self.error(&plan::error_of(&reply).unwrap_or_default());
            }
        }
        self.queue.push_command(self.proto, size, planned.plan, planned.ops, &mut self.requests);
    }

    /// Sends what may go, and writes the replies that may ([`Queue::advance`]).
    fn advance(&mut self) {
        self.queue.advance(&mut self.out, self.now, &mut self.requests);
    }

    /// Hands the queued requests to the node — at the desk, taking the answers it gives
    /// at once (which may send more); through the inbox, as many as the chunk has room
    /// for beside those in flight — false once the node has stopped.
    async fn hand(&mut self) -> bool {
        while self.may_hand() {
            let reqs = &mut self.requests.reqs;
            let Some(desk) = self.desk.clone() else {
                let n = reqs.len().min(self.chunk - self.in_flight);
                let batch: Vec<ClientRequest> = reqs.drain(..n).collect();
                let bytes = batch.iter().map(|r| inbox::op_bytes(&r.op)).sum();
                self.in_flight += n;
                // The answers come through the outbox ([`Event::Answers`]).
                let input = Input::Requests { client: self.client, reqs: batch };
                return self.state.submit_charged(input, bytes).await;
            };
            let mut answers = std::mem::take(&mut self.answers);
            let handed = if reqs.len() <= self.chunk {
                // All of them (the usual case): the desk empties the vector, keeping it.
                desk.requests(self.client, reqs, &mut answers)
            } else {
                let mut chunk: Vec<ClientRequest> = reqs.drain(..self.chunk).collect();
                desk.requests(self.client, &mut chunk, &mut answers)
            };
            if !handed {
                return false;
            }
            self.take_parcels(&mut answers);
            self.answers = answers;
            self.advance();
        }
        true
    }

    /// Whether requests wait and may go now: not past half the output limit unwritten
    /// (the rest waits for the socket to drain, [`Event::Drained`]: a client that reads
    /// gets every reply, however large the pipeline), nor, through the inbox, while a
    /// chunk's worth is in flight.
    fn may_hand(&self) -> bool {
        !self.requests.reqs.is_empty()
            && self.unwritten() <= self.state.output.limit / 2
            && (self.desk.is_some() || self.in_flight < self.chunk)
    }

    /// Files the node's answers; slow start: the next chunk may be twice as large, as
    /// long as that many answers as large as these stay within half the output limit.
    fn take_parcels(&mut self, parcels: &mut Vec<Parcel>) {
        let mut largest = 0;
        for parcel in parcels.drain(..) {
            self.owed += parcel.bytes;
            largest = largest.max(parcel.bytes / parcel.resps.len().max(1));
            for resp in parcel.resps {
                self.answer(resp);
            }
        }
        let fits = self.state.output.limit / 2 / largest.max(1024);
        self.chunk = (self.chunk * 2).min(fits).clamp(1, MAX_CHUNK);
    }

    /// Bytes of replies not yet written, and of the node's answers not yet given back.
    fn unwritten(&self) -> usize {
        self.out.len() - self.written + self.owed
    }

    /// Files the node's answer with the command it belongs to.
    fn answer(&mut self, resp: ClientResponse) {
        // Every request is answered once; a watch's events come after its answer.
        if !matches!(resp.result, Reply::Event { .. }) {
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        if let Some(db) = self.subs.db_of_watch(resp.id) {
            return self.notification(db, resp.id, resp.result);
        }
        self.queue.file(resp.id, resp.result);
    }

    /// `SUBSCRIBE channel...`, `PSUBSCRIBE pattern...`: keyspace notifications.
    fn subscribe(&mut self, names: &[Bytes], pattern: bool) {
        let dbs = self.config.mapped();
        let hears = |n: &Bytes| {
            if pattern {
                !notify::pattern_dbs(n, &dbs).is_empty()
            } else {
                notify::channel_db(n).is_some_and(|db| dbs.contains(&db))
            }
        };
        if let Some(bad) = names.iter().find(|n| !hears(n)) {
            let bad = String::from_utf8_lossy(bad).into_owned();
            return self.error(&format!(
                "ERR '{bad}' can never carry a message: dhrt has no PUBLISH, only keyspace \
                 notifications (__keyspace@<db>__:<key>, __keyevent@<db>__:<event>, of a mapped \
                 database) can be subscribed to"
            ));
        }
        if self.subs.count() + names.len() > MAX_SUBSCRIPTIONS {
            return self.error(&format!(
                "ERR at most {MAX_SUBSCRIPTIONS} channels and patterns per connection"
            ));
        }
        let kind: &[u8] = if pattern { b"psubscribe" } else { b"subscribe" };
        let mut reply = Vec::new();
        for name in names {
            self.subs.add(name.clone(), pattern);
            let mut w = Writer::new(&mut reply, self.proto);
            w.push(3);
            w.bulk(kind);
            w.bulk(name);
            w.integer(self.subs.count() as i64);
        }
        let ids = self.sync_watches();
        if ids.is_empty() {
            self.reply_now(|w| w.raw(&reply));
        } else {
            self.queue.push_watching(self.proto, ids, reply);
        }
    }

    /// `UNSUBSCRIBE [channel...]`, `PUNSUBSCRIBE [pattern...]`: none named, all.
    fn unsubscribe(&mut self, names: &[Bytes], pattern: bool) {
        let names = if names.is_empty() { self.subs.names(pattern) } else { names.to_vec() };
        let kind: &[u8] = if pattern { b"punsubscribe" } else { b"unsubscribe" };
        if names.is_empty() {
            let count = self.subs.count() as i64;
            self.reply_now(|w| {
                w.push(3);
                w.bulk(kind);
                w.nil();
                w.integer(count);
            });
        }
        for name in names {
            self.subs.remove(&name, pattern);
            let count = self.subs.count() as i64;
            self.reply_now(|w| {
                w.push(3);
                w.bulk(kind);
                w.bulk(&name);
                w.integer(count);
            });
        }
        self.sync_watches();
    }

    /// Opens a watch for each database some subscription hears from, and ends those
    /// no subscription needs any more; the request ids of the watches opened.
    fn sync_watches(&mut self) -> Vec<u64> {
        let mut opened = Vec::new();
        let wanted = self.subs.wanted(&self.config.mapped());
        for db in self.subs.watched() {
            if !wanted.contains(&db) {
                if let Some(watch) = self.subs.unwatch(db) {
                    self.requests.send([Op::Unwatch { watch }]);
                }
            }
        }
        for db in wanted {
            if self.subs.watch_of(db).is_some() {
                continue;
            }
            let Some(collection) = self.config.database(db) else { continue };
            let op = Op::Watch { collection: collection.to_string(), prefix: None };
            if let Err(refusal) = self.session.check(&self.state, &op, &self.refused) {
                let reply = refusal.reply();
                self.error(&plan::error_of(&reply).unwrap_or_default());
                return opened;
            }
            let id = self.requests.send([op]);
            self.subs.watching(db, id);
            opened.push(id);
        }
        opened
    }

    /// A change seen by database `db`'s watch, as the messages it delivers; a watch that
    /// ended (it fell behind, or the node refused it) closes the connection, saying why.
    fn notification(&mut self, db: u32, id: u64, reply: Reply) {
        if !matches!(reply, Reply::Event { .. }) {
            // The watch is in place (or failed): its subscription's confirmation may go.
            self.queue.watch_ready(id);
        }
        match reply {
            Reply::Event { key, value, expires, .. } => {
                let notify = self.config.settings.notify();
                let change = notify::Change::of(value.is_some(), expires.is_some());
                for (pattern, channel, message) in self.subs.messages(db, &key, change, &notify) {
                    let mut w = Writer::new(&mut self.out, self.proto);
                    match pattern {
                        Some(p) => {
                            w.push(4);
                            w.bulk(b"pmessage");
                            w.bulk(&p);
                        }
                        None => {
                            w.push(3);
                            w.bulk(b"message");
                        }
                    }
                    w.bulk(&channel);
                    w.bulk(&message);
                }
            }
            Reply::Error { message, .. } => {
                self.subs.unwatch(db);
                Writer::new(&mut self.out, self.proto)
                    .error(&format!("ERR keyspace notifications stopped: {message}"));
                self.closing = true;
            }
            _ => {}
        }
    }

    async fn auth(&mut self, args: &[Bytes]) {
        let (token, named) = match args {
            [token] => (token, false),
            [_, token] => (token, true),
            _ => return self.error("ERR syntax error"),
        };
        // Redis's default user takes any password when none is set: so does a node that
        // requires no tokens, for the named form (what client libraries send).
        if named && !self.required() {
            return self.reply_now(|w| w.ok());
        }
        match self.authenticate(token).await {
            Ok(()) => self.reply_now(|w| w.ok()),
            Err(e) => self.error(&e),
        }
    }

    /// Presents `token`: `Err` is the reply (`WRONGPASS`, or an error when the node
    /// requires no tokens, as Redis answers AUTH without a password set).
    async fn authenticate(&mut self, token: &[u8]) -> Result<(), String> {
        if !self.required() {
            return Err("ERR AUTH <password> called without any password configured for the \
                        default user. Are you sure your configuration is correct?"
                .into());
        }
        let token = String::from_utf8_lossy(token);
        match self.state.tokens.authenticate(&self.state, &token).await {
            Ok((presented, grant)) => {
                self.session = Session { presented: Some(presented), grant: Some(grant) };
                self.refused = None;
                Ok(())
            }
            // As in Redis, a failed AUTH leaves the connection as it was.
            Err(_) => Err("WRONGPASS invalid username-password pair or user is disabled.".into()),
        }
    }

    /// `HELLO [protover [AUTH user token] [SETNAME name]]`.
    async fn hello(&mut self, args: &[Bytes]) {
        let mut proto = self.proto;
        if let Some(v) = args.first() {
            proto = match plan::integer(v) {
                Some(2) => Protocol::Resp2,
                Some(3) => Protocol::Resp3,
                Some(_) => return self.error("NOPROTO unsupported protocol version"),
                None => {
                    return self.error("ERR Protocol version is not an integer or out of range")
                }
            };
        }
        let mut i = 1;
        let mut name = None;
        while i < args.len() {
            match args[i].to_ascii_uppercase().as_slice() {
                b"AUTH" if i + 2 < args.len() => {
                    if self.required() {
                        if let Err(e) = self.authenticate(&args[i + 2]).await {
                            return self.error(&e);
                        }
                    }
                    i += 3;
                }
                b"SETNAME" if i + 1 < args.len() => {
                    name = Some(args[i + 1].clone());
                    i += 2;
                }
                _ => {
                    let option = String::from_utf8_lossy(&args[i]).into_owned();
                    return self.error(&format!("ERR Syntax error in HELLO option '{option}'"));
                }
            }
        }
        if !self.authenticated() {
            return self.error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
        }
        if name.is_some() {
            self.name = name;
        }
        self.proto = proto;
        let (client, node) = (self.client, self.state.node);
        self.reply_now(|w| {
            w.map(8);
            w.bulk(b"server");
            w.bulk(b"dhrt");
            w.bulk(b"version");
            w.bulk(super::REDIS_VERSION.as_bytes());
            w.bulk(b"proto");
            w.integer(if proto == Protocol::Resp3 { 3 } else { 2 });
            w.bulk(b"id");
            w.integer(client as i64);
            w.bulk(b"mode");
            w.bulk(b"standalone");
            w.bulk(b"role");
            w.bulk(b"master");
            w.bulk(b"modules");
            w.array(0);
            w.bulk(b"dhrt_node");
            w.bulk(format!("{node} {}", env!("CARGO_PKG_VERSION")).as_bytes());
        });
    }

    fn select(&mut self, index: &[u8]) {
        let Some(n) = plan::integer(index) else {
            return self.error("ERR value is not an integer or out of range");
        };
        match u32::try_from(n).ok().and_then(|n| self.config.database(n)) {
            Some(collection) => {
                self.target.collection = collection.to_string();
                self.reply_now(|w| w.ok());
            }
            None => self.error("ERR DB index is out of range"),
        }
    }

    fn collection(&mut self, args: &[Bytes]) {
        match args {
            [] => {
                let name = self.target.collection.clone();
                self.reply_now(|w| w.bulk(name.as_bytes()));
            }
            [name] => match std::str::from_utf8(name) {
                Ok(name) if !name.is_empty() && name.len() <= 255 => {
                    self.target.collection = name.to_string();
                    self.reply_now(|w| w.ok());
                }
                _ => self.error("ERR a collection name is 1 to 255 bytes of UTF-8"),
            },
            _ => self.error(&plan::arity_error("dhrt.collection")),
        }
    }

    fn consistency(&mut self, args: &[Bytes]) {
        match args {
            [] => {
                let level = self.target.consistency.to_string();
                self.reply_now(|w| w.bulk(level.as_bytes()));
            }
            [level] => match String::from_utf8_lossy(level).parse::<Consistency>() {
                Ok(level) => {
                    self.target.consistency = level;
                    self.reply_now(|w| w.ok());
                }
                Err(e) => self.error(&format!("ERR {e}")),
            },
            _ => self.error(&plan::arity_error("dhrt.consistency")),
        }
    }

    /// `INFO [section ...]`.
    async fn info(&mut self, args: &[Bytes]) {
        let Some(snap) = self.state.snapshot().await else {
            return self.error("UNAVAILABLE the node is shutting down");
        };
        let sections: Vec<String> =
            args.iter().map(|a| String::from_utf8_lossy(a).to_ascii_lowercase()).collect();
        let clients = self.state.counters.clients.load(Ordering::Relaxed);
        let text = super::info::info(&sections, &snap, &self.config, clients, self.port);
        self.reply_now(|w| w.verbatim(&text));
    }

    /// `CONFIG GET pattern...`, `CONFIG SET parameter value`, `CONFIG RESETSTAT`.
    async fn config_command(&mut self, args: &[Bytes]) {
        let sub = args[0].to_ascii_uppercase();
        match (sub.as_slice(), &args[1..]) {
            (b"GET", patterns) if !patterns.is_empty() => {
                let persisted = match self.state.snapshot().await {
                    Some(snap) => snap.stats.storage.free_bytes.is_some(),
                    None => return self.error("UNAVAILABLE the node is shutting down"),
                };
                let found: Vec<_> = super::info::parameters(&self.config, persisted)
                    .into_iter()
                    .filter(|(name, _)| {
                        patterns
                            .iter()
                            .any(|p| super::keys::glob(&p.to_ascii_lowercase(), name.as_bytes()))
                    })
                    .collect();
                self.reply_now(|w| {
                    w.map(found.len());
                    for (name, value) in &found {
                        w.bulk(name.as_bytes());
                        w.bulk(value.as_bytes());
                    }
                });
            }
            (b"SET", [name, value]) if name.eq_ignore_ascii_case(b"notify-keyspace-events") => {
                match super::info::notify_flags(&String::from_utf8_lossy(value)) {
                    Ok(flags) => {
                        *self.config.settings.notify.lock().unwrap_or_else(|e| e.into_inner()) =
                            flags;
                        self.reply_now(|w| w.ok());
                    }
                    Err(e) => self.error(&e),
                }
            }
            (b"SET", [name, _, ..]) => {
                let name = String::from_utf8_lossy(name).into_owned();
                self.error(&format!(
                    "ERR Unsupported CONFIG parameter: {name} (dhrt's Redis endpoint sets only \
                     notify-keyspace-events; the node's settings are dhrt serve's flags)"
                ));
            }
            (b"RESETSTAT", []) => self.reply_now(|w| w.ok()),
            _ => {
                let sub = String::from_utf8_lossy(&args[0]).into_owned();
                self.error(&format!("ERR unknown subcommand or wrong number of arguments for '{sub}'. Try CONFIG HELP."));
            }
        }
    }

    /// `CLIENT SETNAME | GETNAME | ID | INFO | SETINFO`.
    fn client_command(&mut self, args: &[Bytes]) {
        let sub = args[0].to_ascii_uppercase();
        match (sub.as_slice(), &args[1..]) {
            (b"SETNAME", [name]) => {
                if name.iter().any(|&b| b <= b' ' || b > b'~') {
                    return self.error(
                        "ERR Client names cannot contain spaces, newlines or special characters.",
                    );
                }
                self.name = (!name.is_empty()).then(|| name.clone());
                self.reply_now(|w| w.ok());
            }
            (b"GETNAME", []) => {
                let name = self.name.clone();
                self.reply_now(|w| w.bulk_or_nil(name.as_deref()));
            }
            (b"ID", []) => {
                let id = self.client as i64;
                self.reply_now(|w| w.integer(id));
            }
            (b"INFO", []) => {
                let info = self.info_line();
                self.reply_now(|w| w.verbatim(&info));
            }
            // Client libraries announce themselves (lib-name, lib-ver): accepted.
            (b"SETINFO", [_, _]) => self.reply_now(|w| w.ok()),
            _ => {
                let sub = String::from_utf8_lossy(&args[0]).into_owned();
                self.error(&format!("ERR unknown subcommand or wrong number of arguments for '{sub}'. Try CLIENT HELP."));
            }
        }
    }

    fn info_line(&self) -> String {
        let name = self.name.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
        format!(
            "id={} name={} db={} resp={} collection={} consistency={}\n",
            self.client,
            name,
            self.config.index_of(&self.target.collection).map_or(-1, i64::from),
            if self.proto == Protocol::Resp3 { 3 } else { 2 },
            self.target.collection,
            self.target.consistency,
        )
    }

    /// `COMMAND`, `COMMAND COUNT`, `COMMAND INFO name...`, `COMMAND DOCS [name...]`.
    fn command_command(&mut self, args: &[Bytes]) {
        let sub = args.first().map(|s| s.to_ascii_uppercase()).unwrap_or_default();
        let named = |args: &[Bytes]| -> Vec<Option<&'static commands::Spec>> {
            args.iter().map(|a| commands::find(&String::from_utf8_lossy(a))).collect()
        };
        match sub.as_slice() {
            b"" => self.reply_now(|w| {
                w.array(COMMANDS.len());
                COMMANDS.iter().for_each(|s| info(w, s));
            }),
            b"COUNT" => self.reply_now(|w| w.integer(COMMANDS.len() as i64)),
            b"INFO" => {
                let specs = if args.len() > 1 {
                    named(&args[1..])
                } else {
                    COMMANDS.iter().map(Some).collect()
                };
                self.reply_now(|w| {
                    w.array(specs.len());
                    for s in &specs {
                        match s {
                            Some(s) => info(w, s),
                            None => w.nil(),
                        }
                    }
                })
            }
            b"DOCS" => {
                let specs: Vec<_> = if args.len() > 1 {
                    named(&args[1..]).into_iter().flatten().collect()
                } else {
                    COMMANDS.iter().collect()
                };
                self.reply_now(|w| {
                    w.map(specs.len());
                    for s in &specs {
                        w.bulk(s.name.as_bytes());
                        w.map(3);
                        w.bulk(b"summary");
                        w.bulk(s.summary.as_bytes());
                        w.bulk(b"since");
                        w.bulk(b"1.0.0");
                        w.bulk(b"group");
                        w.bulk(s.group.as_bytes());
                    }
                })
            }
            _ => {
                let sub = String::from_utf8_lossy(&args[0]).into_owned();
                self.error(&format!("ERR unknown subcommand '{sub}'. Try COMMAND HELP."));
            }
        }
    }
}

/// One command's `COMMAND INFO` entry.
fn info(w: &mut Writer, s: &commands::Spec) {
    w.array(10);
    w.bulk(s.name.as_bytes());
    w.integer(i64::from(s.arity));
    w.set(s.flags.len());
    s.flags.iter().for_each(|f| w.simple(f));
    w.integer(i64::from(s.first_key));
    w.integer(i64::from(s.last_key));
    w.integer(i64::from(s.step));
    w.set(0); // ACL categories
    w.set(0); // tips
    w.array(0); // key specifications
    w.array(0); // subcommands
}
