//! The `dhrt` command line's subcommands, one file each.

pub mod data;
pub mod serve;
