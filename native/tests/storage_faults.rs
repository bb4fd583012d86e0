//! Storage faults with real processes where the OS matters: a size-limited tmpfs filled
//! until `ENOSPC`, a byte flipped in the write-ahead log, empty files, a collection
//! flood under a low descriptor limit. Tests that need root (mounting a tmpfs) print
//! why they skip and return.

mod common;

use common::{run_bounded, wait_until, NodeProc};
use dhrt::client::Client;
use dhrt_core::proto::client::Consistency;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const ONE: Consistency = Consistency::One;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// A tmpfs of `mb` MiB mounted on a fresh directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (after printing why) when not root or mounting fails.
    fn mount(mb: u64) -> Option<Tmpfs> {
        let uid = Command::new("id").arg("-u").output().map(|o| o.stdout).unwrap_or_default();
        if uid.trim_ascii() != b"0" {
            eprintln!("skipped: mounting a size-limited tmpfs needs root");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipped: `mount -t tmpfs` failed (a container without CAP_SYS_ADMIN?)");
            return None;
        }
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Writes zeros to `path` until `ENOSPC` or `limit` bytes; returns how many.
fn fill(path: &Path, limit: u64) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 << 10];
    let mut n = 0;
    while n < limit {
        let want = chunk.len().min((limit - n) as usize);
        match f.write(&chunk[..want]) {
            Ok(0) | Err(_) => break,
            Ok(w) => n += w as u64,
        }
    }
    let _ = f.sync_all();
    n
}

/// `GET path` on the node's HTTP port: (status line, body).
fn http_get(addr: &str, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    (head.lines().next().unwrap_or_default().to_string(), body.to_string())
}

/// `dhrt serve` on `dir` that must fail to start: its stderr.
fn refused_start(dir: &Path) -> String {
    let mut cmd = Command::new(common::bin());
    cmd.args(["serve", "--port", "0", "--data-dir"]).arg(dir).env_remove("DHRT_CONFIG");
    let ran = run_bounded(cmd, b"", Duration::from_secs(30));
    assert!(ran.code.is_some_and(|c| c != 0), "the node started: {}", ran.stderr);
    ran.stderr
}

/// A client of the node at `addr`, once the node serves.
fn ready(rt: &tokio::runtime::Runtime, addr: &str) -> Client {
    let c = rt.block_on(Client::connect(addr)).unwrap();
    let serving = wait_until(Duration::from_secs(30), || {
        rt.block_on(c.stats(None)).is_ok_and(|s| s.status == "alive")
    });
    assert!(serving, "the node at {addr} never served");
    c
}

fn value(i: usize) -> Vec<u8> {
    format!("{i:0>2048}").into_bytes()
}

/// Writes `k0`..`k399` (acknowledged, in the log: the next checkpoint must write them
/// into the file), then fills the disk behind the node's back and waits past the
/// second the node trusts its last reading of the free space. Returns the filler.
fn acked_then_full(rt: &tokio::runtime::Runtime, c: &Client, fs: &Tmpfs) -> PathBuf {
    for i in 0..400 {
        rt.block_on(c.set("fill", format!("k{i}"), value(i), ONE, None)).unwrap();
    }
    let more = fs.path().join("more");
    fill(&more, u64::MAX);
    std::thread::sleep(Duration::from_millis(1200));
    more
}

#[test]
fn a_full_disk_refuses_new_data_keeps_every_acknowledged_key_and_recovers_by_itself() {
    let _serial = common::serial();
    let Some(fs) = Tmpfs::mount(24) else { return };
    let ballast = fs.path().join("ballast");
    fill(&ballast, 8 << 20);
    let data = fs.path().join("data");
    let node = NodeProc::start(Some(&data), &["--min-free-mb", "2"]);
    let rt = runtime();
    let c = ready(&rt, &node.addr);
    // Write until refused several times in a row (a refusal makes the node checkpoint,
    // which gives the log's room back, so one refusal may be followed by more writes),
    // and again while the node, after such a checkpoint, has room once more.
    // Health, metrics and stats are read together once writes are refused: a checkpoint
    // may give room back between two readings, and then writing goes on.
    let mut acked = Vec::new();
    let mut refusal = None;
    let mut refused_in_a_row = 0;
    let mut health = (String::new(), String::new());
    let mut metrics = String::new();
    let mut stats = None;
    for i in 0..20_000 {
        match rt.block_on(c.set("fill", format!("k{i}"), value(i), ONE, None)) {
            Ok(_) => {
                acked.push(i);
                refused_in_a_row = 0;
            }
            Err(e) => {
                refusal = Some(e.to_string());
                refused_in_a_row += 1;
                if refused_in_a_row >= 3 {
                    health = http_get(&node.addr, "/v1/health");
                    metrics = http_get(&node.addr, "/metrics").1;
                    let s = rt.block_on(c.stats(None)).unwrap();
                    let full = s.storage.full;
                    stats = Some(s);
                    if health.1.contains(r#""storage":"full""#)
                        && metrics.contains("dhrt_storage_full 1")
                        && full
                    {
                        break;
                    }
                }
            }
        }
    }
    let refusal = refusal.expect("the disk never filled");
    assert!(refusal.contains("storage is full"), "{refusal}");
    assert!(acked.len() > 100, "only {} writes before full", acked.len());
    eprintln!("{} writes acknowledged before the disk was full", acked.len());

    let (status, body) = health;
    assert!(status.contains("200") && body.contains(r#""storage":"full""#), "{status} {body}");
    assert!(metrics.contains("dhrt_storage_full 1"), "{metrics}");
    let stats = stats.expect("stats were read");
    assert!(stats.storage.full && stats.keys == acked.len() as u64, "{stats:?}");

    let readable = |c: &Client, acked: &[usize]| {
        for &i in acked {
            let got = rt.block_on(c.get("fill", format!("k{i}"), ONE)).unwrap();
            assert_eq!(got.as_deref(), Some(&value(i)[..]), "k{i}");
        }
    };
    readable(&c, &acked);

    // Deletes work at the reserve.
    let gone = acked.remove(0);
    rt.block_on(c.del("fill", format!("k{gone}"), ONE)).unwrap();
    assert_eq!(rt.block_on(c.get("fill", format!("k{gone}"), ONE)).unwrap(), None);

    // Now the disk fills up entirely behind the node's back: writes (and the log, and
    // any checkpoint) meet ENOSPC; nothing acknowledged may be hidden.
    let more = fs.path().join("more");
    fill(&more, u64::MAX);
    for i in 0..50 {
        let _ = rt.block_on(c.set("fill", format!("x{i}"), value(i), ONE, None));
    }
    let _ = rt.block_on(c.del("fill", format!("k{}", acked[0]), ONE));
    let dropped = acked.remove(0);
    let _ = dropped;
    readable(&c, &acked);

    // Space comes back: writes resume without a restart.
    std::fs::remove_file(&more).unwrap();
    std::fs::remove_file(&ballast).unwrap();
    let resumed = wait_until(Duration::from_secs(20), || {
        rt.block_on(c.set("fill", "after", "space came back", ONE, None)).is_ok()
    });
    assert!(resumed, "writes did not resume:\n{}", node.log());
    // The health follows the store's next check of its room.
    let ok = wait_until(Duration::from_secs(60), || {
        http_get(&node.addr, "/v1/health").1.contains(r#""storage":"ok""#)
    });
    assert!(ok, "{}", http_get(&node.addr, "/v1/health").1);
    readable(&c, &acked);
    drop(c);

    // And everything is still there after a crash and a restart.
    let mut node = node;
    node.kill9();
    let node = NodeProc::start(Some(&data), &["--min-free-mb", "2"]);
    let c = ready(&rt, &node.addr);
    readable(&c, &acked);
    assert_eq!(rt.block_on(c.get("fill", format!("k{gone}"), ONE)).unwrap(), None);
    let after = rt.block_on(c.get("fill", "after", ONE)).unwrap();
    assert_eq!(after.as_deref(), Some(&b"space came back"[..]));
}

/// A checkpoint that meets a disk full behind the node's back is tried again after a
/// wait, not once per write: each attempt replays the log into the failed collection,
/// and tried per batch (as it was) the node's disk thread spent all its time failing
/// them. The writes acknowledged before stay readable throughout and after a crash.
#[test]
fn a_checkpoint_failing_on_a_full_disk_is_retried_after_a_wait_not_per_write() {
    let _serial = common::serial();
    let Some(fs) = Tmpfs::mount(24) else { return };
    let data = fs.path().join("data");
    let node = NodeProc::start(Some(&data), &["--min-free-mb", "1"]);
    let rt = runtime();
    let c = ready(&rt, &node.addr);
    let more = acked_then_full(&rt, &c, &fs);
    let mut refused = 0;
    for i in 0..200 {
        if rt.block_on(c.set("fill", format!("x{i}"), value(i), ONE, None)).is_err() {
            refused += 1;
        }
    }
    assert!(refused >= 150, "only {refused} of 200 writes refused on a full disk");
    let log = node.log();
    let attempts = log.matches("checkpoint failed").count();
    assert!(attempts >= 1, "no checkpoint failed, so nothing was tested:\n{log}");
    assert!(attempts <= 20, "{attempts} failed checkpoints for {refused} refused writes");
    let (_, health) = http_get(&node.addr, "/v1/health");
    assert!(health.contains(r#""storage":"full""#), "{health}");
    for i in 0..400 {
        let got = rt.block_on(c.get("fill", format!("k{i}"), ONE)).unwrap();
        assert_eq!(got.as_deref(), Some(&value(i)[..]), "k{i}");
    }

    // Room comes back: the checkpoint goes through by itself, with no write to prompt it.
    std::fs::remove_file(&more).unwrap();
    let ok = wait_until(Duration::from_secs(30), || {
        http_get(&node.addr, "/v1/health").1.contains(r#""storage":"ok""#)
    });
    assert!(ok, "{}\n{}", http_get(&node.addr, "/v1/health").1, node.log());
    rt.block_on(c.set("fill", "after", "room came back", ONE, None)).unwrap();
    drop(c);
    let mut node = node;
    node.kill9();
    let node = NodeProc::start(Some(&data), &["--min-free-mb", "1"]);
    let c = ready(&rt, &node.addr);
    for i in 0..400 {
        let got = rt.block_on(c.get("fill", format!("k{i}"), ONE)).unwrap();
        assert_eq!(got.as_deref(), Some(&value(i)[..]), "k{i} after a crash");
    }
    let after = rt.block_on(c.get("fill", "after", ONE)).unwrap();
    assert_eq!(after.as_deref(), Some(&b"room came back"[..]));
}

/// The same over the files alone (`--reads disk`, no disk thread): a checkpoint that
/// failed on a full disk is tried again once room comes back with no write to prompt
/// it, so the node's health turns `ok` by itself.
#[test]
fn reads_from_disk_a_failed_checkpoint_is_retried_while_no_write_comes() {
    let _serial = common::serial();
    let Some(fs) = Tmpfs::mount(24) else { return };
    let data = fs.path().join("data");
    let args = ["--min-free-mb", "1", "--reads", "disk"];
    let node = NodeProc::start(Some(&data), &args);
    let rt = runtime();
    let c = ready(&rt, &node.addr);
    let more = acked_then_full(&rt, &c, &fs);
    for i in 0..50 {
        let _ = rt.block_on(c.set("fill", format!("x{i}"), value(i), ONE, None));
    }
    let full = wait_until(Duration::from_secs(10), || {
        !http_get(&node.addr, "/v1/health").1.contains(r#""storage":"ok""#)
    });
    assert!(full, "the node never noticed the full disk:\n{}", node.log());
    std::fs::remove_file(&more).unwrap();
    // No write from here on: the retry is the node's own.
    let ok = wait_until(Duration::from_secs(30), || {
        http_get(&node.addr, "/v1/health").1.contains(r#""storage":"ok""#)
    });
    assert!(ok, "{}\n{}", http_get(&node.addr, "/v1/health").1, node.log());
    for i in 0..400 {
        let got = rt.block_on(c.get("fill", format!("k{i}"), ONE)).unwrap();
        assert_eq!(got.as_deref(), Some(&value(i)[..]), "k{i}");
    }
}

#[test]
fn a_full_disk_while_creating_a_collection_leaves_no_file_and_the_node_restarts() {
    let _serial = common::serial();
    let Some(fs) = Tmpfs::mount(20) else { return };
    let data = fs.path().join("data");
    let mut node = NodeProc::start(Some(&data), &["--min-free-mb", "0"]);
    let rt = runtime();
    let c = ready(&rt, &node.addr);
    rt.block_on(c.set("first", "a", "1", ONE, None)).unwrap();
    fill(&fs.path().join("ballast"), u64::MAX);
    for i in 0..20 {
        let err = rt.block_on(c.set(&format!("new{i}"), "a", "1", ONE, None)).unwrap_err();
        // Refused for space (or, while the node re-syncs after the failed commit that
        // creation caused, as not serving): either way an error, and no file.
        let text = err.to_string();
        assert!(text.contains("full") || text.contains("serving"), "{text}\n{}", node.log());
    }
    let files: Vec<String> = std::fs::read_dir(data.join("collections"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["first.redb"], "nothing else was left behind");
    drop(c);
    node.kill9();
    std::fs::remove_file(fs.path().join("ballast")).unwrap();
    let node = NodeProc::start(Some(&data), &["--min-free-mb", "0"]);
    let c = ready(&rt, &node.addr);
    assert_eq!(rt.block_on(c.get("first", "a", ONE)).unwrap().as_deref(), Some(&b"1"[..]));
    rt.block_on(c.set("new0", "a", "1", ONE, None)).unwrap();
}

#[test]
fn a_byte_flipped_mid_log_refuses_the_start_and_repair_salvages_the_rest() {
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProc::start(Some(dir.path()), &[]);
    let rt = runtime();
    let c = ready(&rt, &node.addr);
    for i in 0..2000 {
        rt.block_on(c.set("log", format!("k{i}"), format!("v{i}"), ONE, None)).unwrap();
    }
    drop(c);
    node.kill9();
    let wal = dir.path().join("collections.wal");
    let mut raw = std::fs::read(&wal).unwrap();
    // A quarter into the records, not into the zeros the log is filled with ahead.
    let middle = raw.iter().rposition(|&b| b != 0).unwrap() / 4;
    raw[middle] ^= 0x20;
    std::fs::write(&wal, &raw).unwrap();

    let stderr = refused_start(dir.path());
    assert!(stderr.contains("collections.wal") && stderr.contains("byte"), "{stderr}");
    assert_eq!(std::fs::read(&wal).unwrap(), raw, "the log is kept as it was");

    let mut repair = Command::new(common::bin());
    repair.args(["repair", "--data-dir"]).arg(dir.path());
    let ran = run_bounded(repair, b"", Duration::from_secs(60));
    let out = String::from_utf8_lossy(&ran.stdout).into_owned();
    assert_eq!(ran.code, Some(0), "{out}{}", ran.stderr);
    assert!(out.contains("dropped") && out.contains("offset") && out.contains("kept"), "{out}");
    let lost_and_found: PathBuf = dir.path().join("lost+found").join("collections.wal");
    assert_eq!(std::fs::read(lost_and_found).unwrap(), raw, "a copy of the original");

    let node = NodeProc::start(Some(dir.path()), &[]);
    let c = ready(&rt, &node.addr);
    let stats = rt.block_on(c.stats(None)).unwrap();
    assert!((1998..2000).contains(&stats.keys), "{} keys salvaged", stats.keys);
}

#[test]
fn an_empty_node_db_or_collection_file_refuses_the_start() {
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProc::start(Some(dir.path()), &[]);
    let rt = runtime();
    let c = ready(&rt, &node.addr);
    rt.block_on(c.set("users", "alice", "1", ONE, None)).unwrap();
    drop(c);
    assert_eq!(node.signal_and_wait("TERM", Duration::from_secs(60)), Some(0));

    let node_db = dir.path().join("node.redb");
    let saved = std::fs::read(&node_db).unwrap();
    std::fs::write(&node_db, b"").unwrap();
    let stderr = refused_start(dir.path());
    assert!(stderr.contains("node.redb") && stderr.contains("empty"), "{stderr}");
    std::fs::write(&node_db, &saved).unwrap();

    let file = dir.path().join("collections").join("users.redb");
    std::fs::write(&file, b"").unwrap();
    let stderr = refused_start(dir.path());
    assert!(stderr.contains("users.redb") && stderr.contains("empty"), "{stderr}");
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 0, "left for the operator");
}

#[test]
fn a_collection_flood_under_a_low_descriptor_limit_keeps_working_and_restarts() {
    let _serial = common::serial();
    if Command::new("prlimit").arg("--version").output().is_err() {
        eprintln!("skipped: prlimit (util-linux) is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let start = |dir: &Path| {
        let mut cmd = Command::new("prlimit");
        cmd.args(["--nofile=256:256", "--", common::bin(), "serve", "--port", "0"])
            .arg("--data-dir")
            .arg(dir)
            .args(["--max-open-files", "64"])
            .env_remove("DHRT_CONFIG");
        NodeProc::launch(cmd)
    };
    let mut node = start(dir.path());
    let rt = runtime();
    let c = ready(&rt, &node.addr);
    const FLOOD: usize = 600;
    for i in 0..FLOOD {
        rt.block_on(c.set(&format!("c{i}"), "k", format!("v{i}"), ONE, None))
            .unwrap_or_else(|e| panic!("collection {i}: {e}\n{}", node.log()));
    }
    for i in (0..FLOOD).step_by(37) {
        let got = rt.block_on(c.get(&format!("c{i}"), "k", ONE)).unwrap();
        assert_eq!(got.as_deref(), Some(format!("v{i}").as_bytes()));
    }
    drop(c);
    node.kill9();
    let node = start(dir.path());
    let c = ready(&rt, &node.addr);
    let stats = rt.block_on(c.stats(None)).unwrap();
    assert_eq!((stats.keys, stats.collections), (FLOOD as u64, FLOOD as u64));
    for i in (0..FLOOD).step_by(41) {
        let got = rt.block_on(c.get(&format!("c{i}"), "k", ONE)).unwrap();
        assert_eq!(got.as_deref(), Some(format!("v{i}").as_bytes()));
    }
}
