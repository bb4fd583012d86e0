//! The strict-quorum register checker over many seeds (see `dhrt_core::sim::register`):
//! every quorum read returns the last acknowledged write of its key or a newer one while
//! nodes join, leave, crash, restart with or without their disk and are partitioned,
//! under skewed clocks. `DHRT_SIM_SEEDS` runs more seeds (the example runs thousands).

use dhrt_core::sim::{
    check_seeds,
    register::{alter_schedule, register_schedule, RegisterReport},
};

#[test]
fn every_quorum_read_returns_the_last_acknowledged_write_or_newer() {
    let count = std::env::var("DHRT_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(100);
    let mut total = RegisterReport::default();
    check_seeds(
        "every_quorum_read_returns_the_last_acknowledged_write_or_newer",
        1,
        count,
        |seed| {
            total += register_schedule(seed)?;
            Ok(())
        },
    );
    println!("register: {total:?}");
    let replay = std::env::var("DHRT_SIM_SEED").is_ok();
    assert!(total.reads_checked > 20 * total.schedules, "{total:?}");
    assert!(replay || total.writes_acked > 20 * total.schedules, "{total:?}");
    assert!(replay || total.faults >= 3 * total.schedules, "{total:?}");
}

#[test]
fn quorum_reads_hold_while_a_collection_moves_between_layouts() {
    let count = std::env::var("DHRT_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let mut total = RegisterReport::default();
    check_seeds("quorum_reads_hold_while_a_collection_moves_between_layouts", 1, count, |seed| {
        total += alter_schedule(seed)?;
        Ok(())
    });
    println!("alters: {total:?}");
    let replay = std::env::var("DHRT_SIM_SEED").is_ok();
    assert!(total.reads_checked > 20 * total.schedules, "{total:?}");
    assert!(replay || total.writes_acked > 20 * total.schedules, "{total:?}");
}
