//! The data commands: `dhrt set/get/del [COLLECTION] KEY [VALUE]`, `dhrt scan`,
//! `dhrt stats`, `dhrt ring` — each a [`dhrt::client::Client`] call against `--node`.
//! The REPL parses the same words ([`Command::parse_words`]).

use bytes::Bytes;
use clap::Args;
use dhrt::client::{Client, ClientError, ConnectOptions};
use dhrt_core::proto::client::{Consistency, NodeStats, DEFAULT_COLLECTION};
use std::{io::Write, time::Duration};

/// Where and how the data commands talk to dhrt.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The node to talk to (HOST:PORT, or wss://HOST:PORT for a node with TLS); any
    /// member of a cluster will do.
    #[arg(long, global = true, env = "DHRT_NODE", default_value = "127.0.0.1:7453")]
    pub node: String,
    /// The CA (PEM file) the nodes' TLS certificates are verified against; implies TLS
    /// (wss://). Without it, wss:// nodes are verified against the public roots.
    #[arg(long, global = true, env = "DHRT_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Consistency: default, one, quorum, all, or a number of replicas.
    #[arg(long, short = 'c', global = true, default_value = "default")]
    pub consistency: Consistency,
    /// Seconds to wait for an answer.
    #[arg(long, global = true, default_value_t = 10.0)]
    pub timeout: f64,
    /// The token to present (`dhrt token create` prints one), when the node requires
    /// tokens. Prefer the environment variable: a command line is visible to other users.
    #[arg(long, global = true, env = "DHRT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl Target {
    /// Connects to the node.
    pub async fn connect(&self) -> Result<Client, ClientError> {
        Client::connect_with_options(&[self.node.as_str()], self.timeout(), self.options()).await
    }

    /// How every connection to a node of the cluster is made: its token, and TLS when
    /// `--node` is `wss://` or a CA is given ([`ConnectOptions::for_seeds`]).
    pub fn options(&self) -> ConnectOptions {
        let options = ConnectOptions {
            token: self.token.clone(),
            tls_ca: self.tls_ca.clone(),
            ..ConnectOptions::default()
        };
        options.for_seeds(&[self.node.as_str()])
    }

    /// How long to wait for an answer (`--timeout`, kept between 10 ms and an hour).
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout.clamp(0.01, 3600.0))
    }
}

/// One data command, as typed on the command line or in the REPL.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Write a value.
    Set { collection: String, key: String, value: String, ttl: Option<f64> },
    /// Read a value.
    Get { collection: String, key: String },
    /// Delete a key.
    Del { collection: String, key: String },
    /// List a collection.
    Scan { collection: String, prefix: Option<String>, limit: Option<usize> },
    /// The node's counts and state.
    Stats,
    /// The ring's members.
    Ring,
}

/// A command line that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

impl Command {
    /// `set [COLLECTION] KEY VALUE`, `get [COLLECTION] KEY`, `del [COLLECTION] KEY`,
    /// `scan [COLLECTION] [PREFIX]`, `stats`, `ring` — the collection defaults to
    /// `default`.
    pub fn parse_words(words: &[String]) -> Result<Command, Usage> {
        Self::parse_words_in(words, DEFAULT_COLLECTION)
    }

    /// As [`Command::parse_words`], with `collection` where the words name none (the
    /// REPL's `use COLLECTION`).
    pub fn parse_words_in(words: &[String], collection: &str) -> Result<Command, Usage> {
        let (verb, args) = words.split_first().ok_or_else(|| Usage("empty command".into()))?;
        let arity = |want: &str| Usage(format!("usage: {verb} {want}"));
        let coll = |c: &str| c.to_string();
        let default = || collection.to_string();
        match verb.to_ascii_lowercase().as_str() {
            "set" | "put" => match args {
                [k, v] => Ok(Command::Set {
                    collection: default(),
                    key: k.clone(),
                    value: v.clone(),
                    ttl: None,
                }),
                [c, k, v] => Ok(Command::Set {
                    collection: coll(c),
                    key: k.clone(),
                    value: v.clone(),
                    ttl: None,
                }),
                _ => Err(arity("[COLLECTION] KEY VALUE")),
            },
            "get" => match args {
                [k] => Ok(Command::Get { collection: default(), key: k.clone() }),
                [c, k] => Ok(Command::Get { collection: coll(c), key: k.clone() }),
                _ => Err(arity("[COLLECTION] KEY")),
            },
            "del" | "delete" | "rm" => match args {
                [k] => Ok(Command::Del { collection: default(), key: k.clone() }),
                [c, k] => Ok(Command::Del { collection: coll(c), key: k.clone() }),
                _ => Err(arity("[COLLECTION] KEY")),
            },
            "scan" | "ls" => match args {
                [] => Ok(Command::Scan { collection: default(), prefix: None, limit: None }),
                [c] => Ok(Command::Scan { collection: coll(c), prefix: None, limit: None }),
                [c, p] => {
                    Ok(Command::Scan { collection: coll(c), prefix: Some(p.clone()), limit: None })
                }
                _ => Err(arity("[COLLECTION] [PREFIX]")),
            },
            "stats" if args.is_empty() => Ok(Command::Stats),
            "ring" if args.is_empty() => Ok(Command::Ring),
            "stats" | "ring" => Err(Usage(format!("{verb} takes no arguments"))),
            other => Err(Usage(format!(
                "unknown command {other:?}: try set, get, del, scan, stats, ring (or help)"
            ))),
        }
    }

    /// The collection the command reads or writes, if any.
    pub fn collection(&self) -> Option<&str> {
        match self {
            Command::Set { collection, .. }
            | Command::Get { collection, .. }
            | Command::Del { collection, .. }
            | Command::Scan { collection, .. } => Some(collection),
            Command::Stats | Command::Ring => None,
        }
    }

    /// Runs the command, printing its result to `out`. A missing key is an error
    /// ([`Outcome::NotFound`]) so scripts can tell.
    pub async fn run(
        &self,
        client: &Client,
        consistency: Consistency,
        out: &mut dyn Write,
    ) -> Result<Outcome, ClientError> {
        let io = |e: std::io::Error| ClientError::Protocol(format!("cannot write output: {e}"));
        match self {
            Command::Set { collection, key, value, ttl } => {
                let ttl = ttl.map(|s| Duration::from_secs_f64(s.max(0.0)));
                client.set(collection, key, value, consistency, ttl).await?;
                writeln!(out, "OK").map_err(io)?;
            }
            Command::Get { collection, key } => {
                match client.get(collection, key, consistency).await? {
                    Some(v) => {
                        out.write_all(&v).map_err(io)?;
                        writeln!(out).map_err(io)?;
                    }
                    None => return Ok(Outcome::NotFound(format!("{collection}/{key}"))),
                }
            }
            Command::Del { collection, key } => {
                client.del(collection, key, consistency).await?;
                writeln!(out, "OK").map_err(io)?;
            }
            Command::Scan { collection, prefix, limit } => {
                let prefix = prefix.as_ref().map(|p| Bytes::copy_from_slice(p.as_bytes()));
                let mut cursor = None;
                let mut printed = 0usize;
                let max = limit.unwrap_or(usize::MAX);
                loop {
                    let page =
                        client.scan(collection, cursor, prefix.clone(), 1000, consistency).await?;
                    for (k, v) in page.items {
                        if printed >= max {
                            return Ok(Outcome::Done);
                        }
                        out.write_all(&k).map_err(io)?;
                        out.write_all(b"\t").map_err(io)?;
                        out.write_all(&v).map_err(io)?;
                        writeln!(out).map_err(io)?;
                        printed += 1;
                    }
                    cursor = page.cursor;
                    if cursor.is_none() {
                        break;
                    }
                }
            }
            Command::Stats => {
                let stats = client.stats(None).await?;
                write!(out, "{}", render_stats(&stats)).map_err(io)?;
                // Per collection, estimated across the cluster; a token that covers no
                // collection sees none, and an older node has no such operation.
                if let Ok(collections) = client.collection_list().await {
                    write!(out, "{}", render_collections(&collections)).map_err(io)?;
                }
            }
            Command::Ring => {
                for m in client.ring().await? {
                    let labels: Vec<String> =
                        m.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    let labels = if labels.is_empty() {
                        String::new()
                    } else {
                        format!("  {}", labels.join(","))
                    };
                    writeln!(
                        out,
                        "{:016x}  {:<21}  {:<8}  {} tokens{labels}{}",
                        m.id.0,
                        m.addr,
                        m.status,
                        m.tokens.len(),
                        if m.joining {
                            "  (joining: a pending replica)"
                        } else if m.leaving && m.status == "dead" {
                            "  (being removed: its ranges go to their next owners)"
                        } else if m.leaving {
                            "  (leaving: handing its ranges off)"
                        } else {
                            ""
                        }
                    )
                    .map_err(io)?;
                }
            }
        }
        Ok(Outcome::Done)
    }
}

/// How a command ended, besides errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It did what was asked.
    Done,
    /// The key read does not exist.
    NotFound(String),
}

/// How long ago the wall-clock time `unix_ms` was, for people ("12 s ago").
fn ago(unix_ms: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let secs = now.saturating_sub(unix_ms) / 1000;
    match secs {
        0..120 => format!("{secs} s ago"),
        120..7_200 => format!("{} min ago", secs / 60),
        _ => format!("{} h ago", secs / 3600),
    }
}

/// A node's stats as lines of `name: value`.
pub fn render_stats(s: &NodeStats) -> String {
    let m = &s.members;
    let sync = &s.sync;
    let progress = |p: Option<dhrt_core::proto::client::Progress>| {
        p.map_or("-".to_string(), |p| {
            format!("{}/{} sessions, {} entries", p.done, p.total, p.entries)
        })
    };
    format!(
        "node:            {:016x} ({})\n\
         keys:            {} ({} tombstones, {} bytes, {} collections)\n\
         members:         {} alive, {} syncing, {} suspect, {} dead, {} left\n\
         anti-entropy:    {} running, {} completed, {} failed, {} entries received, {} cleaned\n\
         last full sync:  {}\n\
         hand-off:        {}\n\
         leaving:         {}\n\
         hints:           {} pending, {} delivered\n\
         tombstone GC:    {} purged, {} expired values\n\
         storage:         {}\n\
         clock:           {}\n",
        s.node.0,
        s.status,
        s.keys,
        s.tombstones,
        s.bytes,
        s.collections,
        m.alive,
        m.syncing,
        m.suspect,
        m.dead,
        m.left,
        sync.running,
        sync.completed,
        sync.failed,
        sync.entries_received,
        sync.cleaned,
        sync.last_full_sync_ms.map_or("never".into(), ago),
        progress(sync.handoff),
        progress(sync.leaving),
        s.hints_pending,
        s.hints_delivered,
        s.tombstones_purged,
        s.expired,
        render_storage(&s.storage),
        render_clock(&s.clock),
    )
}

/// The collections block of `dhrt stats`: one line a collection, estimated across the
/// cluster, with the settings it has.
fn render_collections(collections: &[dhrt_core::proto::client::CollectionView]) -> String {
    let mut out = String::new();
    if collections.is_empty() {
        return out;
    }
    out.push_str("collections:\n");
    for c in collections {
        let s = &c.settings;
        let mut set = Vec::new();
        if let Some(level) = s.consistency {
            set.push(format!("consistency {level}"));
        }
        if let Some(ttl) = s.ttl_ms {
            set.push(format!("ttl {} s", ttl as f64 / 1000.0));
        }
        if let Some(n) = s.max_keys {
            set.push(format!("max {n} keys"));
        }
        if let Some(n) = s.max_bytes {
            set.push(format!("max {n} bytes"));
        }
        let layout = &c.layout.current;
        if !layout.select.is_empty() {
            set.push(format!("on {}", layout.select_text()));
        }
        if let Some(zone) = &layout.zone_label {
            set.push(format!("zones by {zone}"));
        }
        if let Some(m) = &c.layout.moving {
            let n = m.to.replicas.map_or("the cluster's N".to_string(), |n| format!("N={n}"));
            set.push(format!("moving to {n} on {}: {}", m.to.select_text(), m.phase.as_str()));
        }
        let set = if set.is_empty() { String::new() } else { format!(" ({})", set.join(", ")) };
        out.push_str(&format!(
            "  {:<20} {:>10} keys {:>12} bytes  {}, N={}{set}\n",
            c.name, c.keys, c.bytes, c.placement, c.replicas
        ));
    }
    out
}

/// `offset +3 ms from peers (max 500 ms)`, or why the node refuses to coordinate writes.
fn render_clock(c: &dhrt_core::proto::client::ClockStats) -> String {
    let ignored = if c.ahead_ignored > 0 {
        format!(", {} peer timestamps ignored as too far ahead", c.ahead_ignored)
    } else {
        String::new()
    };
    match (&c.skewed, c.offset_ms) {
        (Some(why), _) => format!("SKEWED, writes refused: {why}{ignored}"),
        (None, Some(o)) => {
            format!("offset {o:+} ms from peers (max {} ms){ignored}", c.max_offset_ms)
        }
        (None, None) => format!("no peer estimate yet{ignored}"),
    }
}

/// `ok, 1.2 GB free`, `full (new data refused; deletes and drops still work), 3 MB free`
/// or `failing: <error>`.
fn render_storage(h: &dhrt_core::store::StorageHealth) -> String {
    let free = h.free_bytes.map(|b| format!(", {b} bytes free")).unwrap_or_default();
    match (&h.error, h.full) {
        (Some(e), _) => format!("failing: {e}{free}"),
        (None, true) => format!("full (new data refused; deletes and drops still work){free}"),
        (None, false) => format!("ok{free}"),
    }
}

/// Options of the single-shot data commands.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// [COLLECTION] KEY [VALUE]
    #[arg(required = true, num_args = 1..=3)]
    pub words: Vec<String>,
    /// For set: seconds until the value expires.
    #[arg(long)]
    pub ttl: Option<f64>,
}

/// Runs one data command given as `verb` + words.
pub fn run(
    verb: &str,
    words: &[String],
    ttl: Option<f64>,
    target: &Target,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut all = vec![verb.to_string()];
    all.extend_from_slice(words);
    let mut command = Command::parse_words(&all)?;
    if let Command::Set { ttl: t, .. } = &mut command {
        *t = ttl;
    }
    run_command(command, target)
}

/// Runs one parsed data command against `target`, printing to stdout.
pub fn run_command(command: Command, target: &Target) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let client = target.connect().await?;
        let mut stdout = std::io::stdout().lock();
        match command.run(&client, target.consistency, &mut stdout).await? {
            Outcome::Done => Ok(()),
            Outcome::NotFound(what) => Err(format!("not found: {what}").into()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn the_collection_is_optional() {
        assert_eq!(
            Command::parse_words(&words("get k")).unwrap(),
            Command::Get { collection: "default".into(), key: "k".into() }
        );
        assert_eq!(
            Command::parse_words_in(&words("del k"), "users").unwrap(),
            Command::Del { collection: "users".into(), key: "k".into() }
        );
        assert_eq!(
            Command::parse_words_in(&words("scan"), "users").unwrap(),
            Command::Scan { collection: "users".into(), prefix: None, limit: None }
        );
        assert_eq!(
            Command::parse_words_in(&words("set other k v"), "users").unwrap().collection(),
            Some("other")
        );
        assert_eq!(Command::parse_words(&words("ring")).unwrap().collection(), None);
    }

    #[test]
    fn wrong_arity_shows_the_usage() {
        let err = |line: &str| Command::parse_words(&words(line)).unwrap_err().0;
        assert_eq!(err("set k"), "usage: set [COLLECTION] KEY VALUE");
        assert_eq!(err("scan a b c"), "usage: scan [COLLECTION] [PREFIX]");
        assert_eq!(err("stats now"), "stats takes no arguments");
        assert!(err("nope").starts_with("unknown command \"nope\""));
    }
}
