//! `dhrt` — the command-line entry point.
//!
//! `dhrt serve` runs a node; `dhrt join ADDR` runs one that joins a cluster; `dhrt
//! cluster` runs several on this machine; the data commands and `dhrt repl` talk to a
//! running node, `dhrt export`/`dhrt import` copy a cluster's data out and back; `dhrt
//! demo` shows anti-entropy in process and `dhrt position` where a key lives on the
//! ring. Each subcommand lives in `cli/`.

mod cli;
mod demo;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use dhrt_core::hash::Placement;
use std::process::ExitCode;

/// mimalloc instead of the system allocator: a node allocates and frees small buffers
/// for every request (frames, keys, values), and glibc's malloc/free/consolidate were
/// a fifth of a node's time under load (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// dhrt: a masterless, real-time key/value database.
#[derive(Debug, Parser)]
#[command(name = "dhrt", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    target: cli::data::Target,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node: one port serves clients (WebSocket, HTTP) and peers. Persisted in
    /// --data-dir unless --memory. Ctrl-C (or SIGTERM/SIGHUP/SIGQUIT) leaves gracefully.
    Serve(cli::serve::ServeArgs),
    /// Run a node that joins the cluster of the node at ADDR (same as serve --join ADDR).
    Join {
        /// Any member's HOST:PORT.
        addr: String,
        #[command(flatten)]
        serve: cli::serve::ServeArgs,
    },
    /// Write a value: set [COLLECTION] KEY VALUE (collection `default` when omitted).
    Set(cli::data::DataArgs),
    /// Read a value: get [COLLECTION] KEY. Exits with 1 when the key does not exist.
    Get(cli::data::DataArgs),
    /// Delete a key: del [COLLECTION] KEY.
    Del(cli::data::DataArgs),
    /// List a collection's live keys and values (tab-separated), in ring order.
    Scan {
        /// The collection.
        #[arg(default_value = "default")]
        collection: String,
        /// Only keys starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// At most this many.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Print a node's counts and the state of its background work.
    Stats,
    /// Print the ring's members as the node sees them.
    Ring,
    /// An interactive shell on --node, with the data commands' syntax.
    ///
    /// set/get/del/scan/stats/ring as on the command line (words with spaces go in
    /// "double quotes"), plus `use COLLECTION` (the session's collection), `consistency
    /// LEVEL`, `watch [COLLECTION] [PREFIX]` (changes as they happen) and `help`. Tab
    /// completes command and collection names; history is kept in ~/.dhrt_history.
    ///
    /// With stdin from a pipe or a file it runs the lines as a script, printing results
    /// only, and exits non-zero if any command failed:
    /// printf 'use users\nset alice admin\nget alice\n' | dhrt repl
    Repl,
    /// Run a local cluster of N node processes, for trying dhrt out.
    ///
    /// Node i listens on --base-port + i - 1; the first is the seed every other joins.
    /// Prints how to reach each node and forwards their warnings and errors to stderr,
    /// prefixed [node-i] (everything with --verbose). Ctrl-C, SIGTERM, SIGHUP or
    /// SIGQUIT makes every node leave gracefully; a node still running after
    /// --leave-timeout (plus 5 s) is killed.
    ///
    /// Example: dhrt cluster --nodes 5 --memory, then dhrt repl --node 127.0.0.1:7455
    Cluster(cli::cluster::ClusterArgs),
    /// Run replicas in this process that diverge (writes and deletes on different
    /// replicas while they are partitioned), then reconcile them with Merkle
    /// anti-entropy, printing what every session cost.
    Demo(demo::DemoArgs),
    /// Load-test dhrt (the node at --node) or Redis (--target redis): ops/s and
    /// p50/p99/p99.9 latency of SET/GET over many pipelined connections.
    Bench(cli::bench::BenchArgs),
    /// Write every live entry of collections to a file (or stdout) as JSON Lines.
    ///
    /// One line per entry: {"collection":"users","key":"alice","value":"admin"}; keys and
    /// values that are not UTF-8 are base64, marked "key_encoding"/"encoding": "base64".
    /// TTLs are not exported. `dhrt import` writes the lines back.
    ///
    /// Example: dhrt export --all --out backup.jsonl --node 10.0.0.1:7453
    Export(cli::transfer::export::ExportArgs),
    /// Write the entries of a `dhrt export` file (or stdin) into the cluster, in batches.
    ///
    /// Stops at the first line that does not parse (naming it; the lines before it are
    /// written, none after), or skips such lines with --skip-bad.
    ///
    /// Example: dhrt import backup.jsonl --node 10.0.0.9:7453 -c all
    Import(cli::transfer::import::ImportArgs),
    /// Manage client tokens (admin): create, list, revoke.
    ///
    /// A node started with --admin-token-file requires a token from every client
    /// (--token or DHRT_TOKEN). Example:
    /// DHRT_TOKEN=$(cat admin.token) dhrt token create --role read --collections logs.*
    Token(cli::token::TokenArgs),
    /// Collections and their settings, agreed by every node: default consistency,
    /// default time to live, quotas.
    ///
    /// Example: dhrt collection create sessions --ttl 3600 --max-keys 1000000
    Collection(cli::collection::CollectionArgs),
    /// Remove a member that is dead for good (admin), so its ranges get their copies back.
    ///
    /// Only a member the cluster declared dead (`dhrt ring` shows it `dead`) can be
    /// removed. The other owners of its ranges hand them to the members that inherit
    /// them, then it is announced `left`; the cluster serves throughout. To replace the
    /// machine, remove the dead member, then start the new one with --join.
    /// Example: dhrt remove 3f2a9c0d11e2b7a4 --node 10.0.0.1:7453
    Remove(cli::remove::RemoveArgs),
    /// Salvage a damaged data dir of a stopped node, printing exactly what was dropped.
    ///
    /// Keeps every write-ahead log record that checks out (before and after damage),
    /// moves empty or unreadable files to <data-dir>/lost+found/ (nothing is deleted).
    /// Example: dhrt repair --data-dir /var/lib/dhrt
    Repair {
        /// The data dir of the node (stop the node first).
        #[arg(long, default_value = "./dhrt-data")]
        data_dir: std::path::PathBuf,
    },
    /// Print the ring position of a key. Collections named `ordered.*` place keys by
    /// their first 8 bytes (key order); every other collection hashes them.
    Position {
        /// The collection the key belongs to (e.g. `users`, `ordered.events`).
        collection: String,
        /// The key (UTF-8).
        key: String,
    },
}

/// Logs to stderr; `DHRT_LOG` sets the filter (e.g. `debug`, `dhrt=trace`), default `info`.
fn init_logs() {
    let filter = std::env::var("DHRT_LOG").unwrap_or_else(|_| "info".into());
    if dhrt::server::launch::init_logs(&filter).is_err() {
        let _ = dhrt::server::launch::init_logs("info");
    }
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    init_logs();
    let result: Result<(), Box<dyn std::error::Error>> = match cli.command {
        Command::Serve(args) => cli::config::resolve(args, &matches)
            .map_err(Into::into)
            .and_then(|args| cli::serve::run(&args)),
        Command::Join { addr, serve } => {
            cli::config::resolve(serve, &matches).map_err(Into::into).and_then(|mut serve| {
                serve.join.insert(0, addr);
                cli::serve::run(&serve)
            })
        }
        Command::Set(a) => cli::data::run("set", &a.words, a.ttl, &cli.target),
        Command::Get(a) => cli::data::run("get", &a.words, a.ttl, &cli.target),
        Command::Del(a) => cli::data::run("del", &a.words, a.ttl, &cli.target),
        Command::Scan { collection, prefix, limit } => cli::data::run_command(
            cli::data::Command::Scan { collection, prefix, limit },
            &cli.target,
        ),
        Command::Stats => cli::data::run_command(cli::data::Command::Stats, &cli.target),
        Command::Ring => cli::data::run_command(cli::data::Command::Ring, &cli.target),
        Command::Repl => cli::repl::run(&cli.target),
        Command::Cluster(args) => cli::cluster::run(&args),
        Command::Demo(args) => demo::run(&args).map_err(Into::into),
        Command::Bench(args) => cli::bench::run(&args, &cli.target),
        Command::Export(args) => cli::transfer::export::run(&args, &cli.target),
        Command::Import(args) => cli::transfer::import::run(&args, &cli.target),
        Command::Token(args) => cli::token::run(&args, &cli.target),
        Command::Collection(args) => cli::collection::run(&args, &cli.target),
        Command::Remove(args) => cli::remove::run(&args, &cli.target),
        Command::Repair { data_dir } => match dhrt::store::repair::repair(&data_dir) {
            Ok(report) => {
                print!("{report}");
                Ok(())
            }
            Err(e) => Err(format!("{}: {e}", data_dir.display()).into()),
        },
        Command::Position { collection, key } => {
            if let Err(e) = dhrt_core::store::validate_collection(&collection) {
                Err(e.into())
            } else {
                let placement = Placement::of(&collection);
                let pos = placement.position(&collection, key.as_bytes());
                println!("{pos} ({pos:#018x}, {})", placement.as_str());
                Ok(())
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
