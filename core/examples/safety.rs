//! The node's safety checkers over many seeded schedules (the CI tests run fewer).
//!
//! ```text
//! cargo run --release -p dhrt-core --features sim --example safety -- [SCHEDULES] [FIRST_SEED] [crash|partition|delete|lossy|commit|handoff|register]...
//! ```
//!
//! Prints what each checker verified; a failing schedule prints its seed, which
//! `DHRT_SIM_SEED=<seed> cargo test -p dhrt-core --all-features --test safety` replays
//! (`--test durability` for commit and handoff, `--test register` for register).

use dhrt_core::sim::{
    durability::{commit_schedule, handoff_schedule},
    register::{register_schedule, RegisterReport},
    safety::{crash_schedule, delete_schedule, lossy_schedule, partition_schedule, Report},
};
use std::time::Instant;

type Schedule = fn(u64) -> Result<Report, String>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let count: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let first: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1);
    let all: [(&str, Schedule); 6] = [
        ("crash", crash_schedule),
        ("partition", partition_schedule),
        ("delete", delete_schedule),
        ("lossy", lossy_schedule),
        ("commit", commit_schedule),
        ("handoff", |seed| handoff_schedule(seed, false)),
    ];
    let chosen: Vec<&String> = args.iter().skip(2).collect();
    let mut failed = false;
    for (name, schedule) in all {
        if !chosen.is_empty() && !chosen.iter().any(|c| c.as_str() == name) {
            continue;
        }
        let started = Instant::now();
        let mut total = Report::default();
        for seed in first..first + count {
            match schedule(seed) {
                Ok(r) => total += r,
                Err(e) => {
                    println!("{name}: seed {seed} FAILED: {e}");
                    failed = true;
                }
            }
        }
        println!("{name} ({:.1?}): {total}", started.elapsed());
    }
    if chosen.is_empty() || chosen.iter().any(|c| c.as_str() == "register") {
        let started = Instant::now();
        let mut total = RegisterReport::default();
        for seed in first..first + count {
            match register_schedule(seed) {
                Ok(r) => total += r,
                Err(e) => {
                    println!("register: seed {seed} FAILED: {e}");
                    failed = true;
                }
            }
        }
        println!("register ({:.1?}): {total:?}", started.elapsed());
    }
    if failed {
        std::process::exit(1);
    }
}
