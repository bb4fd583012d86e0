//! The native Rust client's read latency: sequential `get`s (one in flight) through
//! `dhrt::Client` against a running node — the figure `bench/light-peer.mjs` measures
//! for the npm package's WebAssembly light peer, with the same keys and values, so
//! `bench/light-peer.sh` can put the two side by side (docs/benchmarks.md).
//!
//! ```text
//! cargo run --release -p dhrt --example client_latency -- 127.0.0.1:7453 [gets] [keys]
//! ```
//!
//! It writes `keys` keys (`k00000000`…, 100-byte values) to collection `latency` in
//! batches, reads 1,000 of them to warm up, then times `gets` reads of keys drawn in a
//! fixed pseudo-random order and prints one JSON line: p50, p99 and mean in µs, and
//! reads per second.

use dhrt::client::Client;
use dhrt_core::proto::client::Consistency;
use std::time::Instant;

const COLLECTION: &str = "latency";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7453".into());
    let gets: usize = args.next().map_or(Ok(20_000), |a| a.parse())?;
    let keys: u64 = args.next().map_or(Ok(10_000), |a| a.parse())?;
    let db = Client::connect(&addr).await?;
    let key = |i: u64| format!("k{i:08}");
    for start in (0..keys).step_by(1000) {
        let items = (start..(start + 1000).min(keys))
            .map(|i| (key(i).into(), vec![b'v'; 100].into()))
            .collect();
        db.set_many(COLLECTION, items, Consistency::Default, None).await?;
    }
    // The same sequence as the JavaScript side: i * 7919 mod keys.
    let order = |n: usize| (n as u64).wrapping_mul(7919) % keys;
    for n in 0..1000 {
        db.get(COLLECTION, key(order(n)), Consistency::Default).await?;
    }
    let mut took = Vec::with_capacity(gets);
    let began = Instant::now();
    for n in 0..gets {
        let t = Instant::now();
        let v = db.get(COLLECTION, key(order(n)), Consistency::Default).await?;
        took.push(t.elapsed().as_nanos() as f64 / 1000.0);
        assert!(v.is_some(), "every key was written");
    }
    let secs = began.elapsed().as_secs_f64();
    took.sort_by(f64::total_cmp);
    let at = |q: f64| took[((took.len() as f64 * q) as usize).min(took.len() - 1)];
    let mean = took.iter().sum::<f64>() / took.len() as f64;
    println!(
        "{{\"client\":\"rust\",\"gets\":{gets},\"p50_us\":{:.1},\"p99_us\":{:.1},\"mean_us\":{mean:.1},\"gets_per_sec\":{:.0}}}",
        at(0.5),
        at(0.99),
        gets as f64 / secs
    );
    Ok(())
}
