//! Commands as a Redis server reads them: arrays of bulk strings (what every client
//! library sends), and inline commands (a line of words, what `telnet` sends).
//!
//! A command is found in place: [`parse`] returns the byte ranges of its arguments in
//! the buffer and how many bytes it took, so the caller can cut the arguments out of
//! the received bytes without copying them. Bounds are Redis's own: an inline command
//! is at most [`MAX_INLINE`] bytes, an array at most [`Bounds::max_args`] arguments, an
//! argument at most [`Bounds::max_bulk`] bytes, and a connection that has not
//! authenticated (when authentication is required) is held to 10 arguments of 16 KiB
//! — so nothing a client sends before it proves who it is makes the server hold much.
//! The error texts are Redis's, so clients and people see what they know.

use std::ops::Range;

/// Longest inline command, and longest `*`/`$` header line (Redis's
/// `PROTO_INLINE_MAX_SIZE`).
pub const MAX_INLINE: usize = 64 * 1024;
/// Most arguments of one command (Redis's limit on a multibulk length).
pub const MAX_ARGS: usize = 1024 * 1024;
/// Most arguments before authentication (as Redis).
pub const UNAUTHENTICATED_ARGS: usize = 10;
/// Largest argument before authentication (as Redis).
pub const UNAUTHENTICATED_BULK: usize = 16 * 1024;

/// What one command may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Most arguments.
    pub max_args: usize,
    /// Largest argument, in bytes (Redis's `proto-max-bulk-len`).
    pub max_bulk: usize,
    /// The connection has yet to authenticate (the errors say so).
    pub guest: bool,
}

impl Bounds {
    /// Bounds with `max_bulk` as the largest argument.
    pub fn new(max_bulk: usize) -> Self {
        Bounds { max_args: MAX_ARGS, max_bulk, guest: false }
    }

    /// The tighter bounds of a connection that must still authenticate.
    pub fn unauthenticated(self) -> Self {
        Bounds {
            max_args: self.max_args.min(UNAUTHENTICATED_ARGS),
            max_bulk: self.max_bulk.min(UNAUTHENTICATED_BULK),
            guest: true,
        }
    }
}

/// Bytes that are no command: the connection is answered `-ERR Protocol error: ...`
/// and closed, as Redis does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Protocol error: {0}")]
pub struct BadRequest(pub String);

fn bad<T>(why: impl Into<String>) -> Result<T, BadRequest> {
    Err(BadRequest(why.into()))
}

/// Reads one command from the front of `buf` into `args` (cleared first): the ranges of
/// its arguments in `buf`. `Ok(Some(n))` when a command of `n` bytes is whole — `args`
/// may then be empty, for an empty line or an empty array, which the caller skips —
/// `Ok(None)` when more bytes are needed.
pub fn parse(
    buf: &[u8],
    bounds: Bounds,
    args: &mut Vec<Range<usize>>,
) -> Result<Option<usize>, BadRequest> {
    args.clear();
    match buf.first() {
        None => Ok(None),
        Some(b'*') => multibulk(buf, bounds, args),
        Some(_) => inline(buf, bounds, args),
    }
}

/// The end of the line starting at `from` (the index of its `\r`), if it has arrived;
/// an error, `what`, when it is longer than [`MAX_INLINE`].
fn line_end(buf: &[u8], from: usize, what: &str) -> Result<Option<usize>, BadRequest> {
    let rest = &buf[from.min(buf.len())..];
    let window = &rest[..rest.len().min(MAX_INLINE + 2)];
    // The first `\r` followed by `\n` (a lone `\r` is part of the line).
    let mut seen = 0;
    while let Some(n) = memchr::memchr(b'\r', &window[seen..]) {
        let at = seen + n;
        match window.get(at + 1) {
            Some(b'\n') => return Ok(Some(from + at)),
            Some(_) => seen = at + 1,
            None => break,
        }
    }
    if rest.len() > MAX_INLINE {
        bad(what)
    } else {
        Ok(None)
    }
}

/// A decimal count as Redis reads one (an optional `-`, digits only).
fn count(digits: &[u8]) -> Option<i64> {
    let (neg, digits) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, digits),
    };
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
    Some(if neg { -n } else { n })
}

/// A count line starting at `from` (after its `*` or `$`) that is whole and well
/// formed — digits, maybe after a `-`, then `\r\n` — read in one pass: the count and
/// where its `\r` is. `None` for anything else (not yet arrived, malformed, too long),
/// which the general path ([`line_end`], [`count`]) reads and names.
fn quick_count(buf: &[u8], from: usize) -> Option<(i64, usize)> {
    let rest = buf.get(from..)?;
    let (neg, skip) = if rest.first() == Some(&b'-') { (true, 1) } else { (false, 0) };
    let mut n: i64 = 0;
    for (i, &b) in rest.iter().enumerate().skip(skip).take(19) {
        match b {
            // At most 18 digits, as `count` reads: no overflow.
            b'0'..=b'9' if i - skip < 18 => n = n * 10 + i64::from(b - b'0'),
            b'\r' if i > skip && rest.get(i + 1) == Some(&b'\n') => {
                return Some((if neg { -n } else { n }, from + i));
            }
            _ => return None,
        }
    }
    None
}

fn multibulk(
    buf: &[u8],
    bounds: Bounds,
    args: &mut Vec<Range<usize>>,
) -> Result<Option<usize>, BadRequest> {
    let (n, end) = match quick_count(buf, 1) {
        Some((n, end)) => (Some(n), end),
        None => {
            let Some(end) = line_end(buf, 1, "too big mbulk count string")? else {
                return Ok(None);
            };
            (count(&buf[1..end]), end)
        }
    };
    let n = match n {
        Some(n) if n > bounds.max_args as i64 => {
            return bad(if bounds.guest {
                "unauthenticated multibulk length"
            } else {
                "invalid multibulk length"
            })
        }
        Some(n) => n,
        None => return bad("invalid multibulk length"),
    };
    let mut at = end + 2;
    if n <= 0 {
        return Ok(Some(at));
    }
    for _ in 0..n {
        let Some(&first) = buf.get(at) else { return Ok(None) };
        if first != b'$' {
            return bad(format!("expected '$', got '{}'", char::from(first)));
        }
        let (len, end) = match quick_count(buf, at + 1) {
            Some((len, end)) => (Some(len), end),
            None => {
                let Some(end) = line_end(buf, at + 1, "too big bulk count string")? else {
                    return Ok(None);
                };
                (count(&buf[at + 1..end]), end)
            }
        };
        let len = match len {
            Some(len) if len >= 0 && len as u64 <= bounds.max_bulk as u64 => len as usize,
            Some(len) if len >= 0 && bounds.guest => return bad("unauthenticated bulk length"),
            _ => return bad("invalid bulk length"),
        };
        let start = end + 2;
        let stop = start + len;
        if buf.len() < stop + 2 {
            return Ok(None);
        }
        if &buf[stop..stop + 2] != b"\r\n" {
            return bad("bulk string not followed by CRLF");
        }
        args.push(start..stop);
        at = stop + 2;
    }
    Ok(Some(at))
}

/// An inline command: words separated by spaces, `"..."` (with `\n`, `\xHH` and the
/// like) and `'...'` quoted as `redis-cli` and Redis's `sdssplitargs` read them. The
/// words must lie in the buffer as they are, so a quoted word with escapes is refused
/// (nothing sends one but a person at a terminal, who can use redis-cli instead).
fn inline(
    buf: &[u8],
    bounds: Bounds,
    args: &mut Vec<Range<usize>>,
) -> Result<Option<usize>, BadRequest> {
    let window = &buf[..buf.len().min(MAX_INLINE + 1)];
    let Some(nl) = window.iter().position(|&b| b == b'\n') else {
        return if buf.len() > MAX_INLINE { bad("too big inline request") } else { Ok(None) };
    };
    let line_stop = if nl > 0 && buf[nl - 1] == b'\r' { nl - 1 } else { nl };
    let mut i = 0;
    while i < line_stop {
        match buf[i] {
            b' ' | b'\t' => i += 1,
            q @ (b'"' | b'\'') => {
                let start = i + 1;
                let Some(len) = buf[start..line_stop].iter().position(|&b| b == q) else {
                    return bad("unbalanced quotes in request");
                };
                if q == b'"' && buf[start..start + len].contains(&b'\\') {
                    return bad("escapes in inline commands are not supported; use redis-cli");
                }
                let stop = start + len;
                if stop + 1 < line_stop && !matches!(buf[stop + 1], b' ' | b'\t') {
                    return bad("unbalanced quotes in request");
                }
                args.push(start..stop);
                i = stop + 1;
            }
            _ => {
                let start = i;
                while i < line_stop && !matches!(buf[i], b' ' | b'\t') {
                    i += 1;
                }
                args.push(start..i);
            }
        }
        if args.len() > bounds.max_args {
            return bad("invalid multibulk length");
        }
    }
    Ok(Some(nl + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A command's words and its length in bytes.
    type Words = (Vec<Vec<u8>>, usize);

    fn words(buf: &[u8], bounds: Bounds) -> Result<Option<Words>, BadRequest> {
        let mut args = Vec::new();
        Ok(parse(buf, bounds, &mut args)?
            .map(|n| (args.iter().map(|r| buf[r.clone()].to_vec()).collect(), n)))
    }

    fn whole(buf: &[u8]) -> Vec<Vec<u8>> {
        let (args, n) = words(buf, Bounds::new(1 << 20)).unwrap().expect("whole");
        assert_eq!(n, buf.len());
        args
    }

    fn refused(buf: &[u8], bounds: Bounds) -> String {
        words(buf, bounds).unwrap_err().to_string()
    }

    #[test]
    fn arrays_of_bulk_strings() {
        assert_eq!(whole(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"), [b"GET".to_vec(), b"k".to_vec()]);
        assert_eq!(whole(b"*1\r\n$0\r\n\r\n"), [Vec::<u8>::new()]);
        let binary = b"*2\r\n$4\r\nECHO\r\n$4\r\n\r\n\0\xff\r\n";
        assert_eq!(whole(binary)[1], b"\r\n\0\xff");
        assert!(whole(b"*0\r\n").is_empty());
        assert!(whole(b"*-1\r\n").is_empty());
    }

    #[test]
    fn inline_commands() {
        assert_eq!(whole(b"PING\r\n"), [b"PING".to_vec()]);
        assert_eq!(whole(b"SET  k   v\n"), [b"SET".to_vec(), b"k".to_vec(), b"v".to_vec()]);
        assert_eq!(whole(b"SET k \"a b\"\r\n")[2], b"a b");
        assert_eq!(whole(b"SET k 'a\\b'\r\n")[2], b"a\\b");
        assert!(whole(b"\r\n").is_empty());
        assert!(refused(b"SET k \"a\r\n", Bounds::new(100)).contains("unbalanced quotes"));
        assert!(refused(b"SET k \"a\"b\r\n", Bounds::new(100)).contains("unbalanced quotes"));
    }

    #[test]
    fn partial_commands_wait_for_more() {
        let cmd = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n";
        for cut in 0..cmd.len() {
            assert_eq!(words(&cmd[..cut], Bounds::new(100)).unwrap(), None, "cut at {cut}");
        }
        assert_eq!(words(b"PIN", Bounds::new(100)).unwrap(), None);
        // Two pipelined commands: the first is taken alone.
        let two = b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n";
        assert_eq!(words(two, Bounds::new(100)).unwrap().unwrap().1, 14);
    }

    #[test]
    fn bounds_and_bad_bytes_are_protocol_errors() {
        let b = Bounds::new(10);
        assert_eq!(refused(b"*2\r\n$11\r\n", b), "Protocol error: invalid bulk length");
        assert_eq!(refused(b"*2\r\n$-1\r\n", b), "Protocol error: invalid bulk length");
        assert_eq!(refused(b"*x\r\n", b), "Protocol error: invalid multibulk length");
        assert_eq!(refused(b"*2000000\r\n", b), "Protocol error: invalid multibulk length");
        assert_eq!(refused(b"*1\r\n+PING\r\n", b), "Protocol error: expected '$', got '+'");
        assert!(refused(b"*1\r\n$4\r\nPINGxx", b).contains("CRLF"));
        let long = [&b"*"[..], &[b'1'; MAX_INLINE + 3]].concat();
        assert_eq!(refused(&long, b), "Protocol error: too big mbulk count string");
        let inline = vec![b'a'; MAX_INLINE + 1];
        assert_eq!(refused(&inline, b), "Protocol error: too big inline request");
        let guest = Bounds::new(1 << 20).unauthenticated();
        assert_eq!(refused(b"*11\r\n", guest), "Protocol error: unauthenticated multibulk length");
        assert_eq!(
            refused(b"*1\r\n$20000\r\n", guest),
            "Protocol error: unauthenticated bulk length"
        );
    }

    proptest! {
        /// Any command encoded as a client encodes it reads back as its arguments,
        /// whatever bytes they hold and wherever the bytes are cut.
        #[test]
        fn encoded_commands_read_back(
            cmd in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..6),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut buf = Vec::new();
            let refs: Vec<&[u8]> = cmd.iter().map(Vec::as_slice).collect();
            crate::resp::encode_command(&mut buf, &refs);
            prop_assert_eq!(whole(&buf), cmd);
            let cut = cut.index(buf.len());
            prop_assert_eq!(words(&buf[..cut], Bounds::new(1 << 20)).unwrap(), None);
        }

        /// The one-pass count line agrees with the general path wherever it answers.
        #[test]
        fn quick_counts_agree_with_the_general_path(line in "-?[0-9]{0,21}(\r\n)?[0-9a\r]{0,3}") {
            let buf = format!("*{line}").into_bytes();
            if let Some((n, end)) = quick_count(&buf, 1) {
                prop_assert_eq!(line_end(&buf, 1, "line").unwrap(), Some(end));
                prop_assert_eq!(Some(n), count(&buf[1..end]));
            }
        }

        /// Arbitrary bytes never panic the reader, and what it takes is within them.
        #[test]
        fn any_bytes_are_read_or_refused(buf in prop::collection::vec(any::<u8>(), 0..200)) {
            let mut args = Vec::new();
            if let Ok(Some(n)) = parse(&buf, Bounds::new(64), &mut args) {
                prop_assert!(n <= buf.len());
                prop_assert!(args.iter().all(|r| r.end <= n));
            }
        }
    }
}
