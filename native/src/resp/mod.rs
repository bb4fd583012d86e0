//! RESP, the Redis protocol: what dhrt's Redis endpoint ([`crate::server::resp`]) and
//! the Redis client of `dhrt bench` share.
//!
//! - [`Value`] is one RESP2 reply as a client reads it, [`parse`] reads one from a
//!   buffer or says it is incomplete (mini-redis style: the caller reads more and tries
//!   again), [`encode_command`] writes a command as a RESP array of bulk strings;
//! - [`request`] reads commands as a server does (arrays of bulk strings, and inline
//!   commands), bounded the way Redis bounds them;
//! - [`reply`] writes replies, in RESP2 or — after `HELLO 3` — RESP3.
//!
//! The codec is hand-written rather than taken from a crate: replies are encoded
//! straight into a connection's output buffer and commands are read where they lie, with
//! the limits the server needs (no crate we found bounds inline commands and array
//! lengths as Redis does).

pub mod reply;
pub mod request;

use bytes::Bytes;

/// Longest reply line (simple string, error, length) accepted.
pub const MAX_LINE: usize = 64 * 1024;

/// Largest bulk string accepted (Redis's own `proto-max-bulk-len` default).
pub const MAX_BULK: usize = 512 * 1024 * 1024;

/// Most elements of an array reply accepted.
pub const MAX_ARRAY: usize = 1 << 24;

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`: the error's text, without the `-`.
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$3\r\nfoo` or `$-1` (nil).
    Bulk(Option<Bytes>),
    /// `*2\r\n...` or `*-1` (nil).
    Array(Option<Vec<Value>>),
}

/// Bytes that are not RESP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad RESP: {0}")]
pub struct ProtocolError(pub String);

/// Appends `args` as one command (an array of bulk strings) to `buf`.
pub fn encode_command(buf: &mut Vec<u8>, args: &[&[u8]]) {
    buf.push(b'*');
    push_decimal(buf, args.len());
    buf.extend_from_slice(b"\r\n");
    for arg in args {
        buf.push(b'$');
        push_decimal(buf, arg.len());
        buf.extend_from_slice(b"\r\n");
        buf.extend_from_slice(arg);
        buf.extend_from_slice(b"\r\n");
    }
}

/// Appends `n` in decimal.
pub fn push_decimal(buf: &mut Vec<u8>, n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

/// Reads one reply from the front of `buf`: `Ok(Some((value, bytes used)))`, or
/// `Ok(None)` when `buf` holds only part of a reply.
pub fn parse(buf: &[u8]) -> Result<Option<(Value, usize)>, ProtocolError> {
    let mut at = 0;
    Ok(parse_at(buf, &mut at, 0)?.map(|v| (v, at)))
}

fn parse_at(buf: &[u8], at: &mut usize, depth: usize) -> Result<Option<Value>, ProtocolError> {
    if depth > 32 {
        return Err(ProtocolError("arrays nested more than 32 deep".into()));
    }
    let Some(&kind) = buf.get(*at) else { return Ok(None) };
    let Some(line) = line_at(buf, *at + 1)? else { return Ok(None) };
    let after_line = *at + 1 + line.len() + 2;
    let text = || String::from_utf8_lossy(line).into_owned();
    let value = match kind {
        b'+' => Value::Simple(text()),
        b'-' => Value::Error(text()),
        b':' => Value::Integer(integer(line)?),
        b'$' => {
            let len = integer(line)?;
            if len < 0 {
                Value::Bulk(None)
            } else {
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                if len > MAX_BULK {
                    return Err(ProtocolError(format!("bulk string of {len} bytes")));
                }
                let end = after_line + len;
                if buf.len() < end + 2 {
                    return Ok(None);
                }
                if &buf[end..end + 2] != b"\r\n" {
                    return Err(ProtocolError("bulk string not followed by CRLF".into()));
                }
                *at = end + 2;
                return Ok(Some(Value::Bulk(Some(Bytes::copy_from_slice(&buf[after_line..end])))));
            }
        }
        b'*' => {
            let len = integer(line)?;
            if len < 0 {
                Value::Array(None)
            } else {
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                if len > MAX_ARRAY {
                    return Err(ProtocolError(format!("array of {len} elements")));
                }
                let mut items = Vec::with_capacity(len.min(1024));
                let mut inner = after_line;
                for _ in 0..len {
                    match parse_at(buf, &mut inner, depth + 1)? {
                        Some(v) => items.push(v),
                        None => return Ok(None),
                    }
                }
                *at = inner;
                return Ok(Some(Value::Array(Some(items))));
            }
        }
        other => return Err(ProtocolError(format!("unknown reply type {:?}", char::from(other)))),
    };
    *at = after_line;
    Ok(Some(value))
}

/// The line starting at `from`, without its CRLF; `None` when the CRLF has not arrived.
fn line_at(buf: &[u8], from: usize) -> Result<Option<&[u8]>, ProtocolError> {
    let rest = buf.get(from..).unwrap_or_default();
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(n) => Ok(Some(&rest[..n])),
        None if rest.len() > MAX_LINE => {
            Err(ProtocolError(format!("a reply line longer than {MAX_LINE} bytes")))
        }
        None => Ok(None),
    }
}

fn integer(line: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(line).ok().and_then(|s| s.parse().ok()).ok_or_else(|| {
        ProtocolError(format!("not an integer: {:?}", String::from_utf8_lossy(line)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(bytes: &[u8]) -> Value {
        let (v, used) = parse(bytes).unwrap().expect("complete");
        assert_eq!(used, bytes.len(), "{:?}", String::from_utf8_lossy(bytes));
        v
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut buf = Vec::new();
        encode_command(&mut buf, &[b"SET", b"key", b"value"]);
        assert_eq!(buf, b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n");
        buf.clear();
        encode_command(&mut buf, &[b"GET", &[b'k'; 16]]);
        assert_eq!(buf, [&b"*2\r\n$3\r\nGET\r\n$16\r\n"[..], &[b'k'; 16], b"\r\n"].concat());
        buf.clear();
        encode_command(&mut buf, &[b"SET", b"", &[0u8; 100]]);
        assert!(buf.starts_with(b"*3\r\n$3\r\nSET\r\n$0\r\n\r\n$100\r\n"));
        assert!(buf.ends_with(b"\r\n"));
        assert_eq!(buf.len(), 4 + 9 + 6 + 6 + 100 + 2);
        buf.clear();
        encode_command(&mut buf, &[b"PING"]);
        assert_eq!(buf, b"*1\r\n$4\r\nPING\r\n");
    }

    #[test]
    fn replies_of_every_type() {
        assert_eq!(whole(b"+OK\r\n"), Value::Simple("OK".into()));
        assert_eq!(whole(b"-ERR unknown command\r\n"), Value::Error("ERR unknown command".into()));
        assert_eq!(whole(b":-42\r\n"), Value::Integer(-42));
        assert_eq!(whole(b"$5\r\nhello\r\n"), Value::Bulk(Some(Bytes::from_static(b"hello"))));
        assert_eq!(whole(b"$0\r\n\r\n"), Value::Bulk(Some(Bytes::new())));
        assert_eq!(whole(b"$-1\r\n"), Value::Bulk(None));
        assert_eq!(whole(b"*-1\r\n"), Value::Array(None));
        assert_eq!(whole(b"*0\r\n"), Value::Array(Some(vec![])));
        assert_eq!(
            whole(b"*3\r\n:1\r\n$-1\r\n*1\r\n+x\r\n"),
            Value::Array(Some(vec![
                Value::Integer(1),
                Value::Bulk(None),
                Value::Array(Some(vec![Value::Simple("x".into())])),
            ]))
        );
        // Binary bulk strings may hold CRLF.
        assert_eq!(whole(b"$4\r\na\r\nb\r\n"), Value::Bulk(Some(Bytes::from_static(b"a\r\nb"))));
    }

    #[test]
    fn partial_replies_are_incomplete_and_pipelined_ones_split() {
        let stream = b"+OK\r\n$3\r\nabc\r\n-ERR x\r\n*2\r\n:1\r\n:2\r\n";
        for cut in 0..stream.len() {
            // Every prefix parses to whole replies followed by `None`, never an error.
            let mut at = 0;
            while let Some((_, used)) = parse(&stream[at..cut]).unwrap() {
                at += used;
            }
        }
        let mut at = 0;
        let mut got = Vec::new();
        while let Some((v, used)) = parse(&stream[at..]).unwrap() {
            got.push(v);
            at += used;
        }
        assert_eq!(at, stream.len());
        assert_eq!(got.len(), 4);
        assert_eq!(got[2], Value::Error("ERR x".into()));
        assert!(parse(b"$10\r\nabc").unwrap().is_none());
        assert!(parse(b"*2\r\n:1\r\n").unwrap().is_none());
        assert!(parse(b"").unwrap().is_none());
    }

    #[test]
    fn bad_replies_are_errors() {
        assert!(parse(b"?what\r\n").is_err());
        assert!(parse(b":12a\r\n").is_err());
        assert!(parse(b"$3\r\nabcd\r\n").is_err());
        assert!(parse(b"$99999999999\r\n").is_err());
        assert!(parse(&[b'+'; MAX_LINE + 10]).is_err());
        let deep: Vec<u8> = b"*1\r\n".repeat(40);
        assert!(parse(&deep).is_err());
    }
}
