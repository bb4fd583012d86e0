//! The node's security settings, in one place: who may be a peer (the cluster secret,
//! mutual TLS), who may be a client (tokens), TLS on the port, which web origins may
//! talk to the node, and the secure-by-default rule that ties them together.
//!
//! `docs/security.md` is the user's guide and the threat model. The pieces that enforce
//! these settings live beside what they guard: the peer handshake in
//! [`super::peer_auth`], TLS in [`crate::tls`], origins in
//! [`super::http::origin`], tokens in [`super::auth`].

use std::{fmt, net::IpAddr, path::PathBuf, sync::Arc};

/// A secret read from a file: its bytes, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<[u8]>);

impl Secret {
    /// Shortest secret accepted, in bytes (after trimming whitespace).
    pub const MIN_LEN: usize = 16;

    /// A secret from `bytes`; refused when shorter than [`Secret::MIN_LEN`].
    pub fn new(bytes: &[u8]) -> Result<Secret, String> {
        if bytes.len() < Self::MIN_LEN {
            return Err(format!(
                "the secret is {} bytes long; use at least {} random bytes (for example: head -c 32 /dev/urandom | base64 > FILE)",
                bytes.len(),
                Self::MIN_LEN
            ));
        }
        Ok(Secret(bytes.into()))
    }

    /// Reads the secret in `path`, trimmed of surrounding whitespace (a trailing newline
    /// is not part of it).
    pub fn from_file(path: &std::path::Path) -> Result<Secret, String> {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let text = bytes.trim_ascii();
        Secret::new(text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The secret's bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// TLS on the node's port, from PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The node's certificate chain (PEM).
    pub cert: PathBuf,
    /// The node's private key (PEM).
    pub key: PathBuf,
    /// The cluster CA (PEM) that peers' certificates are verified against (and clients'
    /// when `client_auth` is on); without it, the public roots.
    pub ca: Option<PathBuf>,
    /// Mutual TLS: peer links must present a certificate signed by `ca`.
    pub client_auth: bool,
}

/// Everything about trust a node is started with.
#[derive(Debug, Clone, Default)]
pub struct SecurityOptions {
    /// The secret every member proves it holds when a peer link opens
    /// (`--cluster-secret-file`). Without it, peer links are not authenticated: only
    /// for a cluster on one machine's loopback.
    pub cluster_secret: Option<Secret>,
    /// TLS on the port (`--tls-cert`, `--tls-key`, `--tls-ca`, `--tls-client-auth`).
    pub tls: Option<TlsFiles>,
    /// A file holding the bootstrap admin token (`--admin-token-file`). When set,
    /// clients must present a token on every request.
    pub admin_token_file: Option<PathBuf>,
    /// Web origins (`https://app.example.com`) allowed besides the node's own
    /// (`--allow-origin`): WebSocket upgrades, CORS and state-changing requests.
    pub allow_origins: Vec<String>,
    /// `/metrics` answers without a token even when tokens are required
    /// (`--metrics-public`, for a Prometheus that cannot send one).
    pub metrics_public: bool,
    /// Start on a non-loopback address without peer authentication or client tokens
    /// (`--insecure`); warned about at every start.
    pub insecure: bool,
}

impl SecurityOptions {
    /// Whether clients must present a token.
    pub fn tokens_required(&self) -> bool {
        self.admin_token_file.is_some()
    }

    /// Whether peers must prove the cluster secret (or a certificate under the CA).
    pub fn peers_authenticated(&self) -> bool {
        self.cluster_secret.is_some()
            || self.tls.as_ref().is_some_and(|t| t.client_auth && t.ca.is_some())
    }

    /// Secure by default: a node listening on `host` that other machines can reach
    /// must authenticate its peers and its clients, unless `insecure`. `Ok(Some(..))`
    /// is a warning to print at start.
    pub fn check_exposure(&self, host: &str) -> Result<Option<String>, String> {
        if is_loopback(host) {
            return Ok(None);
        }
        let mut missing = Vec::new();
        if !self.peers_authenticated() {
            missing.push("peer authentication (--cluster-secret-file FILE)");
        }
        if !self.tokens_required() {
            missing.push("client tokens (--admin-token-file FILE)");
        }
        if missing.is_empty() {
            return Ok(None);
        }
        let what = missing.join(" and ");
        if self.insecure {
            Ok(Some(format!(
                "INSECURE: listening on {host} without {what}: anyone who can reach this port can join the cluster and read or change every key"
            )))
        } else {
            Err(format!(
                "refusing to listen on {host} without {what}: anyone who can reach the port could join the cluster and read or change every key. Give them (docs/security.md), listen on 127.0.0.1, or pass --insecure to run exposed anyway"
            ))
        }
    }
}

/// Whether `host` (an IP address or a name) only accepts connections from this machine.
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised() {
        for host in ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["0.0.0.0", "::", "10.0.0.1", "example.com", "192.168.1.1"] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn exposed_without_security_is_refused_unless_insecure() {
        let mut opts = SecurityOptions::default();
        assert_eq!(opts.check_exposure("127.0.0.1"), Ok(None));
        let err = opts.check_exposure("0.0.0.0").unwrap_err();
        assert!(err.contains("--cluster-secret-file") && err.contains("--admin-token-file"));
        opts.insecure = true;
        assert!(opts.check_exposure("0.0.0.0").unwrap().unwrap().contains("INSECURE"));
        opts.insecure = false;
        opts.cluster_secret = Some(Secret::new(&[7; 32]).unwrap());
        opts.admin_token_file = Some("admin.token".into());
        assert_eq!(opts.check_exposure("0.0.0.0"), Ok(None));
    }

    #[test]
    fn short_secrets_are_refused_and_secrets_are_not_printed() {
        assert!(Secret::new(b"short").is_err());
        let s = Secret::new(&[1; 32]).unwrap();
        assert_eq!(format!("{s:?}"), "Secret(..)");
    }
}
