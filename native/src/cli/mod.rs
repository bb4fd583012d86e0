//! The `dhrt` command line's subcommands, one file each.

pub mod bench;
pub mod data;
pub mod serve;
