//! Consistency levels ([`Consistency`]): how many of a key's replicas must answer, as
//! written on the command line, in query strings and on the wire.

use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};

/// How many of a key's replicas must answer before the coordinator replies.
///
/// Written and parsed as `default`, `one`, `quorum`, `all` or a number `n` (`0 ..= 255`),
/// the same text on the command line, in HTTP query strings and on the wire. Whether a
/// number can be met depends on the key's replicas, so [`Consistency::required`] (not
/// parsing) refuses `0` and numbers above the replication factor; every value thus
/// survives the wire.
///
/// A request that names no level carries [`Consistency::Default`]: the level configured
/// for its collection on the coordinating node (`NodeConfig::collection_consistency`),
/// and `quorum` for every collection not configured — a quorum read and a quorum write
/// share at least one replica, so the read reaches a copy of the latest write
/// acknowledged at quorum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Consistency {
    /// The collection's configured level ([`Consistency::resolve`]); `quorum` unless
    /// configured.
    #[default]
    Default,
    /// One replica.
    One,
    /// A majority of the replicas: `replicas / 2 + 1`.
    Quorum,
    /// Every replica.
    All,
    /// Exactly this many replicas; [`Consistency::required`] accepts `1 ..= replicas`.
    N(u8),
}

impl Consistency {
    /// This level, or `configured` when this is [`Consistency::Default`] (and `quorum`
    /// when `configured` is `Default` too).
    pub fn resolve(self, configured: Consistency) -> Consistency {
        match (self, configured) {
            (Consistency::Default, Consistency::Default) => Consistency::Quorum,
            (Consistency::Default, c) => c,
            (c, _) => c,
        }
    }

    /// How many of `replicas` replicas must answer, or why that is impossible. An
    /// unresolved [`Consistency::Default`] counts as `quorum`.
    pub fn required(self, replicas: usize) -> Result<usize, ConsistencyError> {
        if replicas == 0 {
            return Err(ConsistencyError::NoReplicas);
        }
        match self {
            Consistency::One => Ok(1),
            Consistency::Quorum | Consistency::Default => Ok(replicas / 2 + 1),
            Consistency::All => Ok(replicas),
            Consistency::N(n) if n >= 1 && usize::from(n) <= replicas => Ok(usize::from(n)),
            Consistency::N(n) => Err(ConsistencyError::OutOfRange { requested: n, replicas }),
        }
    }
}

impl fmt::Display for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Consistency::Default => f.write_str("default"),
            Consistency::One => f.write_str("one"),
            Consistency::Quorum => f.write_str("quorum"),
            Consistency::All => f.write_str("all"),
            Consistency::N(n) => write!(f, "{n}"),
        }
    }
}

impl FromStr for Consistency {
    type Err = ParseConsistencyError;

    /// Parses `default`, `one`, `quorum`, `all` (any letter case) or a number
    /// `0 ..= 255` written with ASCII digits only.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseConsistencyError { input: s.chars().take(32).collect() };
        if s.eq_ignore_ascii_case("default") {
            Ok(Consistency::Default)
        } else if s.eq_ignore_ascii_case("one") {
            Ok(Consistency::One)
        } else if s.eq_ignore_ascii_case("quorum") {
            Ok(Consistency::Quorum)
        } else if s.eq_ignore_ascii_case("all") {
            Ok(Consistency::All)
        } else if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse::<u8>().map(Consistency::N).map_err(|_| err())
        } else {
            Err(err())
        }
    }
}

/// On the wire a level is its name (`"one"`, `"quorum"`…) or its number as a string.
/// Written and read without allocating: every request carries one, and a `String` made
/// for it on each side showed in the request path's profile.
impl Serialize for Consistency {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Consistency::Default => serializer.serialize_str("default"),
            Consistency::One => serializer.serialize_str("one"),
            Consistency::Quorum => serializer.serialize_str("quorum"),
            Consistency::All => serializer.serialize_str("all"),
            Consistency::N(n) => {
                let mut digits = [0u8; 3];
                let mut at = digits.len();
                let mut n = *n;
                loop {
                    at -= 1;
                    digits[at] = b'0' + n % 10;
                    n /= 10;
                    if n == 0 {
                        break;
                    }
                }
                // ASCII digits: always UTF-8.
                serializer.serialize_str(std::str::from_utf8(&digits[at..]).unwrap_or("0"))
            }
        }
    }
}

impl<'de> Deserialize<'de> for Consistency {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Level;
        impl serde::de::Visitor<'_> for Level {
            type Value = Consistency;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a consistency level: default, one, quorum, all or a number")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Consistency, E> {
                s.parse().map_err(E::custom)
            }
            fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> Result<Consistency, E> {
                let s = std::str::from_utf8(b).map_err(E::custom)?;
                s.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Level)
    }
}

impl From<Consistency> for String {
    fn from(c: Consistency) -> String {
        c.to_string()
    }
}

impl TryFrom<String> for Consistency {
    type Error = ParseConsistencyError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// Why a consistency level cannot be met with the replicas at hand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConsistencyError {
    /// A number of replicas outside `1 ..= replicas` was requested.
    #[error(
        "consistency {requested} cannot be met with {replicas} replicas: use 1 to {replicas}, \
         one, quorum or all"
    )]
    OutOfRange {
        /// The number requested.
        requested: u8,
        /// The replicas the key has.
        replicas: usize,
    },
    /// The key has no replicas at all (an empty ring).
    #[error("no replicas are available for the key: start or join a node first")]
    NoReplicas,
}

/// A consistency level that is not `one`, `quorum`, `all` or a number `0 ..= 255`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid consistency {input:?}: use one, quorum, all or a number of replicas such as 2")]
pub struct ParseConsistencyError {
    /// The rejected text (its first 32 characters).
    pub input: String,
}
