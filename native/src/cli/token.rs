//! `dhrt token create|list|revoke`: managing the cluster's client tokens (admin).
//!
//! Each subcommand is one call through [`dhrt::client::Client`] with the command's
//! `--token` (an admin token: the bootstrap one of `--admin-token-file`, or one created
//! with `--role admin`). `create` prints the new token once, on its own line on stdout,
//! so `dhrt token create --role read > reader.token` keeps just the token; what was
//! stored goes to stderr.

use super::data::Target;
use clap::{Args, Subcommand};
use dhrt_core::auth::{Role, TokenInfo};

/// `dhrt token ...`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token and print it (the only time it is shown).
    ///
    /// Example: dhrt token create --role write --collections users,logs.* --note ingest
    Create {
        /// What the token may do: read (get, scan, watch, sync), write (read, plus set
        /// and del) or admin (everything, tokens and collection drops included).
        #[arg(long)]
        role: Role,
        /// The collections it covers, comma-separated: names, or prefixes followed by *
        /// (logs.*). Every collection when omitted; not with --role admin.
        #[arg(long, value_delimiter = ',')]
        collections: Vec<String>,
        /// Who or what the token is for (shown by `dhrt token list`).
        #[arg(long, default_value = "")]
        note: String,
    },
    /// List every token of the cluster (ids, roles, collections, notes; never secrets).
    List,
    /// Revoke a token by its id: every node refuses it within seconds.
    Revoke {
        /// The token's id (16 hex digits, as `dhrt token list` shows).
        id: String,
    },
}

/// Runs `dhrt token ...` against `--node`.
pub fn run(args: &TokenArgs, target: &Target) -> Result<(), Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let client = target.connect().await?;
        match &args.command {
            TokenCommand::Create { role, collections, note } => {
                let (token, info) =
                    client.token_create(*role, collections.clone(), note.clone()).await?;
                println!("{token}");
                eprintln!("created {}; it is not shown again", describe(&info));
            }
            TokenCommand::List => {
                let tokens = client.token_list().await?;
                if tokens.is_empty() {
                    eprintln!("no tokens (create one with `dhrt token create --role read`)");
                }
                for t in &tokens {
                    println!("{}", row(t));
                }
            }
            TokenCommand::Revoke { id } => {
                client.token_revoke(id).await?;
                eprintln!("revoked {id}: every node refuses it within seconds");
            }
        }
        Ok(())
    })
}

/// One line of `dhrt token list`: id, role, collections, creation time, note.
fn row(t: &TokenInfo) -> String {
    let collections =
        if t.collections.is_empty() { "*".to_string() } else { t.collections.join(",") };
    format!("{}  {:<5}  {:<24}  {}  {}", t.id, t.role, collections, created(t.created_ms), t.note)
}

fn describe(t: &TokenInfo) -> String {
    let scope = if t.collections.is_empty() {
        "every collection".to_string()
    } else {
        t.collections.join(", ")
    };
    format!("token {} ({}, {scope})", t.id, t.role)
}

/// A creation time as seconds since the Unix epoch, with the age in words.
fn created(ms: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let age = now.saturating_sub(ms) / 1000;
    let ago = match age {
        0..60 => format!("{age} s ago"),
        60..3600 => format!("{} min ago", age / 60),
        3600..86400 => format!("{} h ago", age / 3600),
        _ => format!("{} days ago", age / 86400),
    };
    format!("{ago:>12}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_show_the_scope_and_never_a_secret() {
        let t = TokenInfo {
            id: "0123456789abcdef".into(),
            role: Role::Read,
            collections: vec!["logs.*".into(), "users".into()],
            created_ms: 0,
            note: "grafana".into(),
        };
        let r = row(&t);
        assert!(r.starts_with("0123456789abcdef  read "), "{r}");
        assert!(r.contains("logs.*,users") && r.ends_with("grafana"), "{r}");
        assert!(row(&TokenInfo { collections: vec![], ..t }).contains("  *  "));
    }
}
