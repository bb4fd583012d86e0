//! Scans on the simulator: every live key exactly once, in ring order, page by page
//! through any node; prefixes; consistency with a crashed replica; bad cursors; TTLs;
//! joint scans while a leave is announced.

use bytes::Bytes;
use dhrt_core::{
    entry::NodeId,
    hash::hashed_position,
    proto::client::{Consistency, ErrorCode, Op, Reply},
    sim::{check_seeds, memory_cluster, NetConfig, NodeProcess, Sim},
    store::MemStore,
};
use std::collections::{BTreeMap, BTreeSet};

type Cluster = Sim<NodeProcess<MemStore>>;

/// Sends `op` to `node` and runs until it answers (or 10 simulated seconds pass).
fn call(sim: &mut Cluster, node: u64, op: Op) -> Option<Reply> {
    dhrt_core::sim::call(sim, NodeId(node), op)
}

fn set(collection: &str, key: &[u8], value: &[u8], ttl_ms: Option<u64>) -> Op {
    Op::Set {
        collection: collection.into(),
        key: Bytes::copy_from_slice(key),
        value: Bytes::copy_from_slice(value),
        consistency: Consistency::Quorum,
        ttl_ms,
    }
}

fn del(collection: &str, key: &[u8]) -> Op {
    Op::Del {
        collection: collection.into(),
        key: Bytes::copy_from_slice(key),
        consistency: Consistency::Quorum,
    }
}

fn scan(
    collection: &str,
    cursor: Option<Bytes>,
    prefix: Option<&[u8]>,
    limit: u32,
    consistency: Consistency,
) -> Op {
    Op::Scan {
        collection: collection.into(),
        cursor,
        prefix: prefix.map(Bytes::copy_from_slice),
        limit,
        consistency,
    }
}

/// Writes every `(key, value)` at quorum, each through another node, and checks that it
/// was acknowledged.
fn write_all(sim: &mut Cluster, nodes: u64, collection: &str, items: &BTreeMap<Vec<u8>, Vec<u8>>) {
    for (i, (k, v)) in items.iter().enumerate() {
        let reply = call(sim, 1 + i as u64 % nodes, set(collection, k, v, None));
        assert!(matches!(reply, Some(Reply::Written { .. })), "write of {k:?}: {reply:?}");
    }
}

/// The pages of a whole scan, each asked of the next node of `via` in turn.
fn scan_pages(
    sim: &mut Cluster,
    via: &[u64],
    collection: &str,
    prefix: Option<&[u8]>,
    limit: u32,
    consistency: Consistency,
) -> Result<Vec<Vec<(Bytes, Bytes)>>, String> {
    let mut pages = Vec::new();
    let mut cursor = None;
    for page in 0..1_000u64 {
        let op = scan(collection, cursor.clone(), prefix, limit, consistency);
        match call(sim, via[page as usize % via.len()], op) {
            Some(Reply::Page { items, cursor: next }) => {
                let most = if limit == 0 { 100 } else { limit as usize };
                if items.len() > most {
                    return Err(format!("page {page} holds {} items, over {most}", items.len()));
                }
                pages.push(items);
                match next {
                    None => return Ok(pages),
                    Some(c) if Some(&c) == cursor.as_ref() => {
                        return Err(format!("page {page} did not move the cursor"))
                    }
                    Some(c) => cursor = Some(c),
                }
            }
            other => return Err(format!("page {page}: {other:?}")),
        }
    }
    Err("the scan did not end within 1000 pages".into())
}

fn flat(pages: Vec<Vec<(Bytes, Bytes)>>) -> Vec<(Vec<u8>, Vec<u8>)> {
    pages.into_iter().flatten().map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
}

/// Keys spread over the whole ordered ring (first bytes 0x00 … 0xFF, including the very
/// first and last positions) and keys crowded at a few positions (`user:…` keys share
/// their first 8 bytes ten at a time).
fn ordered_items() -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut items = BTreeMap::new();
    for i in 0..250u32 {
        let mut key = vec![(i * 37 % 256) as u8];
        key.extend_from_slice(format!("/{i:04}").as_bytes());
        items.insert(key, format!("s{i}").into_bytes());
        items.insert(format!("user:{i:04}").into_bytes(), format!("u{i}").into_bytes());
    }
    items.insert(vec![0], b"first".to_vec());
    items.insert(vec![0xFF; 9], b"last".to_vec());
    items
}

#[test]
fn ordered_scans_return_every_live_key_once_in_key_order() {
    check_seeds("ordered_scans_return_every_live_key_once_in_key_order", 1, 2, |seed| {
        let mut sim = memory_cluster(5, NetConfig::lan(), seed, |_| {});
        let mut items = ordered_items();
        write_all(&mut sim, 5, "ordered.users", &items);
        let doomed: Vec<Vec<u8>> = items.keys().step_by(7).cloned().collect();
        for (i, k) in doomed.iter().enumerate() {
            let reply = call(&mut sim, 1 + i as u64 % 5, del("ordered.users", k));
            assert!(matches!(reply, Some(Reply::Written { .. })), "delete of {k:?}: {reply:?}");
            items.remove(k);
        }
        let pages =
            scan_pages(&mut sim, &[1, 2, 3, 4, 5], "ordered.users", None, 37, Consistency::Quorum)?;
        let pages_needed = items.len().div_ceil(37);
        if pages.len() > pages_needed + 1 {
            return Err(format!("{} pages for {} items", pages.len(), items.len()));
        }
        let got = flat(pages);
        let want: Vec<(Vec<u8>, Vec<u8>)> = items.into_iter().collect();
        if got != want {
            let missing = want.iter().filter(|w| !got.contains(w)).count();
            return Err(format!(
                "scan gave {} items, want {} in key order ({missing} missing)",
                got.len(),
                want.len()
            ));
        }
        Ok(())
    });
}

#[test]
fn hashed_scans_return_every_live_key_once_in_hash_order() {
    check_seeds("hashed_scans_return_every_live_key_once_in_hash_order", 1, 2, |seed| {
        let mut sim = memory_cluster(5, NetConfig::lan(), seed, |_| {});
        let mut items: BTreeMap<Vec<u8>, Vec<u8>> = (0..300)
            .map(|i| (format!("user:{i}").into_bytes(), format!("v{i}").into_bytes()))
            .collect();
        write_all(&mut sim, 5, "users", &items);
        for i in (0..300).step_by(11) {
            let k = format!("user:{i}").into_bytes();
            assert!(matches!(call(&mut sim, 2, del("users", &k)), Some(Reply::Written { .. })));
            items.remove(&k);
        }
        let got =
            flat(scan_pages(&mut sim, &[1, 2, 3, 4, 5], "users", None, 37, Consistency::Quorum)?);
        let positions: Vec<u64> = got.iter().map(|(k, _)| hashed_position("users", k)).collect();
        if positions.windows(2).any(|w| w[0] > w[1]) {
            return Err("items are not in ring (hash) order".into());
        }
        let keys: BTreeSet<&Vec<u8>> = got.iter().map(|(k, _)| k).collect();
        if keys.len() != got.len() {
            return Err(format!("{} items but {} distinct keys", got.len(), keys.len()));
        }
        let got: BTreeMap<Vec<u8>, Vec<u8>> = got.into_iter().collect();
        if got != items {
            return Err(format!("scan gave {} keys, want {}", got.len(), items.len()));
        }
        Ok(())
    });
}

#[test]
fn prefix_scans_return_exactly_the_matching_keys() {
    let mut sim = memory_cluster(5, NetConfig::lan(), 3, |_| {});
    let items = ordered_items();
    write_all(&mut sim, 5, "ordered.users", &items);
    let mut hashed = items.clone();
    hashed.retain(|k, _| k.starts_with(b"user:") || k[0] % 4 == 0);
    write_all(&mut sim, 5, "users", &hashed);
    let prefixes: [&[u8]; 7] =
        [b"user:", b"user:01", b"user:0012", b"\xff", b"\xff\xff", b"\0", b"zz"];
    for prefix in prefixes {
        let want: Vec<(Vec<u8>, Vec<u8>)> = items
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let pages = scan_pages(
            &mut sim,
            &[1, 2, 3, 4, 5],
            "ordered.users",
            Some(prefix),
            10,
            Consistency::Quorum,
        );
        let got = flat(pages.unwrap_or_else(|e| panic!("prefix {prefix:?}: {e}")));
        assert_eq!(got, want, "ordered scan with prefix {prefix:?}");

        let want: BTreeMap<Vec<u8>, Vec<u8>> = hashed
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let pages =
            scan_pages(&mut sim, &[1, 2, 3, 4, 5], "users", Some(prefix), 10, Consistency::Quorum);
        let got = flat(pages.unwrap_or_else(|e| panic!("prefix {prefix:?}: {e}")));
        assert_eq!(got.len(), want.len(), "hashed scan with prefix {prefix:?}: no duplicates");
        assert_eq!(got.into_iter().collect::<BTreeMap<_, _>>(), want, "hashed prefix {prefix:?}");
    }
    assert!(items.keys().filter(|k| k.starts_with(b"user:01")).count() == 100);
}

#[test]
fn a_crashed_replica_fails_all_but_not_quorum() {
    let mut sim = memory_cluster(5, NetConfig::lan(), 17, |_| {});
    let items = ordered_items();
    write_all(&mut sim, 5, "ordered.users", &items);
    sim.run_for(500);
    sim.crash(NodeId(3));
    // `all` needs node 3 for the ranges it replicates: some page fails, saying how many
    // replicas of the range answered.
    let mut cursor = None;
    let failure = loop {
        match call(&mut sim, 1, scan("ordered.users", cursor.clone(), None, 100, Consistency::All))
        {
            Some(Reply::Page { cursor: Some(next), .. }) => cursor = Some(next),
            other => break other,
        }
    };
    match failure {
        Some(Reply::Error { code: ErrorCode::QuorumNotReached, acked: Some((2, 3)), message }) => {
            assert!(message.contains("2 of the 3"), "{message}")
        }
        other => panic!("expected a scan at `all` to miss node 3, got {other:?}"),
    }
    let pages = scan_pages(&mut sim, &[2, 4, 5], "ordered.users", None, 37, Consistency::Quorum);
    let got = flat(pages.expect("a quorum scan survives one crashed replica"));
    assert_eq!(got, items.into_iter().collect::<Vec<_>>());
}

#[test]
fn bad_scans_get_typed_errors() {
    let mut sim = memory_cluster(3, NetConfig::lan(), 2, |_| {});
    write_all(&mut sim, 3, "users", &[(b"k".to_vec(), b"v".to_vec())].into());
    let cases = [
        scan("users", Some(Bytes::from_static(b"bad")), None, 10, Consistency::Quorum),
        scan("users", Some(Bytes::new()), None, 10, Consistency::Quorum),
        scan("no/slash", None, None, 10, Consistency::Quorum),
        scan("users", None, None, 10, Consistency::N(4)),
        scan("users", None, Some(&vec![b'p'; 70_000]), 10, Consistency::Quorum),
    ];
    for op in cases {
        match call(&mut sim, 1, op.clone()) {
            Some(Reply::Error { code: ErrorCode::InvalidInput, message, .. }) => {
                assert!(!message.is_empty(), "{op:?}")
            }
            other => panic!("{op:?}: expected invalid input, got {other:?}"),
        }
    }
    // A cursor past the end of an ordered prefix's range ends the scan.
    let past = Some(Bytes::from_static(b"\xff\xff\xff\xff\xff\xff\xff\xffzz"));
    let reply = call(&mut sim, 1, scan("ordered.x", past, Some(b"a"), 10, Consistency::One));
    assert_eq!(reply, Some(Reply::Page { items: vec![], cursor: None }));
}

#[test]
fn expired_entries_do_not_appear() {
    let mut sim = memory_cluster(3, NetConfig::lan(), 8, |_| {});
    for i in 0..30u32 {
        let ttl = (i % 3 == 0).then_some(20_000);
        let op = set("ordered.sessions", format!("s{i:02}").as_bytes(), b"v", ttl);
        assert!(matches!(call(&mut sim, 1 + u64::from(i) % 3, op), Some(Reply::Written { .. })));
    }
    let before = flat(
        scan_pages(&mut sim, &[1, 2, 3], "ordered.sessions", None, 7, Consistency::One).unwrap(),
    );
    assert_eq!(before.len(), 30, "every entry is live before its TTL");
    sim.run_for(20_000);
    let after = flat(
        scan_pages(&mut sim, &[1, 2, 3], "ordered.sessions", None, 7, Consistency::Quorum).unwrap(),
    );
    let want: Vec<Vec<u8>> =
        (0..30).filter(|i| i % 3 != 0).map(|i| format!("s{i:02}").into_bytes()).collect();
    assert_eq!(after.into_iter().map(|(k, _)| k).collect::<Vec<_>>(), want);
}

#[test]
fn a_scan_of_an_empty_collection_over_many_tokens_ends() {
    let mut sim = memory_cluster(5, NetConfig::lan(), 4, |c| c.vnodes = 256);
    let pages =
        scan_pages(&mut sim, &[1, 2, 3, 4, 5], "nothing", None, 10, Consistency::Quorum).unwrap();
    assert!(pages.len() > 1, "1281 ranges take more than one page: {}", pages.len());
    assert!(pages.iter().all(Vec::is_empty));
    // A lone node serves a whole scan from its own store.
    let mut lone = memory_cluster(1, NetConfig::lan(), 4, |_| {});
    let items: BTreeMap<Vec<u8>, Vec<u8>> =
        (0..25).map(|i| (format!("k{i:02}").into_bytes(), b"v".to_vec())).collect();
    write_all(&mut lone, 1, "ordered.solo", &items);
    let got = flat(scan_pages(&mut lone, &[1], "ordered.solo", None, 0, Consistency::All).unwrap());
    assert_eq!(got, items.into_iter().collect::<Vec<_>>(), "limit 0 means the default page");
}

#[test]
fn a_replica_that_missed_writes_does_not_hide_them_from_a_scan() {
    // No anti-entropy during the test: node 3 stays behind until the scan.
    let mut sim = memory_cluster(3, NetConfig::lan(), 12, |c| c.sync_interval_ms = 3_600_000);
    let mut items = BTreeMap::new();
    for i in 0..40u32 {
        items.insert(format!("k{i:02}").into_bytes(), format!("v{i}").into_bytes());
    }
    let (early, late): (Vec<_>, Vec<_>) = items.iter().partition(|(k, _)| k[1] != b'2');
    for (k, v) in &early {
        assert!(matches!(
            call(&mut sim, 1, set("ordered.t", k, v, None)),
            Some(Reply::Written { .. })
        ));
    }
    // While node 3 is cut off, k20..k29 are written and k20..k24 deleted again. Node 3
    // then answers k30.. where the others answer the tombstones of k20..: a coordinator
    // merging past the others' last record would skip the live k25..k29.
    sim.partition(&[&[NodeId(1), NodeId(2)], &[NodeId(3)]]);
    for (k, v) in &late {
        assert!(matches!(
            call(&mut sim, 1, set("ordered.t", k, v, None)),
            Some(Reply::Written { .. })
        ));
    }
    let doomed: Vec<Vec<u8>> = (20..25).map(|i| format!("k{i}").into_bytes()).collect();
    for k in &doomed {
        assert!(matches!(call(&mut sim, 2, del("ordered.t", k)), Some(Reply::Written { .. })));
    }
    sim.heal();
    for _ in 0..50 {
        let all_alive = sim.processes().all(|(_, p)| p.node.membership().alive().count() == 3);
        if all_alive {
            break;
        }
        sim.run_for(100);
    }
    let held = |sim: &Cluster, key: &[u8]| {
        sim.process(NodeId(3)).unwrap().node.replica().get("ordered.t", key).unwrap().is_some()
    };
    assert!(!held(&sim, b"k20") && !held(&sim, b"k25"), "node 3 missed the writes");
    for k in &doomed {
        items.remove(k);
    }
    // Node 3 re-syncs after the partition, so it counts toward no quorum yet; a quorum
    // scan through it still merges its own stale answer with the others'.
    let got = flat(scan_pages(&mut sim, &[3], "ordered.t", None, 5, Consistency::Quorum).unwrap());
    assert_eq!(got, items.into_iter().collect::<Vec<_>>());
}

#[test]
fn scans_during_an_announced_leave_find_every_key_with_and_without_the_leaver() {
    check_seeds("scans_during_an_announced_leave", 1, 2, |seed| {
        // The leave stays announced (its hand-off waits a minute), so every range of the
        // leaver has future owners that do not hold its keys yet.
        let mut sim = memory_cluster(4, NetConfig::lan(), seed, |c| {
            c.ring_delay_ms = 60_000;
            c.sync_interval_ms = 3_600_000;
        });
        let items: BTreeMap<Vec<u8>, Vec<u8>> = (0..200)
            .map(|i| (format!("user:{i}").into_bytes(), format!("v{i}").into_bytes()))
            .collect();
        write_all(&mut sim, 4, "users", &items);
        sim.act(NodeId(4), |p, now| p.node.leave(now));
        sim.run_for(3_000);
        for id in 1..=3u64 {
            let seen = sim.process(NodeId(id)).unwrap().node.membership().member(NodeId(4));
            if !seen.is_some_and(|m| m.leaving()) {
                return Err(format!("node {id} does not see node 4 leaving"));
            }
        }
        // The leaver answers that its leave is under way: the future owners' quorum is
        // waived, and every key comes back.
        let got = flat(scan_pages(&mut sim, &[1, 2], "users", None, 50, Consistency::Quorum)?);
        if got.into_iter().collect::<BTreeMap<_, _>>() != items {
            return Err("a scan while the leave is announced missed keys".into());
        }
        // Cut off from the leaver, the scan needs a quorum of the future owners as well:
        // it still finds every key (held by the old owners among them).
        sim.partition(&[&[NodeId(1), NodeId(2), NodeId(3)], &[NodeId(4)]]);
        let got = flat(scan_pages(&mut sim, &[1, 3], "users", None, 50, Consistency::Quorum)?);
        if got.into_iter().collect::<BTreeMap<_, _>>() != items {
            return Err("a joint scan without the leaver missed keys".into());
        }
        // At `all`, every owner and every future owner must answer: the leaver cannot.
        match call(&mut sim, 1, scan("users", None, None, 1000, Consistency::All)) {
            Some(Reply::Error {
                code: ErrorCode::QuorumNotReached | ErrorCode::Unavailable,
                ..
            }) => {}
            other => return Err(format!("a scan at `all` without the leaver: {other:?}")),
        }
        Ok(())
    });
}
