//! `dhrt demo`: replicas diverge while partitioned, then anti-entropy reconciles them.
//!
//! Every replica is a `Replica<MemStore>` from `dhrt-core`; sessions run through
//! `sync_pair`, which carries each message through the real wire format, so the bytes
//! and round trips printed are what the network would carry.

use bytes::Bytes;
use clap::Args;
use dhrt_core::{
    clock::Hlc,
    entry::{Entry, NodeId},
    hash::Interval,
    replica::Replica,
    store::{MemStore, Store},
    sync::{sync_pair, SyncConfig},
};
use std::time::Instant;

/// Options of `dhrt demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keys written to every replica before the partition.
    #[arg(long, default_value_t = 100_000)]
    entries: u64,
    /// Writes and deletes made on each replica during the partition.
    #[arg(long, default_value_t = 100)]
    differences: u64,
    /// Number of replicas (2 to 9).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(2..=9))]
    replicas: u64,
}

const COLLECTION: &str = "demo";

/// Runs the demo, printing progress to stdout.
pub fn run(args: &DemoArgs) -> Result<(), dhrt_core::Error> {
    let n = args.replicas as usize;
    let mut clocks: Vec<Hlc> = (0..n).map(|_| Hlc::default()).collect();
    let mut wall = 1_700_000_000_000u64;
    let started = Instant::now();
    let mut base = Replica::new(MemStore::new())?;
    for i in 0..args.entries {
        let ts = clocks[0].now(wall);
        base.merge(COLLECTION, key(i), Entry::value(value(i, 0), ts, NodeId(0)))?;
    }
    let mut replicas: Vec<Replica<MemStore>> = (0..n).map(|_| base.clone()).collect();
    println!(
        "{n} replicas hold the same {} keys ({:.2?}); partitioning them",
        args.entries,
        started.elapsed()
    );
    wall += 1000;
    for (r, replica) in replicas.iter_mut().enumerate() {
        for j in 0..args.differences {
            let i = (j * 7919 + r as u64 * 104_729) % (args.entries.max(1) * 2);
            let ts = clocks[r].now(wall + j);
            let origin = NodeId(r as u64);
            let entry = if j % 4 == 0 {
                Entry::tombstone(ts, origin)
            } else {
                Entry::value(value(i, r as u64 + 1), ts, origin)
            };
            replica.merge(COLLECTION, key(i), entry)?;
        }
        let root = replica.tree(COLLECTION).map(|t| t.root()).unwrap_or_default();
        println!(
            "  replica {r}: {} writes and deletes while partitioned; root {:016x}, {} entries",
            args.differences, root.digest, root.count
        );
    }
    println!("partition healed; anti-entropy rounds (each replica syncs with the next):");
    for round in 1..=3 {
        let mut moved = 0;
        for r in 0..n {
            let next = (r + 1) % n;
            let (a, b) = pair(&mut replicas, r, next);
            let t = Instant::now();
            let report = sync_pair(
                a,
                b,
                COLLECTION,
                Interval::full(),
                round * 31 + r as u64,
                SyncConfig::default(),
            )?;
            moved += report.entries;
            println!(
                "  round {round}: {r} <-> {next}: {:>6} entries shipped, {:>9} bytes, {:>2} round trips, {:.2?}",
                report.entries,
                report.bytes,
                report.round_trips,
                t.elapsed()
            );
        }
        if moved == 0 {
            break;
        }
    }
    let roots: Vec<_> = replicas.iter().map(|r| r.tree(COLLECTION).map(|t| t.root())).collect();
    let converged = roots.windows(2).all(|w| w[0] == w[1]);
    let stats = replicas[0].store().stats(COLLECTION)?;
    println!(
        "converged: {converged}; every replica holds {} entries ({} tombstones, {} bytes)",
        stats.entries, stats.tombstones, stats.bytes
    );
    if converged {
        Ok(())
    } else {
        Err(dhrt_core::sync::SyncError::Protocol("replicas did not converge".into()).into())
    }
}

fn key(i: u64) -> Bytes {
    Bytes::from(format!("user:{i:010}"))
}

fn value(i: u64, generation: u64) -> Bytes {
    Bytes::from(format!("{{\"id\":{i},\"generation\":{generation}}}"))
}

/// Two distinct replicas borrowed mutably at once.
fn pair<T>(v: &mut [T], a: usize, b: usize) -> (&mut T, &mut T) {
    assert_ne!(a, b);
    if a < b {
        let (lo, hi) = v.split_at_mut(b);
        (&mut lo[a], &mut hi[0])
    } else {
        let (lo, hi) = v.split_at_mut(a);
        (&mut hi[0], &mut lo[b])
    }
}
