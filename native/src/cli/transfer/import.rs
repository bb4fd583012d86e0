//! `dhrt import [COLLECTION] FILE`: the lines of an export ([`super::jsonl`]) written
//! back, in batches of `--batch` entries with [`dhrt::client::Client::set_many`].
//!
//! Lines are read in order and a batch holds consecutive lines of one collection, so
//! when import stops, it stops at a line: every entry before it was written, none after
//! it. A line that does not parse stops the import — after the entries before it are
//! written — with its line number and what is wrong; `--skip-bad` reports such lines
//! and goes on instead. A batch the cluster refuses stops the import too, naming its
//! lines (a batch is not a transaction: some of its entries may have been written).
//! A key repeated within a batch ends the batch first, so the later line wins, as it
//! would one write at a time. Blank lines are ignored; `--dry-run` reads and checks
//! everything without connecting.

use super::{jsonl, progress, Tally};
use crate::cli::data::Target;
use bytes::Bytes;
use clap::Args;
use dhrt::client::Client;
use dhrt_core::{proto::client::Consistency, store::validate_collection};
use indicatif::ProgressBar;
use std::{
    collections::HashSet,
    fs::File,
    io::{BufRead, BufReader, Read},
    time::Duration,
};

/// Largest line read: a 16 MiB value escaped as JSON (at most six bytes a byte) with
/// room to spare. Anything longer is not an export.
pub const MAX_LINE: u64 = 128 << 20;
/// A batch also ends at this many bytes of keys and values, well under a frame.
pub const BATCH_BYTES: usize = 4 << 20;

/// Options of `dhrt import`.
#[derive(Debug, Clone, Args)]
#[command(override_usage = "dhrt import [OPTIONS] [COLLECTION] <FILE>")]
pub struct ImportArgs {
    /// [COLLECTION] FILE: the export to read, `-` for stdin. With COLLECTION, every
    /// entry goes into COLLECTION, whatever collection its line names.
    #[arg(required = true, num_args = 1..=2, value_name = "FILE")]
    pub words: Vec<String>,
    /// Entries per write request; a batch also ends at 4 MiB of keys and values.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch: u32,
    /// Report lines that do not parse and go on, instead of stopping at the first.
    #[arg(long)]
    pub skip_bad: bool,
    /// Give every imported value this time to live, in seconds (exports hold no TTLs).
    #[arg(long, value_name = "SECONDS")]
    pub ttl: Option<f64>,
    /// Read and check every line, write nothing (no node is contacted).
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs `dhrt import`; the summary goes to stderr.
pub fn run(args: &ImportArgs, target: &Target) -> Result<(), Box<dyn std::error::Error>> {
    let (into, path) = match args.words.as_slice() {
        [path] => (None, path.as_str()),
        [collection, path] => (Some(collection.as_str()), path.as_str()),
        _ => return Err("usage: dhrt import [COLLECTION] FILE".into()),
    };
    if let Some(c) = into {
        validate_collection(c)?;
    }
    let ttl = match args.ttl {
        None => None,
        Some(s) => match Duration::try_from_secs_f64(s) {
            Ok(ttl) if !ttl.is_zero() => Some(ttl),
            _ => return Err(format!("--ttl {s}: give a positive number of seconds").into()),
        },
    };
    let (input, len): (Box<dyn BufRead + Send>, Option<u64>) = if path == "-" {
        (Box::new(BufReader::new(std::io::stdin())), None)
    } else {
        let file = File::open(path).map_err(|e| format!("cannot open {path}: {e}"))?;
        let len = file.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
        (Box::new(BufReader::with_capacity(1 << 20, file)), len)
    };
    // Lines are read on this thread while the connection's tasks run on the worker.
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    runtime.block_on(async {
        let client = if args.dry_run { None } else { Some(target.connect().await?) };
        let mut import = Import {
            client,
            consistency: target.consistency,
            ttl,
            max_items: args.batch as usize,
            batch: Batch::default(),
            tally: Tally::new(),
            bar: progress("import", len),
            skipped: 0,
        };
        let result = import.read_all(input, path, into, args.skip_bad).await;
        import.bar.finish_and_clear();
        let verb = if args.dry_run { "checked (dry run, nothing written)" } else { "imported" };
        let mut summary = import.tally.summary(verb, "into");
        match import.skipped {
            0 => {}
            1 => summary.push_str(", 1 bad line skipped"),
            n => summary.push_str(&format!(", {n} bad lines skipped")),
        }
        match result {
            Ok(()) => {
                eprintln!("{summary}");
                Ok(())
            }
            Err(e) => Err(format!("{e}\n{summary}").into()),
        }
    })
}

/// Consecutive entries of one collection, not yet written.
#[derive(Default)]
struct Batch {
    collection: String,
    items: Vec<(Bytes, Bytes)>,
    keys: HashSet<Bytes>,
    bytes: usize,
    first_line: u64,
    last_line: u64,
}

struct Import {
    /// `None` for a dry run.
    client: Option<Client>,
    consistency: Consistency,
    ttl: Option<Duration>,
    max_items: usize,
    batch: Batch,
    tally: Tally,
    bar: ProgressBar,
    skipped: u64,
}

impl Import {
    /// Reads every line of `input` (named `path` in errors), writing batches as they
    /// fill; entries go to `into` when given, else to their line's collection.
    async fn read_all(
        &mut self,
        mut input: Box<dyn BufRead + Send>,
        path: &str,
        into: Option<&str>,
        skip_bad: bool,
    ) -> Result<(), String> {
        let mut line = Vec::new();
        let mut number = 0u64;
        loop {
            line.clear();
            let read = (&mut input)
                .take(MAX_LINE + 1)
                .read_until(b'\n', &mut line)
                .map_err(|e| format!("cannot read {path}: {e}"))?;
            if read == 0 {
                break;
            }
            number += 1;
            self.bar.inc(read as u64);
            let entry = if line.len() as u64 > MAX_LINE {
                Err(format!("longer than {} MiB: is this a dhrt export?", MAX_LINE >> 20))
            } else {
                let text = line.strip_suffix(b"\n").unwrap_or(&line);
                let text = text.strip_suffix(b"\r").unwrap_or(text);
                if text.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                jsonl::read_line(text).and_then(|e| match into.map(String::from).or(e.collection) {
                    Some(c) => Ok((c, e.key, e.value)),
                    None => Err("the line names no \"collection\": add one, or give it to all \
                                 lines: dhrt import COLLECTION FILE"
                        .into()),
                })
            };
            match entry {
                Ok((collection, key, value)) => self.add(number, collection, key, value).await?,
                Err(why) if skip_bad && line.len() as u64 <= MAX_LINE => {
                    self.skipped += 1;
                    self.bar.suspend(|| eprintln!("line {number} skipped: {why}"));
                }
                Err(why) => {
                    self.flush().await?;
                    return Err(format!(
                        "line {number}: {why}\nimport stopped: the entries of the lines before \
                         it were written, nothing after it"
                    ));
                }
            }
        }
        self.flush().await
    }

    /// Adds an entry read from line `number`, writing the batch first when the entry
    /// does not belong in it.
    async fn add(
        &mut self,
        number: u64,
        collection: String,
        key: Bytes,
        value: Bytes,
    ) -> Result<(), String> {
        let b = &self.batch;
        let ends = !b.items.is_empty()
            && (b.collection != collection
                || b.items.len() >= self.max_items
                || b.bytes + key.len() + value.len() > BATCH_BYTES
                || b.keys.contains(&key));
        if ends {
            self.flush().await?;
        }
        let b = &mut self.batch;
        if b.items.is_empty() {
            b.collection = collection;
            b.first_line = number;
        }
        b.last_line = number;
        b.bytes += key.len() + value.len();
        b.keys.insert(key.clone());
        b.items.push((key, value));
        Ok(())
    }

    /// Writes the batch (counts it, for a dry run).
    async fn flush(&mut self) -> Result<(), String> {
        if self.batch.items.is_empty() {
            return Ok(());
        }
        let Batch { collection, items, bytes, first_line, last_line, .. } =
            std::mem::take(&mut self.batch);
        let n = items.len();
        if let Some(client) = &self.client {
            client.set_many(&collection, items, self.consistency, self.ttl).await.map_err(|e| {
                format!(
                    "lines {first_line}-{last_line} ({n} entries of {collection}) could not be \
                     written: {e}\nimport stopped: the entries of the lines before them were \
                     written, some of theirs may have been, nothing after them"
                )
            })?;
        }
        self.tally.add(&collection, n, bytes);
        self.bar.set_message(format!("{} entries", self.tally.entries));
        Ok(())
    }
}
