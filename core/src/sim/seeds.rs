//! Running a scenario over many seeds, and replaying the one that failed.
//!
//! Every simulation is a function of its seed. [`check_seeds`] runs a scenario for seeds
//! `base, base+1, …`, and when one fails it panics with the seed and the command that
//! replays exactly that run: `DHRT_SIM_SEED=<seed> cargo test …` runs only that seed.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `scenario(seed)` for `count` seeds starting at `base` (or only for the seed in
/// the `DHRT_SIM_SEED` environment variable, when set). A scenario fails by returning an
/// error or panicking; the first failure panics with its seed.
pub fn check_seeds<F>(name: &str, base: u64, count: u64, mut scenario: F) -> u64
where
    F: FnMut(u64) -> Result<(), String>,
{
    let seeds: Vec<u64> = match std::env::var("DHRT_SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(seed) => vec![seed],
        None => (base..base.saturating_add(count)).collect(),
    };
    for &seed in &seeds {
        let outcome = catch_unwind(AssertUnwindSafe(|| scenario(seed)));
        let failure = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(panic) => panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".to_string()),
        };
        panic!(
            "simulation {name:?} failed with seed {seed}: {failure}\n\
             replay exactly this run with: DHRT_SIM_SEED={seed} cargo test -p dhrt-core --all-features {name}"
        );
    }
    seeds.len() as u64
}
