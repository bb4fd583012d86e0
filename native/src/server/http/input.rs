//! Reading a request: path segments, query parameters, and the checks on both.
//!
//! Keys are bytes, so path segments are percent-decoded here into bytes (axum's own
//! extractors insist on UTF-8): `%FF` in a key segment is the byte `0xFF`, `%2F` a
//! slash inside a key. Query strings are decoded the form way (`+` is a space, `%2B` a
//! plus). Every check answers 400 with a sentence, through [`ApiError`]; nothing here
//! can panic on what a client sends.

use super::{encode, error::ApiError};
use axum::{extract::FromRequestParts, http::request::Parts};
use bytes::Bytes;
use dhrt_core::{
    proto::client::Consistency,
    store::{validate_collection, validate_key},
};
use percent_encoding::percent_decode;
use std::convert::Infallible;

/// The percent-decoded segments of the request path (`/a/b%2Fc` is `["a", "b/c"]`).
#[derive(Debug, Clone, Default)]
pub struct Segments(pub Vec<Bytes>);

impl<S: Send + Sync> FromRequestParts<S> for Segments {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Segments::of(parts.uri.path()))
    }
}

impl Segments {
    /// The segments of `path`.
    pub fn of(path: &str) -> Self {
        let path = path.strip_prefix('/').unwrap_or(path);
        Segments(
            path.split('/')
                .map(|s| Bytes::from(percent_decode(s.as_bytes()).collect::<Vec<u8>>()))
                .collect(),
        )
    }

    /// Segment `i` (empty when the path is shorter: the router never lets that happen).
    pub fn raw(&self, i: usize) -> Bytes {
        self.0.get(i).cloned().unwrap_or_default()
    }

    /// Segment `i` as a key: 1 to 64 KiB of any bytes.
    pub fn key(&self, i: usize) -> Result<Bytes, ApiError> {
        check_key(self.raw(i))
    }

    /// Segment `i` as a collection name.
    pub fn collection(&self, i: usize) -> Result<String, ApiError> {
        collection_name(&self.raw(i))
    }
}

/// `bytes` as a collection name: UTF-8 and 1–64 characters of `A-Z a-z 0-9 _ - .`.
pub fn collection_name(bytes: &[u8]) -> Result<String, ApiError> {
    let name = String::from_utf8_lossy(bytes).into_owned();
    validate_collection(&name).map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok(name)
}

/// Checks a key: 1 to 64 KiB.
pub fn check_key(key: Bytes) -> Result<Bytes, ApiError> {
    validate_key(&key).map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok(key)
}

/// A query parameter a route may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    /// `consistency=one|quorum|all|default|N`.
    Consistency,
    /// `ttl=SECONDS` or `ttl_ms=MILLISECONDS`.
    Ttl,
    /// `limit=N`.
    Limit,
    /// `cursor=…`, as a previous page handed it out.
    Cursor,
    /// `prefix=…`: only keys starting with these bytes.
    Prefix,
    /// `encoding=text|base64`.
    Encoding,
    /// `force=true|false`.
    Force,
}

impl Param {
    fn names(self) -> &'static [&'static str] {
        match self {
            Param::Consistency => &["consistency"],
            Param::Ttl => &["ttl", "ttl_ms"],
            Param::Limit => &["limit"],
            Param::Cursor => &["cursor"],
            Param::Prefix => &["prefix"],
            Param::Encoding => &["encoding"],
            Param::Force => &["force"],
        }
    }
}

/// Query parameters for reads and writes of single keys.
pub const KEY_READ: &[Param] = &[Param::Consistency];
/// Query parameters for writes.
pub const WRITE: &[Param] = &[Param::Consistency, Param::Ttl];

/// How keys and values are written in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// UTF-8 text as a JSON string; anything else base64, marked as such.
    #[default]
    Text,
    /// Always base64.
    Base64,
}

impl Encoding {
    /// `text` or `base64`.
    pub fn parse(text: &str) -> Result<Encoding, ApiError> {
        match text {
            "text" => Ok(Encoding::Text),
            "base64" => Ok(Encoding::Base64),
            other => Err(ApiError::invalid(format!(
                "encoding {:?} is not known: use text or base64",
                other.chars().take(32).collect::<String>()
            ))),
        }
    }
}

/// The query parameters of one request, checked.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// `consistency`, [`Consistency::Default`] when absent.
    pub consistency: Consistency,
    /// `ttl` (converted to ms) or `ttl_ms`.
    pub ttl_ms: Option<u64>,
    /// `limit`.
    pub limit: Option<u32>,
    /// `cursor`, decoded.
    pub cursor: Option<Bytes>,
    /// `prefix`, decoded.
    pub prefix: Option<Bytes>,
    /// `encoding`.
    pub encoding: Encoding,
    /// `force`.
    pub force: bool,
}

impl Query {
    /// Parses `raw` (the text after `?`), allowing only the parameters in `allowed`.
    pub fn parse(raw: Option<&str>, allowed: &[Param]) -> Result<Query, ApiError> {
        let mut q = Query::default();
        let mut seen: Vec<String> = Vec::new();
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = String::from_utf8_lossy(&form_decode(name)).into_owned();
            let value = Bytes::from(form_decode(value));
            let Some(param) = allowed.iter().copied().find(|p| p.names().contains(&name.as_str()))
            else {
                return Err(unknown(&name, allowed));
            };
            if seen.contains(&name) {
                return Err(ApiError::invalid(format!(
                    "the query parameter {name:?} is given twice: give it once"
                )));
            }
            seen.push(name.clone());
            q.set(param, &name, value)?;
        }
        if seen.iter().any(|n| n == "ttl") && seen.iter().any(|n| n == "ttl_ms") {
            return Err(ApiError::invalid("give ttl (seconds) or ttl_ms (milliseconds), not both"));
        }
        Ok(q)
    }

    fn set(&mut self, param: Param, name: &str, value: Bytes) -> Result<(), ApiError> {
        let text = || {
            std::str::from_utf8(&value).map_err(|_| {
                ApiError::invalid(format!("the query parameter {name} is not UTF-8 text"))
            })
        };
        match param {
            Param::Consistency => {
                self.consistency = text()?.parse().map_err(
                    |e: dhrt_core::proto::client::ParseConsistencyError| {
                        ApiError::invalid(e.to_string())
                    },
                )?;
            }
            Param::Ttl => {
                let unit = if name == "ttl" { 1000 } else { 1 };
                let n = text()?.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    ApiError::invalid(format!(
                        "{name}={:?} is not a time to live: give a whole number of {} of at least 1",
                        String::from_utf8_lossy(&value).chars().take(32).collect::<String>(),
                        if unit == 1 { "milliseconds" } else { "seconds" }
                    ))
                })?;
                self.ttl_ms = Some(n.checked_mul(unit).ok_or_else(|| {
                    ApiError::invalid(format!("{name}={n} is too long a time to live"))
                })?);
            }
            Param::Limit => {
                let n = text()?.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    ApiError::invalid("limit must be a whole number of at least 1")
                })?;
                self.limit = Some(n);
            }
            Param::Cursor => {
                if !value.is_empty() {
                    self.cursor = Some(encode::cursor_in(text()?)?);
                }
            }
            Param::Force => {
                self.force = match text()? {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    other => {
                        return Err(ApiError::invalid(format!(
                            "force={:?} is not a flag: use true or false",
                            other.chars().take(32).collect::<String>()
                        )))
                    }
                };
            }
            Param::Prefix => {
                if !value.is_empty() {
                    self.prefix = Some(value);
                }
            }
            Param::Encoding => self.encoding = Encoding::parse(text()?)?,
        }
        Ok(())
    }

    /// `limit`, defaulting to `default` and capped at `max`.
    pub fn limit_or(&self, default: u32, max: u32) -> u32 {
        self.limit.unwrap_or(default).min(max)
    }
}

/// Decodes one `name` or `value` of a query string: `+` is a space, `%XX` a byte.
fn form_decode(s: &str) -> Vec<u8> {
    let spaced = s.replace('+', " ");
    percent_decode(spaced.as_bytes()).collect()
}

fn unknown(name: &str, allowed: &[Param]) -> ApiError {
    let names: Vec<&str> = allowed.iter().flat_map(|p| p.names()).copied().collect();
    let name: String = name.chars().take(32).collect();
    if names.is_empty() {
        ApiError::invalid(format!("unknown query parameter {name:?}: this route takes none"))
    } else {
        ApiError::invalid(format!(
            "unknown query parameter {name:?}: this route takes {}",
            names.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_decoded_into_bytes() {
        let s = Segments::of("/v1/collections/users/keys/a%2Fb%FF+c");
        assert_eq!(s.0.len(), 5);
        assert_eq!(s.raw(4), Bytes::from_static(b"a/b\xff+c"));
        assert_eq!(s.collection(2).unwrap(), "users");
        assert!(s.raw(9).is_empty());
        assert!(Segments::of("/no%20spaces").collection(0).is_err());
    }

    #[test]
    fn query_parameters_are_checked() {
        let q = Query::parse(Some("consistency=ALL&ttl=2"), WRITE).unwrap();
        assert_eq!(q.consistency, Consistency::All);
        assert_eq!(q.ttl_ms, Some(2000));
        let q = Query::parse(Some("ttl_ms=250&consistency=2"), WRITE).unwrap();
        assert_eq!((q.ttl_ms, q.consistency), (Some(250), Consistency::N(2)));
        for bad in [
            "consistency=most",
            "ttl=soon",
            "ttl=-1",
            "ttl=0",
            "ttl=1&ttl_ms=5",
            "ttl=99999999999999999999",
            "ttl=18446744073709552",
            "limit=5",
            "consistency=one&consistency=all",
        ] {
            let e = Query::parse(Some(bad), WRITE).unwrap_err();
            assert_eq!(e.status.as_u16(), 400, "{bad}");
        }
        assert!(Query::parse(Some("ttl=1"), KEY_READ).unwrap_err().message.contains("consistency"));
        assert_eq!(Query::parse(None, &[]).unwrap().consistency, Consistency::Default);
    }

    #[test]
    fn query_values_are_form_decoded() {
        let all = &[Param::Prefix, Param::Limit, Param::Encoding];
        let q = Query::parse(Some("prefix=a+b%2Bc%00&limit=7&encoding=base64"), all).unwrap();
        assert_eq!(q.prefix, Some(Bytes::from_static(b"a b+c\0")));
        assert_eq!(q.limit_or(100, 5), 5);
        assert_eq!(q.encoding, Encoding::Base64);
        assert!(Query::parse(Some("encoding=hex"), all).is_err());
        assert!(Query::parse(Some("limit=0"), all).is_err());
    }
}
