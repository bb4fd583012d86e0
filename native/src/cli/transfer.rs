//! `dhrt export` and `dhrt import`: a cluster's data to a file and back.
//!
//! Export scans collections page by page through [`dhrt::client::Client::scan`] and
//! writes every live entry as one line of JSON ([`jsonl`]); import reads such lines and
//! writes them back in batches with [`dhrt::client::Client::set_many`]. Both go through
//! any node with the usual `--node` and `--consistency`, so a backup of one cluster can
//! be restored into another of any size. Bytes round-trip exactly; what an export does
//! not hold is said in `docs/operations.md` ("Backup and restore"): TTLs (a scan does not
//! return them) and a point in time (a scan sees writes made while it runs, or not).
//!
//! Progress shows on stderr when it is a terminal; the last line on stderr is a summary
//! (entries, bytes of keys and values, collections, seconds). Any failure exits non-zero.

pub mod export;
pub mod import;
pub mod jsonl;

use indicatif::{ProgressBar, ProgressStyle};
use std::{
    collections::BTreeSet,
    io::IsTerminal,
    time::{Duration, Instant},
};

/// What an export or import moved so far.
#[derive(Debug)]
pub struct Tally {
    /// Entries.
    pub entries: u64,
    /// Bytes of keys and values.
    pub bytes: u64,
    collections: BTreeSet<String>,
    started: Instant,
}

impl Tally {
    /// Nothing yet; the clock starts now.
    pub fn new() -> Tally {
        Tally { entries: 0, bytes: 0, collections: BTreeSet::new(), started: Instant::now() }
    }

    /// Counts a collection, also when it turns out to hold nothing.
    pub fn collection(&mut self, name: &str) {
        if !self.collections.contains(name) {
            self.collections.insert(name.to_string());
        }
    }

    /// Counts `n` entries of `bytes` bytes (keys and values) of `collection`.
    pub fn add(&mut self, collection: &str, n: usize, bytes: usize) {
        self.collection(collection);
        self.entries += n as u64;
        self.bytes += bytes as u64;
    }

    /// `"{verb} N entries (B bytes of keys and values) {preposition} C collections in S s"`.
    pub fn summary(&self, verb: &str, preposition: &str) -> String {
        let plural =
            |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        format!(
            "{verb} {} ({} of keys and values) {preposition} {} in {:.2} s",
            plural(self.entries, "entry", "entries"),
            plural(self.bytes, "byte", "bytes"),
            plural(self.collections.len() as u64, "collection", "collections"),
            self.elapsed().as_secs_f64()
        )
    }

    /// Time since the tally began.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Default for Tally {
    fn default() -> Self {
        Tally::new()
    }
}

/// A progress bar on stderr, hidden unless stderr is a terminal: of `len` bytes when the
/// input's size is known, else a spinner with a count of entries.
pub fn progress(what: &str, len: Option<u64>) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (bar, template) = match len {
        Some(n) => (
            ProgressBar::new(n),
            format!("{what} [{{elapsed_precise}}] {{bar:40}} {{bytes}}/{{total_bytes}} {{msg}}"),
        ),
        None => {
            (ProgressBar::no_length(), format!("{what} {{spinner}} [{{elapsed_precise}}] {{msg}}"))
        }
    };
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_what_moved() {
        let mut t = Tally::new();
        t.collection("empty");
        t.add("users", 2, 10);
        t.add("users", 1, 5);
        let s = t.summary("exported", "from");
        assert!(
            s.starts_with(
                "exported 3 entries (15 bytes of keys and values) from 2 collections in "
            ),
            "{s}"
        );
        let mut t = Tally::new();
        t.add("one", 1, 1);
        assert!(t
            .summary("imported", "into")
            .starts_with("imported 1 entry (1 byte of keys and values) into 1 collection in "));
    }
}
