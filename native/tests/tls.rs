//! TLS on the node's port, on peer links and in the client: certificates are made here
//! with rcgen (a cluster CA, node certificates for 127.0.0.1 and localhost), nodes run
//! in this process on 127.0.0.1 port 0.

use dhrt::{
    client::{Client, ClientError, ConnectOptions},
    server::{
        self,
        launch::{launch, Storage},
        security::{SecurityOptions, TlsFiles},
        ServeOptions, Server,
    },
};
use dhrt_core::{proto::client::Consistency, wire};
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A CA and the PEM files it made, in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
    ca_params: CertificateParams,
    ca_key: KeyPair,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "dhrt test cluster CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        Pki { dir, ca_params, ca_key }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A node certificate (127.0.0.1, localhost; server and client use) named `name`:
    /// `(cert, key)` paths.
    fn node(&self, name: &str) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let cert_path = self.dir.path().join(format!("{name}.pem"));
        let key_path = self.dir.path().join(format!("{name}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    fn files(&self, name: &str, client_auth: bool) -> TlsFiles {
        let (cert, key) = self.node(name);
        TlsFiles { cert, key, ca: Some(self.ca()), client_auth }
    }
}

async fn start(tls: Option<TlsFiles>, join: Vec<String>) -> Server {
    let opts = ServeOptions {
        port: 0,
        join,
        security: SecurityOptions { tls, ..SecurityOptions::default() },
        ..ServeOptions::default()
    };
    let bound = server::bind(&opts).await.expect("bind");
    launch(bound, &opts, &Storage::Memory, None).expect("launch").server
}

fn with_ca(ca: &Path) -> ConnectOptions {
    ConnectOptions { tls_ca: Some(ca.to_path_buf()), ..ConnectOptions::default() }
}

async fn connect(addr: &str, options: ConnectOptions) -> Result<Client, ClientError> {
    Client::connect_with_options(&[addr], Duration::from_secs(5), options).await
}

/// A TLS client stream to `addr`, verified against `ca`.
async fn tls_stream(
    addr: &str,
    ca: &Path,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let config = dhrt::tls::client_config(Some(ca)).unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.unwrap()
}

/// Reads what the peer sends until it closes, at most 5 s.
async fn read_all<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn a_tls_node_answers_https_and_wss_clients_that_trust_its_ca() {
    let pki = Pki::new();
    let mut node = start(Some(pki.files("node-1", false)), Vec::new()).await;
    let addr = node.local_addr.to_string();

    let mut https = tls_stream(&addr, &pki.ca()).await;
    https
        .write_all(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_all(&mut https).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    for url in [format!("wss://{addr}"), format!("https://{addr}"), addr.clone()] {
        let client =
            connect(&url, with_ca(&pki.ca())).await.unwrap_or_else(|e| panic!("{url}: {e}"));
        client.set("t", "k", url.as_str(), Consistency::One, None).await.unwrap();
        let got = client.get("t", "k", Consistency::One).await.unwrap();
        assert_eq!(got.as_deref(), Some(url.as_bytes()));
    }
    node.stop().await;
}

#[tokio::test]
async fn clients_without_the_ca_or_without_tls_are_refused() {
    let pki = Pki::new();
    let mut node = start(Some(pki.files("node-1", false)), Vec::new()).await;
    let addr = node.local_addr.to_string();

    // The public roots do not include the cluster CA.
    let err = connect(&format!("wss://{addr}"), ConnectOptions::default()).await.err();
    assert!(
        matches!(&err, Some(ClientError::Connection(m)) if m.contains("certificate")),
        "{err:?}"
    );

    // A plain WebSocket (and plain HTTP) to a TLS port gets nowhere.
    let err = connect(&format!("ws://{addr}"), ConnectOptions::default()).await.err();
    assert!(matches!(err, Some(ClientError::Connection(_))), "{err:?}");
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tcp.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_all(&mut tcp).await;
    assert!(!answer.contains("HTTP/1.1 200"), "{answer}");
    node.stop().await;
}

#[tokio::test]
async fn tls_nodes_with_mutual_tls_form_a_cluster_and_replicate() {
    let pki = Pki::new();
    let mut first = start(Some(pki.files("node-1", true)), Vec::new()).await;
    let seed = first.local_addr.to_string();
    let mut others = Vec::new();
    for name in ["node-2", "node-3"] {
        others.push(start(Some(pki.files(name, true)), vec![seed.clone()]).await);
    }
    let client = connect(&format!("wss://{seed}"), with_ca(&pki.ca())).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ring = client.ring().await.unwrap();
        if ring.iter().filter(|m| m.status == "alive").count() == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "no 3-node ring over TLS: {ring:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every replica must store the write: the peer links work, over TLS.
    client.set("t", "k", "v", Consistency::All, None).await.unwrap();
    for node in &others {
        let one = connect(&format!("wss://{}", node.local_addr), with_ca(&pki.ca())).await.unwrap();
        let stats = one.stats(Some(&node.local_addr.to_string())).await.unwrap();
        assert!(stats.keys >= 1, "{stats:?}");
    }
    for node in others.iter_mut() {
        node.stop().await;
    }
    first.stop().await;
}

/// Opens a peer link (`/v1/peer`) to `addr` with `config`: its HTTP status (101 when
/// upgraded), or the error.
async fn peer_link(addr: &str, config: Arc<rustls::ClientConfig>) -> Result<u16, String> {
    let url = format!("wss://{addr}/v1/peer?node=42&version={}", wire::VERSION);
    let connect = tokio_tungstenite::connect_async_tls_with_config(
        url,
        None,
        true,
        Some(tokio_tungstenite::Connector::Rustls(config)),
    );
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok((_, response))) => Ok(response.status().as_u16()),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
            Ok(response.status().as_u16())
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

#[tokio::test]
async fn with_client_auth_peer_links_need_a_certificate_from_the_cluster_ca() {
    let pki = Pki::new();
    let mut node = start(Some(pki.files("node-1", true)), Vec::new()).await;
    let addr = node.local_addr.to_string();

    // No client certificate: refused before the upgrade.
    let anonymous = dhrt::tls::client_config(Some(&pki.ca())).unwrap();
    assert_eq!(peer_link(&addr, anonymous).await, Ok(403));

    // A certificate from another CA: the handshake fails, or the link is refused.
    let other = Pki::new();
    let mut stranger = other.files("stranger", true);
    stranger.ca = Some(pki.ca());
    let stranger = dhrt::tls::peer_client_config(&stranger).unwrap();
    let outcome = peer_link(&addr, stranger).await;
    assert!(outcome.is_err() || outcome == Ok(403), "{outcome:?}");

    // A certificate from the cluster CA: upgraded.
    let member = dhrt::tls::peer_client_config(&pki.files("node-2", true)).unwrap();
    assert_eq!(peer_link(&addr, member).await, Ok(101));

    // Clients need no certificate.
    let client = connect(&format!("wss://{addr}"), with_ca(&pki.ca())).await.unwrap();
    client.set("t", "k", "v", Consistency::One, None).await.unwrap();
    node.stop().await;
}

#[tokio::test]
async fn a_missing_or_malformed_pem_file_is_named_at_start() {
    let pki = Pki::new();
    let good = pki.files("node-1", false);
    let broken = pki.dir.path().join("broken.pem");
    std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n").unwrap();
    let absent = pki.dir.path().join("absent.key");
    let cases = [
        (TlsFiles { cert: broken.clone(), ..good.clone() }, "broken.pem"),
        (TlsFiles { key: absent.clone(), ..good.clone() }, "absent.key"),
        (TlsFiles { ca: Some(broken.clone()), client_auth: true, ..good.clone() }, "broken.pem"),
        (TlsFiles { key: pki.ca(), ..good.clone() }, "ca.pem"),
    ];
    for (files, name) in cases {
        let opts = ServeOptions {
            port: 0,
            security: SecurityOptions { tls: Some(files), ..SecurityOptions::default() },
            ..ServeOptions::default()
        };
        let bound = server::bind(&opts).await.unwrap();
        let err = launch(bound, &opts, &Storage::Memory, None).err().expect("refused").to_string();
        assert!(err.contains(name), "{name}: {err}");
    }
}

/// Runs the `dhrt` CLI with `args` (at most 60 s): its exit code, stdout and stderr.
async fn cli(args: Vec<String>, env_ca: Option<PathBuf>) -> (Option<i32>, String, String) {
    tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_dhrt"));
        cmd.args(&args).env_remove("DHRT_NODE").env_remove("DHRT_TLS_CA");
        if let Some(ca) = env_ca {
            cmd.env("DHRT_TLS_CA", ca);
        }
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_speaks_tls_with_node_wss_and_tls_ca() {
    let pki = Pki::new();
    let mut node = start(Some(pki.files("node-1", false)), Vec::new()).await;
    let wss = format!("wss://{}", node.local_addr);
    let ca = pki.ca().display().to_string();
    let args = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<_>>();

    let (code, _, err) =
        cli(args(&["set", "hello", "world", "--node", &wss, "--tls-ca", &ca]), None).await;
    assert_eq!(code, Some(0), "{err}");
    // The CA from the environment; a bare HOST:PORT with a CA speaks TLS.
    let bare = node.local_addr.to_string();
    let (code, out, err) = cli(args(&["get", "hello", "--node", &bare]), Some(pki.ca())).await;
    assert_eq!((code, out.trim()), (Some(0), "world"), "{err}");
    // `export --all` reads each member's /v1/stats over https.
    let (code, out, err) =
        cli(args(&["export", "--all", "--node", &wss, "--tls-ca", &ca]), None).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("hello") || out.contains("aGVsbG8"), "{out}");
    // Without the CA the node's certificate is not trusted.
    let (code, _, err) = cli(args(&["get", "hello", "--node", &wss]), None).await;
    assert_ne!(code, Some(0));
    assert!(err.contains("certificate"), "{err}");
    node.stop().await;
}

#[tokio::test]
async fn unfinished_tls_handshakes_and_request_heads_are_closed_at_their_timeouts() {
    let pki = Pki::new();
    let limits = dhrt::server::limits::Limits {
        tls_handshake_timeout: Duration::from_secs(1),
        header_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let opts = ServeOptions {
        port: 0,
        security: SecurityOptions { tls: Some(pki.files("n1", false)), ..Default::default() },
        limits,
        ..ServeOptions::default()
    };
    let bound = server::bind(&opts).await.expect("bind");
    let node = launch(bound, &opts, &Storage::Memory, None).expect("launch").server;
    let addr = node.local_addr.to_string();
    let closed = |n: Result<Result<usize, std::io::Error>, tokio::time::error::Elapsed>| {
        matches!(n, Ok(Ok(0) | Err(_)))
    };
    // A connection that never starts its TLS handshake.
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(20), silent.read(&mut buf)).await;
    assert!(closed(n), "the node closes a connection that never completes its handshake");
    // A TLS connection that never finishes its request head.
    let mut slow = tls_stream(&addr, &pki.ca()).await;
    slow.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(20), slow.read_to_end(&mut rest)).await;
    assert!(n.is_ok(), "the node closes a connection whose request head never ends");
    // A complete request is answered.
    let mut ok = tls_stream(&addr, &pki.ca()).await;
    let req = b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    ok.write_all(req).await.unwrap();
    let answer = read_all(&mut ok).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Reads from `stream` until `want` bytes came, at most 10 s.
async fn read_exactly<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, want: usize) -> Vec<u8> {
    let mut got = vec![0; want];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut got))
        .await
        .expect("the replies in time")
        .expect("the replies");
    got
}

#[tokio::test]
async fn the_redis_port_speaks_tls_when_the_node_does() {
    let pki = Pki::new();
    let opts = ServeOptions {
        port: 0,
        resp_port: Some(0),
        security: SecurityOptions {
            tls: Some(pki.files("node-1", false)),
            ..SecurityOptions::default()
        },
        ..ServeOptions::default()
    };
    let bound = server::bind(&opts).await.expect("bind");
    let resp = bound.resp_addr.expect("a Redis port").to_string();
    let mut node = launch(bound, &opts, &Storage::Memory, None).expect("launch").server;

    let mut redis = tls_stream(&resp, &pki.ca()).await;
    redis
        .write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
        .await
        .unwrap();
    let want = b"+OK\r\n$5\r\nhello\r\n";
    assert_eq!(read_exactly(&mut redis, want.len()).await, want);

    // A pipeline of many chunks' worth (the connection hands its requests to the node
    // through the inbox, a chunk at a time): every reply, in order.
    let mut pipeline = Vec::new();
    let mut expected = Vec::new();
    for i in 0..2000 {
        let (key, value) = (format!("key{i}"), format!("value{i}"));
        pipeline.extend(
            format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
                key.len(),
                value.len()
            )
            .bytes(),
        );
        pipeline.extend(format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).bytes());
        expected.extend(format!("+OK\r\n${}\r\n{value}\r\n", value.len()).bytes());
    }
    redis.write_all(&pipeline).await.unwrap();
    let got = read_exactly(&mut redis, expected.len()).await;
    assert!(got == expected, "the replies of a pipeline over TLS, in order");

    // A plain client gets no Redis reply from a TLS port.
    let mut tcp = tokio::net::TcpStream::connect(&resp).await.unwrap();
    tcp.write_all(b"*1\r\n$4\r\nPING\r\n").await.unwrap();
    let answer = read_all(&mut tcp).await;
    assert!(!answer.contains("PONG"), "{answer}");
    node.stop().await;
}
