//! The `dhrt` binary as a user runs it: exit codes and output.

use std::process::Command;

fn dhrt(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dhrt")).args(args).output().expect("run dhrt");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn demo_converges_and_reports_each_session() {
    let (ok, stdout, stderr) = dhrt(&["demo", "--entries", "2000", "--differences", "20"]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("converged: true"), "{stdout}");
    assert!(stdout.contains("round 1: 0 <-> 1"), "{stdout}");
    let shipped: u64 = stdout
        .lines()
        .filter(|l| l.contains("round 1:"))
        .map(|l| l.split_whitespace().nth(5).unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(shipped > 0, "the partition's writes were shipped: {stdout}");
}

#[test]
fn position_matches_the_core() {
    let (ok, stdout, _) = dhrt(&["position", "users", "alice"]);
    assert!(ok);
    let want = dhrt_core::hash::hashed_position("users", b"alice");
    assert!(stdout.starts_with(&format!("{want} ")), "{stdout}");
    let (ok, stdout, _) = dhrt(&["position", "ordered.users", "a"]);
    assert!(ok);
    assert!(stdout.starts_with(&format!("{} ", 0x6100_0000_0000_0000u64)), "{stdout}");
}

#[test]
fn bad_input_gets_a_clear_error() {
    let (ok, _, stderr) = dhrt(&["position", "no/slash", "k"]);
    assert!(!ok);
    assert!(stderr.contains("invalid collection name"), "{stderr}");
    let (ok, _, stderr) = dhrt(&["demo", "--replicas", "1"]);
    assert!(!ok);
    assert!(stderr.contains("replicas"), "{stderr}");
}
