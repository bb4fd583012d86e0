//! How long a node with a million keys on disk takes to start: opening the
//! [`RedbStore`] (reading each collection's saved counts) and building the Merkle
//! tree of every collection (`Replica::new`, a full scan).
//!
//! ```text
//! cargo run --release -p dhrt --example startup
//! cargo run --release -p dhrt --example startup -- --keys 100000 --dir /path/on/disk
//! ```
//!
//! It writes `--keys` records (16-byte keys, 100-byte values, hashed positions) in
//! batches of 10,000, each committed by a flush, and closes the store as a node stopping
//! cleanly does (`Store::close`: a last checkpoint; a file mostly free is compacted,
//! which is timed). Then it starts
//! the store and replica cold (the file evicted from the page cache first, Linux) with
//! the default options, warm, and cold without `RedbOptions::preload_bytes`; and, to
//! split the tree build into reading and hashing, it times a bare scan of the records
//! (warm and cold) and a plain sequential read of the file.
//! `--crash` exits right after writing without closing the files, so the next run with
//! `--reuse --dir` measures opening after a crash (redb's repair); add
//! `--no-quick-repair` to the writing run to see the repair without the allocator state
//! that `RedbOptions::quick_repair` saves.

use bytes::Bytes;
use dhrt::store::{MemFirstStore, RedbOptions, RedbStore};
use dhrt_core::{
    clock::Timestamp,
    entry::{Entry, NodeId},
    hash::{Interval, Placement, Position},
    replica::Replica,
    store::{Record, Store, StoreError},
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const COLLECTION: &str = "bench";
const BATCH: u64 = 10_000;

struct Args {
    keys: u64,
    dir: Option<PathBuf>,
    reuse: bool,
    crash: bool,
    quick_repair: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args =
        Args { keys: 1_000_000, dir: None, reuse: false, crash: false, quick_repair: true };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--keys" => {
                let n = it.next().ok_or("--keys needs a number")?;
                args.keys = n.parse().map_err(|e| format!("--keys {n}: {e}"))?;
            }
            "--dir" => args.dir = Some(it.next().ok_or("--dir needs a path")?.into()),
            "--reuse" => args.reuse = true,
            "--crash" => args.crash = true,
            "--no-quick-repair" => args.quick_repair = false,
            other => {
                return Err(format!(
                    "unknown argument {other}; use --keys N, --dir PATH, --reuse, --crash, --no-quick-repair"
                ))
            }
        }
    }
    if args.reuse && args.dir.is_none() {
        return Err("--reuse needs --dir".into());
    }
    Ok(args)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let temp;
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            // Under target/, which is on a real disk (not tmpfs) in most setups.
            std::fs::create_dir_all("target")?;
            temp = tempfile::tempdir_in("target")?;
            temp.path().to_path_buf()
        }
    };
    let file = dir.join("collections").join(format!("{COLLECTION}.redb"));

    if !args.reuse {
        let store = write(&dir, args.keys, options(&args))?;
        if args.crash {
            println!("exiting without closing {}", dir.display());
            std::process::exit(0); // `store` is never dropped
        }
        // Closed as a node stopping cleanly closes it: a last checkpoint, and the file
        // compacted if it is mostly free.
        let mut store = store;
        let t = Instant::now();
        store.checkpoint()?;
        let checkpointed = t.elapsed();
        store.close();
        drop(store);
        println!(
            "closed: last checkpoint {}, then compaction {}",
            ms(checkpointed),
            ms(t.elapsed() - checkpointed)
        );
    }
    println!("file: {} ({:.1} MiB)", file.display(), mib(std::fs::metadata(&file)?.len()));

    let no_preload = RedbOptions { preload_bytes: 0, ..options(&args) };
    evict(&file);
    let (open, build, entries) = start(&dir, options(&args))?;
    println!(
        "cold: open {} + tree build {} = {} ({entries} entries)",
        ms(open),
        ms(build),
        ms(open + build)
    );
    let (open, build, _) = start(&dir, options(&args))?;
    println!("warm: open {} + tree build {} = {}", ms(open), ms(build), ms(open + build));
    evict(&file);
    let (open, build, entries) = start_in_memory(&dir, options(&args))?;
    println!(
        "cold, --reads memory: open and read into memory {} + tree build {} = {} ({entries} \
         entries)",
        ms(open),
        ms(build),
        ms(open + build)
    );
    evict(&file);
    let (open, build, _) = start(&dir, no_preload.clone())?;
    println!(
        "cold without preload (preload_bytes 0): open {} + tree build {} = {}",
        ms(open),
        ms(build),
        ms(open + build)
    );

    let (took, records) = scan(&dir, no_preload.clone())?;
    println!("warm scan alone (read + decode, no tree): {} for {records} records", ms(took));
    evict(&file);
    let (took, _) = scan(&dir, no_preload)?;
    println!("cold scan alone, without preload: {}", ms(took));
    evict(&file);
    let t = Instant::now();
    let bytes = read_all(&file)?;
    println!(
        "cold sequential read of the file: {} ({:.0} MiB/s)",
        ms(t.elapsed()),
        mib(bytes) / t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Pages through every record as `Replica::rebuild_tree` does, without the tree.
fn scan(dir: &Path, options: RedbOptions) -> Result<(Duration, u64), Box<dyn std::error::Error>> {
    let store = RedbStore::open(dir, options)?;
    let t = Instant::now();
    let mut records = 0u64;
    let mut cursor: Option<(Position, Bytes)> = None;
    loop {
        let after = cursor.as_ref().map(|(p, k)| (*p, k.as_ref()));
        let page = store.range(COLLECTION, Interval::full(), after, 1024)?;
        records += page.len() as u64;
        match page.last() {
            Some(last) if page.len() == 1024 => cursor = Some((last.pos, last.key.clone())),
            _ => break,
        }
    }
    Ok((t.elapsed(), records))
}

/// The store options `args` ask for.
fn options(args: &Args) -> RedbOptions {
    RedbOptions { quick_repair: args.quick_repair, ..RedbOptions::default() }
}

/// Writes `keys` records in flushed batches; returns the store, still open.
fn write(
    dir: &Path,
    keys: u64,
    options: RedbOptions,
) -> Result<RedbStore, Box<dyn std::error::Error>> {
    let mut store = RedbStore::open(dir, options)?;
    let t = Instant::now();
    let placement = Placement::Hashed;
    let mut batch = Vec::with_capacity(BATCH as usize);
    for i in 0..keys {
        let key = Bytes::from(format!("key-{i:012}"));
        let value: Vec<u8> = (0..100u64).map(|j| (i.wrapping_mul(31) ^ j) as u8).collect();
        let ts = Timestamp::from_parts(1_700_000_000_000 + i, 0);
        let pos = placement.position(COLLECTION, &key);
        batch.push(Record { pos, key, entry: Entry::value(value, ts, NodeId(1)) });
        if batch.len() as u64 == BATCH || i + 1 == keys {
            store.merge_batch(COLLECTION, &batch)?;
            store.flush()?;
            batch.clear();
        }
    }
    let took = t.elapsed();
    println!(
        "wrote {keys} keys in batches of {BATCH}: {} ({:.0} keys/s)",
        ms(took),
        keys as f64 / took.as_secs_f64()
    );
    Ok(store)
}

/// Opens the store, then builds the replica; returns both times and the entry count.
fn start(
    dir: &Path,
    options: RedbOptions,
) -> Result<(Duration, Duration, u64), Box<dyn std::error::Error>> {
    timed(|| RedbStore::open(dir, options))
}

/// [`start`] for a node that answers from memory: the files are opened and read into
/// memory ([`MemFirstStore::open`]), then the trees are built from memory.
fn start_in_memory(
    dir: &Path,
    options: RedbOptions,
) -> Result<(Duration, Duration, u64), Box<dyn std::error::Error>> {
    timed(|| MemFirstStore::open(dir, options))
}

/// Times `open`, then the replica's tree build over what it opened.
fn timed<S: Store>(
    open: impl FnOnce() -> Result<S, StoreError>,
) -> Result<(Duration, Duration, u64), Box<dyn std::error::Error>> {
    let t = Instant::now();
    let store = open()?;
    let open = t.elapsed();
    let t = Instant::now();
    let replica = Replica::new(store)?;
    let build = t.elapsed();
    let entries = replica.tree(COLLECTION).map_or(0, |t| t.root().count);
    Ok((open, build, entries))
}

/// Drops `file` from the page cache so the next read comes from the disk (Linux).
fn evict(file: &Path) {
    #[cfg(target_os = "linux")]
    {
        let advice = rustix::fs::Advice::DontNeed;
        match std::fs::File::open(file) {
            Ok(f) => {
                if let Err(e) = rustix::fs::fadvise(&f, 0, None, advice) {
                    println!("could not evict the file from the page cache: {e}");
                }
            }
            Err(e) => println!("could not open {} to evict it: {e}", file.display()),
        }
    }
    #[cfg(not(target_os = "linux"))]
    println!("(not evicting {} from the page cache on this platform)", file.display());
}

/// Reads `file` sequentially in 1 MiB pieces (as the preload does); returns its size.
fn read_all(file: &Path) -> std::io::Result<u64> {
    use std::io::Read;
    let mut f = std::fs::File::open(file)?;
    let mut buf = vec![0; 1 << 20];
    let mut total = 0;
    loop {
        match f.read(&mut buf)? {
            0 => return Ok(total),
            n => total += n as u64,
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
