//! The peer handshake: both ends of a peer link prove they hold the cluster secret, and
//! the sender's node id is bound to that proof, before any frame reaches a node.
//!
//! A node sends to a peer over a WebSocket it opened itself to the peer's `/v1/peer`
//! (see [`super::peers`]). Right after the upgrade, three frames:
//!
//! ```text
//! accepting node                                   connecting node
//!   Challenge { version, node: B, nonce: nB }  ->
//!                                              <-  Hello { node: A, nonce: nA,
//!                                                          proof: MAC(hello | nB | nA | A | B) }
//!   Welcome { proof: MAC(welcome | nA | nB | B | A) } ->
//! ```
//!
//! `MAC` is HMAC-SHA-256 keyed by the cluster secret (`--cluster-secret-file`); the
//! nonces are 32 fresh random bytes from each side, so a recorded handshake cannot be
//! replayed, and each proof names both node ids and its direction, so it cannot be
//! reflected. The accepting node checks the proof in constant time and only then takes
//! `A` as the link's sender: the id in a frame or a URL is never trusted. The connecting
//! node checks the welcome before it sends anything, so it never hands replica data to a
//! node without the secret. A failed or slow handshake ([`TIMEOUT`]) closes the link;
//! nothing of it reaches the node.
//!
//! Without a cluster secret (a cluster on one machine's loopback, the zero-config
//! default) the key is a fixed public string: the handshake still runs, binds the id
//! and refuses a peer that *does* have a secret, but proves nothing else. Browsers are
//! kept off `/v1/peer` by the origin check, and a non-loopback node refuses to start
//! without a secret unless `--insecure` ([`super::security`]).

use super::security::Secret;
use dhrt_core::{wire, NodeId};
use ring::{hmac, rand::SecureRandom};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long a handshake may take, end to end, before the link is closed.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Largest handshake frame accepted.
pub const MAX_FRAME: usize = 1024;

/// The key used when no cluster secret is configured (see the module docs).
const NO_SECRET: &[u8] = b"dhrt: no cluster secret configured";

/// The frames of the handshake (module docs), encoded as [`dhrt_core::wire`] frames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Handshake {
    /// Accepting node to connecting node, first: who it is and a fresh challenge.
    Challenge {
        /// The wire protocol version the accepting node speaks.
        version: u8,
        /// The accepting node's id.
        node: NodeId,
        /// 32 fresh random bytes.
        #[serde(with = "serde_bytes")]
        nonce: Vec<u8>,
    },
    /// Connecting node's answer: who it is, its own challenge, and its proof.
    Hello {
        /// The connecting node's id.
        node: NodeId,
        /// 32 fresh random bytes.
        #[serde(with = "serde_bytes")]
        nonce: Vec<u8>,
        /// HMAC-SHA-256 of the hello transcript (module docs).
        #[serde(with = "serde_bytes")]
        proof: Vec<u8>,
    },
    /// Accepting node's proof; after it, the link carries peer messages.
    Welcome {
        /// HMAC-SHA-256 of the welcome transcript (module docs).
        #[serde(with = "serde_bytes")]
        proof: Vec<u8>,
    },
    /// The handshake failed; the reason, for the other node's log.
    Refused {
        /// Why, for people.
        reason: String,
    },
}

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The other node does not prove the same cluster secret.
    #[error("the peer did not prove the cluster secret: give every node the same --cluster-secret-file (or none, on one machine's loopback)")]
    BadProof,
    /// The other node speaks another protocol version.
    #[error(
        "the peer speaks protocol version {got}, this node speaks {ours}; upgrade the older node"
    )]
    Version {
        /// Its version.
        got: u8,
        /// Ours.
        ours: u8,
    },
    /// The other node refused the handshake.
    #[error("the peer refused the link: {0}")]
    Refused(String),
    /// A frame that is not the expected step (or not a frame at all).
    #[error("the peer broke the handshake: {0}")]
    Protocol(String),
    /// The link closed or failed during the handshake.
    #[error("the link closed during the handshake")]
    Closed,
    /// The handshake took longer than [`TIMEOUT`].
    #[error("the handshake took longer than {TIMEOUT:?}")]
    Timeout,
    /// No randomness from the OS.
    #[error("no randomness from the operating system")]
    Random,
}

/// One node's side of handshakes: its id and the key its proofs use.
#[derive(Clone)]
pub struct Credentials {
    node: NodeId,
    key: hmac::Key,
    secret: bool,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("node", &self.node)
            .field("secret", &self.secret)
            .finish()
    }
}

impl Credentials {
    /// The credentials of node `node` with the cluster secret, if any.
    pub fn new(node: NodeId, secret: Option<&Secret>) -> Credentials {
        let bytes = secret.map_or(NO_SECRET, Secret::expose);
        Credentials {
            node,
            key: hmac::Key::new(hmac::HMAC_SHA256, bytes),
            secret: secret.is_some(),
        }
    }

    /// Whether a cluster secret is configured.
    pub fn has_secret(&self) -> bool {
        self.secret
    }

    /// The accepting side's first frame, and the nonce to remember for [`Self::check_hello`].
    pub fn challenge(&self) -> Result<(Handshake, Vec<u8>), HandshakeError> {
        let nonce = nonce()?;
        Ok((
            Handshake::Challenge { version: wire::VERSION, node: self.node, nonce: nonce.clone() },
            nonce,
        ))
    }

    /// The connecting side's answer to `challenge`: the hello to send, and what to check
    /// the welcome against ([`Self::check_welcome`]).
    pub fn hello(&self, challenge: Handshake) -> Result<(Handshake, Expect), HandshakeError> {
        let (version, server, server_nonce) = match challenge {
            Handshake::Challenge { version, node, nonce } => (version, node, nonce),
            Handshake::Refused { reason } => return Err(HandshakeError::Refused(reason)),
            other => {
                return Err(HandshakeError::Protocol(format!(
                    "expected a challenge, got {}",
                    name(&other)
                )))
            }
        };
        if version != wire::VERSION {
            return Err(HandshakeError::Version { got: version, ours: wire::VERSION });
        }
        check_nonce(&server_nonce)?;
        let mine = nonce()?;
        let proof = self.sign(HELLO, &server_nonce, &mine, self.node, server);
        let expect = Expect { server, server_nonce, client_nonce: mine.clone() };
        Ok((Handshake::Hello { node: self.node, nonce: mine, proof }, expect))
    }

    /// The accepting side's check of `hello` against its challenge `nonce`: the
    /// connecting node's id, proven, and the welcome to send back.
    pub fn check_hello(
        &self,
        nonce: &[u8],
        hello: Handshake,
    ) -> Result<(NodeId, Handshake), HandshakeError> {
        let (client, client_nonce, proof) = match hello {
            Handshake::Hello { node, nonce, proof } => (node, nonce, proof),
            Handshake::Refused { reason } => return Err(HandshakeError::Refused(reason)),
            other => {
                return Err(HandshakeError::Protocol(format!(
                    "expected a hello, got {}",
                    name(&other)
                )))
            }
        };
        check_nonce(&client_nonce)?;
        let msg = transcript(HELLO, nonce, &client_nonce, client, self.node);
        hmac::verify(&self.key, &msg, &proof).map_err(|_| HandshakeError::BadProof)?;
        let welcome = self.sign(WELCOME, &client_nonce, nonce, self.node, client);
        Ok((client, Handshake::Welcome { proof: welcome }))
    }

    /// The connecting side's check of the accepting node's `welcome`; the accepting
    /// node's id once it is proven.
    pub fn check_welcome(
        &self,
        expect: &Expect,
        welcome: Handshake,
    ) -> Result<NodeId, HandshakeError> {
        let proof = match welcome {
            Handshake::Welcome { proof } => proof,
            Handshake::Refused { reason } => return Err(HandshakeError::Refused(reason)),
            other => {
                return Err(HandshakeError::Protocol(format!(
                    "expected a welcome, got {}",
                    name(&other)
                )))
            }
        };
        let msg = transcript(
            WELCOME,
            &expect.client_nonce,
            &expect.server_nonce,
            expect.server,
            self.node,
        );
        hmac::verify(&self.key, &msg, &proof).map_err(|_| HandshakeError::BadProof)?;
        Ok(expect.server)
    }

    fn sign(&self, label: &[u8], a: &[u8], b: &[u8], from: NodeId, to: NodeId) -> Vec<u8> {
        hmac::sign(&self.key, &transcript(label, a, b, from, to)).as_ref().to_vec()
    }
}

/// What the connecting side checks the welcome against.
#[derive(Debug, Clone)]
pub struct Expect {
    server: NodeId,
    server_nonce: Vec<u8>,
    client_nonce: Vec<u8>,
}

const HELLO: &[u8] = b"dhrt peer hello v1";
const WELCOME: &[u8] = b"dhrt peer welcome v1";
const NONCE_LEN: usize = 32;

/// The bytes a proof signs: a label, two nonces, the signer's and the addressee's ids.
fn transcript(label: &[u8], a: &[u8], b: &[u8], from: NodeId, to: NodeId) -> Vec<u8> {
    let mut msg = Vec::with_capacity(label.len() + a.len() + b.len() + 16);
    msg.extend_from_slice(label);
    msg.extend_from_slice(a);
    msg.extend_from_slice(b);
    msg.extend_from_slice(&from.0.to_be_bytes());
    msg.extend_from_slice(&to.0.to_be_bytes());
    msg
}

fn nonce() -> Result<Vec<u8>, HandshakeError> {
    let mut bytes = vec![0; NONCE_LEN];
    ring::rand::SystemRandom::new().fill(&mut bytes).map_err(|_| HandshakeError::Random)?;
    Ok(bytes)
}

fn check_nonce(nonce: &[u8]) -> Result<(), HandshakeError> {
    if nonce.len() == NONCE_LEN {
        Ok(())
    } else {
        Err(HandshakeError::Protocol(format!("a nonce of {} bytes, not {NONCE_LEN}", nonce.len())))
    }
}

fn name(h: &Handshake) -> &'static str {
    match h {
        Handshake::Challenge { .. } => "a challenge",
        Handshake::Hello { .. } => "a hello",
        Handshake::Welcome { .. } => "a welcome",
        Handshake::Refused { .. } => "a refusal",
    }
}

/// A handshake frame's bytes.
pub fn encode(h: &Handshake) -> Vec<u8> {
    wire::encode_with_limit(h, MAX_FRAME).unwrap_or_default()
}

/// A handshake frame from `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Handshake, HandshakeError> {
    wire::decode_with_limit(bytes, MAX_FRAME).map_err(|e| HandshakeError::Protocol(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(a: &Credentials, b: &Credentials) -> Result<(NodeId, NodeId), HandshakeError> {
        // b accepts, a connects; every frame goes through its encoding.
        let (challenge, nb) = b.challenge()?;
        let (hello, expect) = a.hello(decode(&encode(&challenge))?)?;
        let (client, welcome) = b.check_hello(&nb, decode(&encode(&hello))?)?;
        let server = a.check_welcome(&expect, decode(&encode(&welcome))?)?;
        Ok((client, server))
    }

    fn secret(byte: u8) -> Secret {
        Secret::new(&[byte; 32]).unwrap()
    }

    #[test]
    fn members_with_the_same_secret_learn_each_others_ids() {
        let (s1, s2) = (secret(1), secret(1));
        let a = Credentials::new(NodeId(10), Some(&s1));
        let b = Credentials::new(NodeId(20), Some(&s2));
        assert_eq!(run(&a, &b), Ok((NodeId(10), NodeId(20))));
        let (a, b) = (Credentials::new(NodeId(1), None), Credentials::new(NodeId(2), None));
        assert_eq!(run(&a, &b), Ok((NodeId(1), NodeId(2))));
    }

    #[test]
    fn a_wrong_or_missing_secret_is_refused_on_both_sides() {
        let a = Credentials::new(NodeId(10), Some(&secret(1)));
        let b = Credentials::new(NodeId(20), Some(&secret(2)));
        assert_eq!(run(&a, &b), Err(HandshakeError::BadProof));
        let none = Credentials::new(NodeId(10), None);
        assert_eq!(run(&none, &b), Err(HandshakeError::BadProof));
        assert_eq!(run(&b, &none), Err(HandshakeError::BadProof));
    }

    #[test]
    fn a_proof_is_bound_to_the_nonces_the_ids_and_its_direction() {
        let s = secret(3);
        let a = Credentials::new(NodeId(10), Some(&s));
        let b = Credentials::new(NodeId(20), Some(&s));
        let (challenge, nb) = b.challenge().unwrap();
        let (hello, expect) = a.hello(challenge).unwrap();
        // Replayed against another challenge: refused.
        let (_, other_nonce) = b.challenge().unwrap();
        assert_eq!(b.check_hello(&other_nonce, hello.clone()), Err(HandshakeError::BadProof));
        // Claiming another id with the same proof: refused.
        let Handshake::Hello { nonce, proof, .. } = hello.clone() else { unreachable!() };
        let forged = Handshake::Hello { node: NodeId(99), nonce, proof: proof.clone() };
        assert_eq!(b.check_hello(&nb, forged), Err(HandshakeError::BadProof));
        // The hello's proof reflected back as a welcome: refused.
        let reflected = Handshake::Welcome { proof };
        assert_eq!(a.check_welcome(&expect, reflected), Err(HandshakeError::BadProof));
        // Out of order or malformed steps are protocol errors, not panics.
        assert!(matches!(
            b.check_hello(&nb, Handshake::Welcome { proof: vec![] }),
            Err(HandshakeError::Protocol(_))
        ));
        let short =
            Handshake::Challenge { version: wire::VERSION, node: NodeId(20), nonce: vec![1] };
        assert!(matches!(a.hello(short), Err(HandshakeError::Protocol(_))));
        let old = Handshake::Challenge {
            version: wire::VERSION + 1,
            node: NodeId(20),
            nonce: vec![0; 32],
        };
        assert!(matches!(a.hello(old), Err(HandshakeError::Version { .. })));
        assert!(decode(&[wire::VERSION, 0xc1]).is_err());
        assert!(decode(&vec![wire::VERSION; MAX_FRAME + 1]).is_err());
    }
}
