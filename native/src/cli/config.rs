//! `dhrt serve --config FILE`: the node's settings from a TOML file.
//!
//! Every flag of `dhrt serve` (and `dhrt join`) can be set in the file, under the flag's
//! own name: `port = 7453`, `data-dir = "/var/lib/dhrt"`, `join = ["10.0.0.1:7453"]`.
//! A setting comes from, in order: the command line, the file, the built-in default —
//! so a file can hold a deployment's settings and a flag can still override one of
//! them for one run. Whether a flag was given is clap's [`ValueSource`], not a
//! comparison with the default, so `--port 7453` beats `port = 7500` in the file.
//!
//! The path comes from `--config`, or else the `DHRT_CONFIG` environment variable. A
//! file that cannot be read, is not TOML, has a key that is not a flag or a value of
//! the wrong type is an error naming the file and the key, and the node does not start:
//! a typo must not silently leave a setting at its default.
//!
//! Relative paths in the file (`data-dir`) are relative to the working directory, as
//! they are on the command line. `docs/operations.md` has an example file;
//! `deploy/dhrt.example.toml` lists every key.

use super::serve::ServeArgs;
use clap::{parser::ValueSource, ArgMatches};
use dhrt::{server::handoff::SocketIo, store::Reads};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// A config file that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("config file {}: {message}", path.display())]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it, naming the key where one is at fault.
    pub message: String,
}

/// Declares [`ConfigFile`] with one optional field per flag of [`ServeArgs`], and
/// [`ConfigFile::apply`], which destructures both structs completely: a flag added to
/// `ServeArgs` but not listed here (or the other way round) does not compile.
macro_rules! config_file {
    ($($(#[$doc:meta])* $field:ident: $ty:ty,)*) => {
        /// The settings of a config file: every flag of `dhrt serve`, spelled like the
        /// flag (kebab-case), each optional.
        #[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "kebab-case")]
        pub struct ConfigFile {
            $($(#[$doc])* pub $field: Option<$ty>,)*
        }

        impl ConfigFile {
            /// Sets every field of `args` that is in the file and was not `given` on
            /// the command line (`given` takes the flag's id, its field name).
            pub fn apply(self, args: &mut ServeArgs, given: impl Fn(&str) -> bool) {
                let ConfigFile { $($field),* } = self;
                let ServeArgs { config: _, $($field: _),* } = args;
                $(
                    if let Some(value) = $field {
                        if !given(stringify!($field)) {
                            args.$field = value.into();
                        }
                    }
                )*
            }
        }
    };
}

config_file! {
    /// `--port`.
    port: u16,
    /// `--host`.
    host: String,
    /// `--advertise`.
    advertise: String,
    /// `--data-dir`.
    data_dir: PathBuf,
    /// `--memory`.
    memory: bool,
    /// `--join`, a list of `HOST:PORT`.
    join: Vec<String>,
    /// `--replicas`.
    replicas: usize,
    /// `--label`, a list of `KEY=VALUE`.
    label: Vec<String>,
    /// `--vnodes`.
    vnodes: usize,
    /// `--max-value`, in bytes.
    max_value: usize,
    /// `--leave-timeout`, in seconds.
    leave_timeout: u64,
    /// `--gc-interval`, in seconds.
    gc_interval: u64,
    /// `--min-free-mb`.
    min_free_mb: u64,
    /// `--max-open-files`.
    max_open_files: usize,
    /// `--max-collections`.
    max_collections: usize,
    /// `--cache-mb`.
    cache_mb: u64,
    /// `--reads`: `memory` or `disk`.
    reads: Reads,
    /// `--checkpoint-writes`.
    checkpoint_writes: u64,
    /// `--cluster-secret-file`.
    cluster_secret_file: PathBuf,
    /// `--tls-cert`.
    tls_cert: PathBuf,
    /// `--tls-key`.
    tls_key: PathBuf,
    /// `--tls-ca`.
    tls_ca: PathBuf,
    /// `--tls-client-auth`.
    tls_client_auth: bool,
    /// `--admin-token-file`.
    admin_token_file: PathBuf,
    /// `--allow-origin`, a list of origins.
    allow_origin: Vec<String>,
    /// `--metrics-public`.
    metrics_public: bool,
    /// `--insecure`.
    insecure: bool,
    /// `--max-connections`.
    max_connections: usize,
    /// `--header-timeout`, in seconds.
    header_timeout: u64,
    /// `--tls-handshake-timeout`, in seconds.
    tls_handshake_timeout: u64,
    /// `--inbox-mb`.
    inbox_mb: usize,
    /// `--read-mb`.
    read_mb: usize,
    /// `--read-timeout`, in seconds.
    read_timeout: u64,
    /// `--output-limit-mb`.
    output_limit_mb: usize,
    /// `--watch-lag-mb`.
    watch_lag_mb: usize,
    /// `--output-total-mb`.
    output_total_mb: usize,
    /// `--peer-queue-mb`.
    peer_queue_mb: usize,
    /// `--peer-queue-total-mb`.
    peer_queue_total_mb: usize,
    /// `--hints-mb-per-node`.
    hints_mb_per_node: usize,
    /// `--hints-mb`.
    hints_mb: usize,
    /// `--pending-mb`.
    pending_mb: usize,
    /// `--pending-requests`.
    pending_requests: usize,
    /// `--resp-port`.
    resp_port: u16,
    /// `--resp-db`, a list of `N=COLLECTION`.
    resp_db: Vec<String>,
    /// `--client-io`: `auto`, `uring` or `epoll`.
    client_io: SocketIo,
}

impl ConfigFile {
    /// Parses the text of the file at `path` (named in errors).
    pub fn parse(text: &str, path: &Path) -> Result<ConfigFile, ConfigError> {
        toml::from_str(text)
            .map_err(|e| ConfigError { path: path.to_path_buf(), message: why(&e, text) })
    }

    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_path_buf(),
            message: format!("cannot read it: {e}"),
        })?;
        Self::parse(&text, path)
    }
}

/// What is wrong with `text`, as one line naming the key, then toml's excerpt of the
/// file (the line, with a caret under the fault).
fn why(e: &toml::de::Error, text: &str) -> String {
    let message = e.message().trim_end();
    let rendered = e.to_string();
    // toml renders "TOML parse error at line L, column C", the excerpt, then the message.
    let excerpt = rendered.trim_end().strip_suffix(message).unwrap_or(&rendered).trim_end();
    // A wrong value's span is the value: the key is what precedes `=` on its line.
    let key = e.span().and_then(|span| {
        let before = text.get(..span.start)?;
        let line = &before[before.rfind('\n').map_or(0, |i| i + 1)..];
        let (key, _) = line.split_once('=')?;
        Some(key.trim()).filter(|k| !k.is_empty())
    });
    match key {
        Some(key) => format!("key `{key}`: {message}\n{excerpt}"),
        None => format!("{message}\n{excerpt}"),
    }
}

/// Whether the flag with id `id` was given on the command line (or in its environment
/// variable) rather than left at its default.
fn given_in(matches: &ArgMatches, id: &str) -> bool {
    matches!(
        matches.try_get_raw(id).ok().and_then(|_| matches.value_source(id)),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

/// The settings of a node: `args` as parsed, with what the config file (`--config` or
/// `DHRT_CONFIG`) sets for every flag that `matches` (the command line's, with `serve`
/// or `join` as its subcommand) shows was not given. Without a config file, `args`
/// unchanged.
pub fn resolve(mut args: ServeArgs, matches: &ArgMatches) -> Result<ServeArgs, ConfigError> {
    let Some(path) = args.config.clone() else { return Ok(args) };
    let file = ConfigFile::load(&path)?;
    tracing::info!(path = %path.display(), "settings read from the config file");
    let matches = matches.subcommand().map_or(matches, |(_, sub)| sub);
    file.apply(&mut args, |id| given_in(matches, id));
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches, Parser};

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    /// `dhrt serve ARGS` with `file` as the config file's text.
    fn settings(args: &[&str], file: &str) -> Result<ServeArgs, ConfigError> {
        let matches = Cli::command()
            .try_get_matches_from(std::iter::once("serve").chain(args.iter().copied()));
        let matches = matches.expect("the test's flags parse");
        let parsed = Cli::from_arg_matches(&matches).expect("flags").serve;
        let file = ConfigFile::parse(file, Path::new("dhrt.toml"))?;
        let mut resolved = parsed;
        file.apply(&mut resolved, |id| given_in(&matches, id));
        Ok(resolved)
    }

    #[test]
    fn the_command_line_beats_the_file_which_beats_the_default() {
        let file = "port = 7500\nmemory = true\njoin = [\"10.0.0.1:7453\"]\nvnodes = 8\n";
        let s = settings(&["--port", "7453", "--vnodes", "64"], file).unwrap();
        assert_eq!(s.port, 7453, "a flag equal to the default still wins");
        assert_eq!(s.vnodes, 64);
        assert!(s.memory, "from the file");
        assert_eq!(s.join, vec!["10.0.0.1:7453".to_string()]);
        assert_eq!(s.replicas, 3, "the default");
        assert_eq!(s.data_dir, PathBuf::from("./dhrt-data"));

        let s = settings(&["--join", "a:1", "--join", "b:2", "--memory=false"], file).unwrap();
        assert_eq!(s.port, 7500);
        assert!(!s.memory, "--memory=false beats memory = true");
        assert!(settings(&["--memory"], "memory = false").unwrap().memory);
        assert_eq!(s.join, vec!["a:1".to_string(), "b:2".to_string()], "replaced, not added");
    }

    #[test]
    fn every_key_is_spelled_like_its_flag() {
        let file = r#"
            port = 1
            host = "0.0.0.0"
            advertise = "10.0.0.2:1"
            data-dir = "/var/lib/dhrt"
            memory = true
            join = ["10.0.0.1:7453", "10.0.0.3:7453"]
            replicas = 5
            vnodes = 16
            max-value = 1024
            leave-timeout = 9
            min-free-mb = 0
        "#;
        let s = settings(&[], file).unwrap();
        assert_eq!(
            (s.port, s.host.as_str(), s.advertise.as_deref(), s.data_dir.to_str()),
            (1, "0.0.0.0", Some("10.0.0.2:1"), Some("/var/lib/dhrt"))
        );
        assert!(s.memory);
        assert_eq!(s.join.len(), 2);
        assert_eq!((s.replicas, s.vnodes, s.max_value), (5, 16, 1024));
        assert_eq!((s.leave_timeout, s.min_free_mb), (9, 0));
        // And every long flag but --config is a key of the file.
        for arg in Cli::command().get_arguments() {
            let Some(long) = arg.get_long().filter(|l| *l != "config") else { continue };
            if let Err(e) = ConfigFile::parse(&format!("{long} = []"), Path::new("x")) {
                assert!(!e.message.contains("unknown field"), "--{long}: {e}");
            }
        }
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_key_and_the_file() {
        let err = settings(&[], "port = 7500\ndatadir = \"/x\"\n").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("config file dhrt.toml: unknown field `datadir`"), "{text}");
        assert!(text.contains("line 2"), "{text}");
        assert!(text.contains("`data-dir`"), "the expected keys are listed: {text}");

        let text = settings(&[], "port = \"7500\"\n").unwrap_err().to_string();
        assert!(text.starts_with("config file dhrt.toml: key `port`: invalid type"), "{text}");
        assert!(text.contains("port = \"7500\""), "the key's line is shown: {text}");

        let text = settings(&[], "port = 70000\n").unwrap_err().to_string();
        assert!(text.contains("key `port`"), "{text}");
        let text = settings(&[], "join = [\"a:1\", 2]\n").unwrap_err().to_string();
        assert!(text.contains("key `join`: invalid type: integer `2`"), "{text}");

        let text = settings(&[], "[serve]\nport = 1\n").unwrap_err().to_string();
        assert!(text.contains("unknown field `serve`"), "{text}");

        let text = settings(&[], "port = \n").unwrap_err().to_string();
        assert!(text.contains("line 1"), "not TOML: {text}");
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let err = ConfigFile::load(Path::new("/nonexistent/dhrt.toml")).unwrap_err();
        assert!(err.to_string().starts_with("config file /nonexistent/dhrt.toml: cannot read it"));
    }

    #[test]
    fn the_example_file_lists_every_key() {
        let example = include_str!("../../../deploy/dhrt.example.toml");
        // Every setting in the example is commented out; uncommented, they all parse.
        let uncommented: String = example
            .lines()
            .filter_map(|l| l.strip_prefix("# ").filter(|s| s.contains(" = ")))
            .map(|l| format!("{l}\n"))
            .collect();
        let file = ConfigFile::parse(&uncommented, Path::new("dhrt.example.toml")).unwrap();
        let ConfigFile {
            port,
            host,
            advertise,
            data_dir,
            memory,
            join,
            replicas,
            label,
            vnodes,
            max_value,
            leave_timeout,
            gc_interval,
            min_free_mb,
            max_open_files,
            max_collections,
            cache_mb,
            reads,
            checkpoint_writes,
            cluster_secret_file,
            tls_cert,
            tls_key,
            tls_ca,
            tls_client_auth,
            admin_token_file,
            allow_origin,
            metrics_public,
            insecure,
            max_connections,
            header_timeout,
            tls_handshake_timeout,
            inbox_mb,
            read_mb,
            read_timeout,
            output_limit_mb,
            watch_lag_mb,
            output_total_mb,
            peer_queue_mb,
            peer_queue_total_mb,
            hints_mb_per_node,
            hints_mb,
            pending_mb,
            pending_requests,
            resp_port,
            resp_db,
            client_io,
        } = file;
        assert!(port.is_some() && host.is_some() && advertise.is_some() && data_dir.is_some());
        assert!(memory.is_some() && join.is_some() && replicas.is_some() && vnodes.is_some());
        assert_eq!(label, Some(vec!["zone=eu-1".to_string(), "disk=ssd".to_string()]));
        assert!(max_value.is_some() && leave_timeout.is_some() && min_free_mb.is_some());
        assert_eq!(gc_interval, Some(60));
        assert!(max_open_files.is_some() && max_collections.is_some() && cache_mb.is_some());
        assert_eq!(reads, Some(Reads::Memory));
        assert!(checkpoint_writes.is_some());
        assert!(cluster_secret_file.is_some() && tls_cert.is_some() && tls_key.is_some());
        assert!(tls_ca.is_some() && tls_client_auth.is_some() && admin_token_file.is_some());
        assert!(allow_origin.is_some() && metrics_public.is_some() && insecure.is_some());
        assert!(max_connections.is_some() && header_timeout.is_some());
        assert!(tls_handshake_timeout.is_some() && inbox_mb.is_some() && read_mb.is_some());
        assert!(read_timeout.is_some());
        assert!(output_limit_mb.is_some() && watch_lag_mb.is_some() && output_total_mb.is_some());
        assert!(resp_port.is_some() && resp_db.is_some());
        assert_eq!(client_io, Some(SocketIo::Auto));
        assert!(hints_mb_per_node.is_some() && hints_mb.is_some());
        assert!(peer_queue_mb.is_some() && peer_queue_total_mb.is_some());
        assert!(pending_mb.is_some() && pending_requests.is_some());
    }
}
