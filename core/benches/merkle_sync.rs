//! Merkle sync cost: two replicas of 1,000,000 entries (16-byte keys, 100-byte values)
//! that differ in d ∈ {0, 1, 100, 10,000} entries. Prints bytes exchanged, round trips
//! and the byte target per d, then times a full session with criterion.
//!
//! Run: `cargo bench -p dhrt-core --bench merkle_sync`
//! (`DHRT_BENCH_ENTRIES=100000` for a quicker run; `DHRT_SYNC_LIST_MAX=n` to try
//! another listing threshold.)

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use dhrt_core::{
    clock::Timestamp,
    entry::{Entry, NodeId},
    hash::Interval,
    replica::Replica,
    store::MemStore,
    sync::{sync_pair, SyncConfig},
};
use std::time::Instant;

const C: &str = "bench";

fn key(i: u64) -> Bytes {
    Bytes::from(format!("key-{i:012}"))
}

fn value(i: u64, gen: u64) -> Bytes {
    let mut v = format!("value-{i}-{gen}-").into_bytes();
    v.resize(100, b'.');
    Bytes::from(v)
}

/// Applies `d` differences split between the sides: updates and new keys on `b`,
/// deletes on `a`.
fn diverge(a: &mut Replica<MemStore>, b: &mut Replica<MemStore>, n: u64, d: u64) {
    for i in 0..d {
        let k = (i * 7_919 + 13) % n;
        match i % 3 {
            0 => b.merge(C, key(k), Entry::value(value(k, 2), Timestamp(2 << 16), NodeId(2))),
            1 => a.merge(C, key(k), Entry::tombstone(Timestamp(2 << 16), NodeId(1))),
            _ => {
                b.merge(C, key(n + i), Entry::value(value(n + i, 1), Timestamp(1 << 16), NodeId(2)))
            }
        }
        .expect("merge");
    }
}

fn bench(c: &mut Criterion) {
    let n: u64 =
        std::env::var("DHRT_BENCH_ENTRIES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let t = Instant::now();
    let mut base = Replica::new(MemStore::new()).expect("replica");
    for i in 0..n {
        base.merge(C, key(i), Entry::value(value(i, 1), Timestamp(1 << 16), NodeId(1)))
            .expect("merge");
    }
    eprintln!("built a replica of {n} entries in {:.2?}", t.elapsed());
    let sample = (key(1), Entry::value(value(1, 1), Timestamp(1 << 16), NodeId(1)));
    let entry_size = rmp_serde::to_vec(&sample).expect("encode").len() as u64;
    eprintln!("entry size on the wire: {entry_size} B");
    let mut config = SyncConfig::default();
    if let Some(m) = std::env::var("DHRT_SYNC_LIST_MAX").ok().and_then(|v| v.parse().ok()) {
        config.list_max = m;
    }
    let mut group = c.benchmark_group("merkle_sync");
    group.sample_size(10);
    for d in [0u64, 1, 100, 10_000] {
        let (mut a, mut b) = (base.clone(), base.clone());
        diverge(&mut a, &mut b, n, d);
        // A tree brings its upper levels up to date when first read after changes (they
        // are kept lazily, see `MerkleTree`): a node pays that once after a burst of
        // writes, not once a session, so it is paid here, before the clones are timed.
        let settle = Instant::now();
        let _ = (a.tree(C).map(|t| t.root()), b.tree(C).map(|t| t.root()));
        eprintln!("d={d}: the lazy levels brought up to date in {:.2?}", settle.elapsed());
        let (mut a1, mut b1) = (a.clone(), b.clone());
        let t = Instant::now();
        let r = sync_pair(&mut a1, &mut b1, C, Interval::full(), 42, config).expect("sync");
        let took = t.elapsed();
        assert_eq!(a1.tree(C).map(|t| t.root()), b1.tree(C).map(|t| t.root()), "converged");
        let target = if d == 0 { 1024 } else { d * (entry_size + 150) + 64 * 1024 };
        eprintln!(
            "n={n} d={d}: {} bytes ({:.1} B/difference), {} round trips, {} messages, \
             {} entries shipped, largest frame {} B, {took:.2?}; target <= {target} B: {}",
            r.bytes,
            r.bytes as f64 / d.max(1) as f64,
            r.round_trips,
            r.messages,
            r.entries,
            r.max_frame,
            if r.bytes <= target { "met" } else { "MISSED" },
        );
        group.bench_function(format!("d={d}"), |bench| {
            bench.iter_batched(
                || (a.clone(), b.clone()),
                |(mut a, mut b)| {
                    let r =
                        sync_pair(&mut a, &mut b, C, Interval::full(), 42, config).expect("sync");
                    // Returned so that dropping a million entries is not timed.
                    (a, b, r)
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
