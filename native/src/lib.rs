//! dhrt's native crate: the node server (`dhrt serve`), the Rust client
//! ([`client::Client`]) and the pieces of the `dhrt` command line.

pub mod client;
pub mod resp;
pub mod server;
