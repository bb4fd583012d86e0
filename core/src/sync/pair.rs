//! An in-memory harness that runs a whole session between two replicas, carrying every
//! message through the wire format as a network would (after quinn-proto's `Pair`).

use super::{SyncConfig, SyncError, SyncSession};
use crate::{
    hash::Interval,
    proto::{Message, SyncMessage},
    replica::Replica,
    store::Store,
    wire,
};

/// What an in-memory session between two replicas cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PairReport {
    /// Messages exchanged, both directions.
    pub messages: u64,
    /// Round trips: messages / 2, rounded up.
    pub round_trips: u64,
    /// Bytes of every frame exchanged, as encoded by [`crate::wire`].
    pub bytes: u64,
    /// The largest single frame.
    pub max_frame: u64,
    /// Entries shipped, both directions.
    pub entries: u64,
}

/// Runs a whole session between two in-memory replicas — `a` initiates — encoding
/// every message as a wire frame and decoding it on the other side, as a network
/// would. For tests, benchmarks and the simulator.
pub fn sync_pair<A: Store, B: Store>(
    a: &mut Replica<A>,
    b: &mut Replica<B>,
    collection: &str,
    range: Interval,
    salt: u64,
    config: SyncConfig,
) -> Result<PairReport, crate::Error> {
    let mut report = PairReport::default();
    let carry = |msg: SyncMessage, report: &mut PairReport| -> Result<SyncMessage, crate::Error> {
        let frame = wire::encode(&Message::Sync(msg))?;
        report.messages += 1;
        report.bytes += frame.len() as u64;
        report.max_frame = report.max_frame.max(frame.len() as u64);
        match wire::decode(&frame)? {
            Message::Sync(m) => Ok(m),
            other => Err(SyncError::Protocol(format!("unexpected {other:?}")).into()),
        }
    };
    let (mut sa, begin) = SyncSession::initiate(1, a, collection, range, salt, config)?;
    let begin = carry(begin, &mut report)?;
    let (mut sb, mut to_a) = SyncSession::accept(b, begin, config)?;
    loop {
        let msg = carry(to_a, &mut report)?;
        let Some(reply) = sa.handle(a, msg)? else {
            break;
        };
        let msg = carry(reply, &mut report)?;
        match sb.handle(b, msg)? {
            Some(next) => to_a = next,
            None => break,
        }
    }
    report.round_trips = report.messages.div_ceil(2);
    report.entries = sa.stats().entries_sent + sb.stats().entries_sent;
    Ok(report)
}

/// Convenience for a whole collection: [`sync_pair`] over the full ring.
pub fn sync_pair_full<A: Store, B: Store>(
    a: &mut Replica<A>,
    b: &mut Replica<B>,
    collection: &str,
    salt: u64,
) -> Result<PairReport, crate::Error> {
    sync_pair(a, b, collection, Interval::full(), salt, SyncConfig::default())
}
