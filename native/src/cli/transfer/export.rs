//! `dhrt export [COLLECTION...] [--all] [--out FILE]`: every live entry of the named
//! collections as JSON Lines ([`super::jsonl`]), on stdout or in a file.
//!
//! Each collection is read with paged scans, cursor after cursor, at `--consistency`.
//! A file is written as `FILE.partial` and renamed to `FILE` only once complete and
//! synced, so `FILE` is never a cut-off export; on failure the partial file is removed.
//!
//! The client protocol has no request that lists collections, so `--all` asks every
//! alive member for its `GET /v1/stats` (which lists the collections the node holds)
//! and exports the union: every collection with an entry on a reachable replica. A
//! member that cannot be asked fails the export rather than silently missing one. The
//! cluster's own collections (`_dhrt.*`, such as its tokens) are left out: no client may
//! read them. With `--token`, the stats requests carry it (`Authorization: Bearer`).

use super::{jsonl, progress, Tally};
use crate::cli::data::Target;
use bytes::Bytes;
use clap::Args;
use dhrt::client::Client;
use dhrt_core::{
    auth::is_reserved,
    node::scan::MAX_PAGE,
    proto::client::{Consistency, DEFAULT_COLLECTION},
    store::validate_collection,
};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use indicatif::ProgressBar;
use std::{
    collections::BTreeSet,
    fs::File,
    io::{BufWriter, IsTerminal, Write},
    path::{Path, PathBuf},
    sync::Arc,
};

/// Options of `dhrt export`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// The collections to export, in this order (`default` when none is named).
    #[arg(value_name = "COLLECTION", conflicts_with = "all")]
    pub collections: Vec<String>,
    /// Export every collection of the cluster (those listed by the alive members'
    /// `GET /v1/stats`).
    #[arg(long)]
    pub all: bool,
    /// Only keys starting with this (UTF-8).
    #[arg(long)]
    pub prefix: Option<String>,
    /// Write to FILE (via FILE.partial, renamed when complete) instead of stdout; `-`
    /// is stdout.
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Runs `dhrt export`: the lines on stdout or in `--out`, the summary on stderr.
pub fn run(args: &ExportArgs, target: &Target) -> Result<(), Box<dyn std::error::Error>> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    runtime.block_on(async {
        let client = target.connect().await?;
        let collections = if args.all {
            all_collections(&client, target).await?
        } else if args.collections.is_empty() {
            vec![DEFAULT_COLLECTION.to_string()]
        } else {
            args.collections.clone()
        };
        for c in &collections {
            validate_collection(c)?;
        }
        let mut out = Output::open(args.out.as_deref())?;
        let prefix = args.prefix.as_ref().map(|p| Bytes::copy_from_slice(p.as_bytes()));
        let bar = if out.file.is_none() && std::io::stdout().is_terminal() {
            ProgressBar::hidden() // the lines themselves show the progress
        } else {
            progress("export", None)
        };
        let mut tally = Tally::new();
        for c in &collections {
            let before = tally.entries;
            export_collection(&client, c, &prefix, target.consistency, &mut out, &mut tally, &bar)
                .await
                .map_err(|e| {
                    format!(
                        "export stopped in collection {c} after {} of its entries ({} in all): {e}",
                        tally.entries - before,
                        tally.entries
                    )
                })?;
        }
        out.finish()?;
        bar.finish_and_clear();
        eprintln!("{}", tally.summary("exported", "from"));
        Ok(())
    })
}

/// Writes every live entry of `collection` (with `prefix`) to `out`.
async fn export_collection(
    client: &Client,
    collection: &str,
    prefix: &Option<Bytes>,
    consistency: Consistency,
    out: &mut Output,
    tally: &mut Tally,
    bar: &ProgressBar,
) -> Result<(), Box<dyn std::error::Error>> {
    tally.collection(collection);
    let mut cursor = None;
    loop {
        let page =
            client.scan(collection, cursor, prefix.clone(), MAX_PAGE as u32, consistency).await?;
        let mut bytes = 0;
        for (k, v) in &page.items {
            jsonl::write_line(out.writer(), collection, k, v)
                .map_err(|e| format!("cannot write the export: {e}"))?;
            bytes += k.len() + v.len();
        }
        tally.add(collection, page.items.len(), bytes);
        bar.set_message(format!("{collection}: {} entries in all", tally.entries));
        cursor = page.cursor;
        if cursor.is_none() {
            return Ok(());
        }
    }
}

/// Where the lines go: stdout, or a file written beside its final name.
struct Output {
    writer: BufWriter<Box<dyn Write>>,
    /// For a file: the file (to sync), where it is written, where it goes when complete.
    file: Option<(File, PathBuf, PathBuf)>,
}

impl Output {
    /// Stdout for `None` or `-`, else `path` (written as `path.partial`).
    fn open(path: Option<&Path>) -> Result<Output, String> {
        let Some(path) = path.filter(|p| *p != Path::new("-")) else {
            let stdout: Box<dyn Write> = Box::new(std::io::stdout().lock());
            return Ok(Output { writer: BufWriter::with_capacity(1 << 20, stdout), file: None });
        };
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let file = File::create(&partial)
            .map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
        let clone = file.try_clone().map_err(|e| format!("{}: {e}", partial.display()))?;
        Ok(Output {
            writer: BufWriter::with_capacity(1 << 20, Box::new(clone)),
            file: Some((file, partial, path.to_path_buf())),
        })
    }

    fn writer(&mut self) -> &mut dyn Write {
        &mut self.writer
    }

    /// Flushes; a file is synced and takes its final name.
    fn finish(mut self) -> Result<(), String> {
        self.writer.flush().map_err(|e| format!("cannot write the export: {e}"))?;
        if let Some((file, partial, path)) = self.file.take() {
            file.sync_all().map_err(|e| format!("cannot sync {}: {e}", partial.display()))?;
            std::fs::rename(&partial, &path).map_err(|e| {
                format!("cannot rename {} to {}: {e}", partial.display(), path.display())
            })?;
        }
        Ok(())
    }
}

impl Drop for Output {
    /// An export that did not finish leaves no file behind.
    fn drop(&mut self) {
        if let Some((_, partial, _)) = &self.file {
            let _ = std::fs::remove_file(partial);
        }
    }
}

/// The collections of the cluster: the union of what every alive member lists in its
/// `GET /v1/stats`, sorted, without the reserved ones.
async fn all_collections(client: &Client, target: &Target) -> Result<Vec<String>, String> {
    let timeout = target.timeout();
    let options = target.options();
    let tls = if options.tls_for(&target.node) {
        Some(dhrt::tls::client_config(options.tls_ca.as_deref()).map_err(|e| e.to_string())?)
    } else {
        None
    };
    let members = client.ring().await.map_err(|e| format!("cannot read the ring: {e}"))?;
    let mut names = BTreeSet::new();
    for m in members.iter().filter(|m| m.status == "alive") {
        let stats = tokio::time::timeout(
            timeout,
            get_json(&m.addr, "/v1/stats", tls.clone(), target.token.as_deref()),
        )
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
        .map_err(|e| {
            format!(
                "cannot list the collections of {}: {e}; name the collections to export \
                     instead of --all",
                m.addr
            )
        })?;
        let listed = stats["collections"].as_array().map(Vec::as_slice).unwrap_or_default();
        let listed = listed.iter().filter_map(|c| c["name"].as_str());
        names.extend(listed.filter(|name| !is_reserved(name)).map(String::from));
    }
    Ok(names.into_iter().collect())
}

/// `GET path` from the node at `addr` (HOST:PORT), as JSON, presenting `token`; over TLS
/// with `tls`.
async fn get_json(
    addr: &str,
    path: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
    token: Option<&str>,
) -> Result<serde_json::Value, String> {
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    match tls {
        None => get_json_over(stream, addr, path, token).await,
        Some(config) => {
            let stream = dhrt::tls::connect(stream, addr, config).await?;
            get_json_over(stream, addr, path, token).await
        }
    }
}

async fn get_json_over<S>(
    stream: S,
    addr: &str,
    path: &str,
    token: Option<&str>,
) -> Result<serde_json::Value, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut request = hyper::Request::get(path).header(hyper::header::HOST, addr);
    if let Some(token) = token {
        request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    if !status.is_success() {
        return Err(format!("{path} answered {status}: {}", String::from_utf8_lossy(&body)));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{path} is not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_appears_only_once_complete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let mut out = Output::open(Some(&path)).unwrap();
        out.writer().write_all(b"line\n").unwrap();
        assert!(!path.exists());
        drop(out);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "a failed export leaves nothing"
        );

        let mut out = Output::open(Some(&path)).unwrap();
        out.writer().write_all(b"line\n").unwrap();
        out.finish().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"line\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no .partial left");
    }
}
