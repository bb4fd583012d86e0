//! TLS for dhrt, in one place: the PEM files a node is given, the rustls configurations
//! of its port, of its links to peers and of clients, and the listener that speaks TLS
//! on the port.
//!
//! - A node started with `--tls-cert` / `--tls-key` speaks only TLS on its port
//!   (`https://`, `wss://`): [`server_config`] and [`TlsListener`]. Handshakes run one
//!   task per connection, each bounded by [`HANDSHAKE_TIMEOUT`], at most
//!   [`MAX_HANDSHAKES`] at once, so a slow or silent client never holds up the others.
//! - With `--tls-client-auth`, the port asks every connection for a certificate signed
//!   by the cluster CA (`--tls-ca`). Presenting one is optional at the TLS layer, so
//!   clients (the CLI, Python, browsers) need none; a peer link (`/v1/peer`) that did
//!   not present a verified certificate is refused ([`peer_certified`],
//!   [`refuse_uncertified_peer`]).
//! - A node's links to its peers ([`peer_client_config`]) verify the peer against the
//!   cluster CA and present the node's own certificate as the client certificate.
//! - Clients ([`client_config`]) verify nodes against a CA file, or the public roots
//!   (webpki-roots) when none is given.
//!
//! Every configuration names the ring provider explicitly ([`provider`]): dhrt never
//! installs a process-wide default that could clash with another library in the same
//! process (the Python extension shares its process with whatever the program loads).

use crate::server::security::{SecurityOptions, TlsFiles};
use axum::{
    extract::{connect_info::Connected, ConnectInfo},
    http::{request::Parts, StatusCode},
    response::{IntoResponse, Response},
    serve::IncomingStream,
};
use rustls::{
    crypto::CryptoProvider,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    server::WebPkiClientVerifier,
    ClientConfig, RootCertStore, ServerConfig,
};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};
use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinSet,
};
use tokio_rustls::{server::TlsStream, TlsAcceptor};

/// How long a connection may take to complete its TLS handshake before it is dropped,
/// unless set otherwise ([`TlsListener::handshake_timeout`], `--tls-handshake-timeout`).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most TLS handshakes in progress at once; further connections wait in the kernel's
/// accept queue until one finishes.
pub const MAX_HANDSHAKES: usize = 256;

/// Why a TLS file or configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds no PEM section of the kind wanted.
    #[error(
        "{path}: no {what} found; expected a PEM file with a \"-----BEGIN {marker}-----\" section"
    )]
    Missing {
        /// The file.
        path: PathBuf,
        /// What was looked for, in words.
        what: &'static str,
        /// The PEM label expected.
        marker: &'static str,
    },
    /// The file is not valid PEM, or a certificate or key in it cannot be used.
    #[error("{path}: {detail}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// The cryptography every dhrt TLS configuration uses: rustls's ring provider.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source })
}

fn malformed(path: &Path, detail: impl std::fmt::Display) -> TlsError {
    TlsError::Malformed { path: path.to_path_buf(), detail: detail.to_string() }
}

/// The certificates in the PEM file at `path` (a chain: the node's certificate first).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| malformed(path, format!("not a valid PEM file ({e})")))?;
    if certs.is_empty() {
        return Err(TlsError::Missing {
            path: path.into(),
            what: "certificate",
            marker: "CERTIFICATE",
        });
    }
    Ok(certs)
}

/// The private key in the PEM file at `path` (PKCS#8, PKCS#1 RSA or SEC1 EC).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            TlsError::Missing { path: path.into(), what: "private key", marker: "PRIVATE KEY" }
        }
        e => malformed(path, format!("not a valid PEM file ({e})")),
    })
}

/// The CA certificates in the PEM file at `path`, as trust roots.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| malformed(path, format!("a certificate cannot be a trust root: {e}")))?;
    }
    Ok(roots)
}

/// The public roots (webpki-roots): what browsers trust.
pub fn public_roots() -> RootCertStore {
    RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() }
}

fn roots_or_public(ca: Option<&Path>) -> Result<RootCertStore, TlsError> {
    match ca {
        Some(path) => load_roots(path),
        None => Ok(public_roots()),
    }
}

/// The configuration of a node's port: its certificate and key from `files`; with
/// `client_auth`, certificates signed by the CA are asked for (but not required: see
/// [`peer_certified`]).
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| malformed(&files.cert, e))?;
    let builder = if files.client_auth {
        let ca = files.ca.as_deref().ok_or_else(|| {
            malformed(&files.cert, "--tls-client-auth needs the cluster CA: give it with --tls-ca")
        })?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(load_roots(ca)?), provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| malformed(ca, format!("cannot verify client certificates: {e}")))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        malformed(&files.key, format!("the key does not go with {}: {e}", files.cert.display()))
    })?;
    // WebSockets upgrade over HTTP/1.1; browsers would otherwise try HTTP/2.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The configuration of a node's links to its peers: the peer is verified against the
/// cluster CA (the public roots without one), and this node presents its own
/// certificate when the peer asks for one. A node certificate therefore serves both
/// ends: made for the node's address, with the `serverAuth` and `clientAuth` uses.
pub fn peer_client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = roots_or_public(files.ca.as_deref())?;
    let certs = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| malformed(&files.cert, e))?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|e| {
            malformed(&files.key, format!("the key does not go with {}: {e}", files.cert.display()))
        })?;
    Ok(Arc::new(config))
}

/// Opens TLS over `tcp` to the node at `addr` (`host:port`, `[v6]:port`) with `config`:
/// the node's certificate must name the host.
pub async fn connect(
    tcp: tokio::net::TcpStream,
    addr: &str,
    config: Arc<ClientConfig>,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("{addr}: {e}"))?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))
}

/// The configuration of a client: nodes are verified against the CA in `ca`, or the
/// public roots when `None`.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = roots_or_public(ca)?;
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| malformed(ca.unwrap_or(Path::new("the TLS settings")), e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Who is on the other end of a connection to the node's port: what the handlers can
/// ask through axum's `ConnectInfo<Remote>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remote {
    /// The remote address.
    pub addr: SocketAddr,
    /// The connection presented a client certificate, verified against the cluster CA.
    pub certified: bool,
}

/// Whether the connection of a request presented a client certificate that verified
/// against the cluster CA (always false on a port without TLS or without
/// `--tls-client-auth`).
pub fn peer_certified(parts: &Parts) -> bool {
    parts.extensions.get::<ConnectInfo<Remote>>().is_some_and(|c| c.0.certified)
}

/// With mutual TLS on, a `/v1/peer` request whose connection did not present a
/// verified certificate: the 403 to answer with, before any upgrade.
pub fn refuse_uncertified_peer(security: &SecurityOptions, parts: &Parts) -> Option<Response> {
    let required = security.tls.as_ref().is_some_and(|t| t.client_auth);
    if !required || peer_certified(parts) {
        return None;
    }
    let message = "peer links to this node need a client certificate signed by the cluster CA \
                   (--tls-client-auth); give the connecting node --tls-cert/--tls-key made by \
                   that CA";
    Some((StatusCode::FORBIDDEN, message).into_response())
}

/// The node's port without TLS: TCP with Nagle's algorithm off (answers and replica
/// messages are small frames written as they are ready).
pub struct PlainListener(pub TcpListener);

impl axum::serve::Listener for PlainListener {
    type Io = TcpStream;
    type Addr = Remote;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((tcp, addr)) => {
                    nodelay(&tcp);
                    return (tcp, Remote { addr, certified: false });
                }
                Err(e) => accept_failed(e).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Remote { addr: self.0.local_addr()?, certified: false })
    }
}

impl Connected<IncomingStream<'_, PlainListener>> for Remote {
    fn connect_info(stream: IncomingStream<'_, PlainListener>) -> Self {
        *stream.remote_addr()
    }
}

/// The node's port with TLS: accepts TCP connections and hands on those whose
/// handshake completed. Each handshake is its own task, bounded in time
/// ([`HANDSHAKE_TIMEOUT`] unless set) and in number ([`MAX_HANDSHAKES`]); a failed one is dropped.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, Remote)>>,
    timeout: Duration,
}

impl TlsListener {
    /// TLS with `config` on `tcp`.
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> Self {
        TlsListener {
            tcp,
            acceptor: TlsAcceptor::from(config),
            handshakes: JoinSet::new(),
            timeout: HANDSHAKE_TIMEOUT,
        }
    }

    /// Drops connections whose handshake takes longer than `timeout`.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    addr: SocketAddr,
    timeout: Duration,
) -> Option<(TlsStream<TcpStream>, Remote)> {
    match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => {
            // With client certificates optional, one that was presented has been
            // verified, or the handshake would have failed.
            let certified = tls.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
            Some((tls, Remote { addr, certified }))
        }
        Ok(Err(e)) => {
            tracing::debug!(remote = %addr, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(remote = %addr, "TLS handshake timed out");
            None
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = Remote;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let room = self.handshakes.len() < MAX_HANDSHAKES;
            tokio::select! {
                accepted = self.tcp.accept(), if room => match accepted {
                    Ok((tcp, addr)) => {
                        nodelay(&tcp);
                        let acceptor = self.acceptor.clone();
                        self.handshakes.spawn(handshake(acceptor, tcp, addr, self.timeout));
                    }
                    Err(e) => accept_failed(e).await,
                },
                Some(done) = self.handshakes.join_next() => {
                    if let Ok(Some(conn)) = done {
                        return conn;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Remote { addr: self.tcp.local_addr()?, certified: false })
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Remote {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        *stream.remote_addr()
    }
}

fn nodelay(tcp: &TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
    }
}

/// An accept that failed: a connection that went away is nothing; running out of file
/// descriptors or memory is waited out (as axum's own listener does).
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept a connection");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_malformed_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent.pem");
        let err = load_certs(&missing).unwrap_err().to_string();
        assert!(err.contains("absent.pem") && err.contains("cannot read"), "{err}");

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\n!!!not base64\n").unwrap();
        let err = load_certs(&garbage).unwrap_err().to_string();
        assert!(err.contains("garbage.pem") && err.contains("PEM"), "{err}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "nothing here\n").unwrap();
        let err = load_key(&empty).unwrap_err().to_string();
        assert!(err.contains("empty.pem") && err.contains("private key"), "{err}");
        let err = load_roots(&empty).unwrap_err().to_string();
        assert!(err.contains("empty.pem") && err.contains("certificate"), "{err}");
    }
}
