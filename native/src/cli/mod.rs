//! The `dhrt` command line's subcommands, one file each.

pub mod bench;
pub mod cluster;
pub mod collection;
pub mod config;
pub mod data;
pub mod remove;
pub mod repl;
pub mod serve;
pub mod token;
pub mod transfer;
pub mod words;
