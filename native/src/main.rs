//! `dhrt` — the command-line entry point.
//!
//! Today the binary drives the data half of the engine in process: `dhrt demo` runs
//! replicas that diverge and reconcile through Merkle anti-entropy, and `dhrt position`
//! shows where a key lives on the ring. The node server (`dhrt serve`), the client
//! commands and the REPL arrive with the native-node work.

mod demo;

use clap::{Parser, Subcommand};
use dhrt_core::hash::Placement;
use std::process::ExitCode;

/// dhrt: a masterless, real-time key/value database.
#[derive(Debug, Parser)]
#[command(name = "dhrt", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run replicas in this process that diverge (writes and deletes on different
    /// replicas while they are partitioned), then reconcile them with Merkle
    /// anti-entropy, printing what every session cost.
    Demo(demo::DemoArgs),
    /// Print the ring position of a key. Collections named `ordered.*` place keys by
    /// their first 8 bytes (key order); every other collection hashes them.
    Position {
        /// The collection the key belongs to (e.g. `users`, `ordered.events`).
        collection: String,
        /// The key (UTF-8).
        key: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Position { collection, key } => {
            if let Err(e) = dhrt_core::store::validate_collection(&collection) {
                Err(e.into())
            } else {
                let placement = Placement::of(&collection);
                let pos = placement.position(&collection, key.as_bytes());
                let how = match placement {
                    Placement::Hashed => "hashed",
                    Placement::Ordered => "ordered",
                };
                println!("{pos} ({pos:#018x}, {how})");
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
