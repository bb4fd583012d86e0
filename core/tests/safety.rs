//! The node's safety properties, checked over many seeded schedules on the simulator
//! (see `dhrt_core::sim::safety` for the rules). Longer runs:
//! `cargo run --release -p dhrt-core --features sim --example safety -- 10000`.

use dhrt_core::sim::{
    check_seeds,
    safety::{crash_schedule, delete_schedule, lossy_schedule, partition_schedule, Report},
};

fn run(name: &str, base: u64, count: u64, schedule: fn(u64) -> Result<Report, String>) -> Report {
    let mut total = Report::default();
    check_seeds(name, base, count, |seed| {
        total += schedule(seed)?;
        Ok(())
    });
    println!("{name}: {total}");
    total
}

#[test]
fn no_acknowledged_write_is_lost_when_any_one_node_crashes() {
    let r =
        run("no_acknowledged_write_is_lost_when_any_one_node_crashes", 1, 1_000, crash_schedule);
    let replay = std::env::var("DHRT_SIM_SEED").is_ok();
    assert!(replay || r.schedules == 1_000, "{r:?}");
    assert!(replay || (r.crashes_with_disk > 300 && r.crashes_without_disk > 300), "{r:?}");
    assert!(r.sets_acked > 10 * r.schedules && r.keys_checked > 10 * r.schedules, "{r:?}");
}

#[test]
fn replicas_converge_after_partitions_heal() {
    let r = run("replicas_converge_after_partitions_heal", 1, 60, partition_schedule);
    assert!(r.partitions >= r.schedules && r.replicas_compared > r.keys_checked * 2, "{r:?}");
}

#[test]
fn deleted_keys_never_come_back() {
    let r = run("deleted_keys_never_come_back", 1, 60, delete_schedule);
    let replay = std::env::var("DHRT_SIM_SEED").is_ok();
    assert!(replay || r.absences_past_grace > 10, "{r:?}");
    assert!(r.deleted_keys_checked > r.schedules, "{r:?}");
}

#[test]
fn loss_and_duplication_neither_lose_nor_double_apply() {
    let r = run("loss_and_duplication_neither_lose_nor_double_apply", 1, 60, lossy_schedule);
    assert!(r.messages_lost > 0 && r.messages_duplicated > 0, "{r:?}");
}
