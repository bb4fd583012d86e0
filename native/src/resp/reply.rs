//! Replies as a Redis server writes them, in RESP2 or RESP3.
//!
//! A [`Writer`] appends to a connection's output buffer. The protocol is the
//! connection's (`HELLO 3` switches it to RESP3): the same call writes a nil as `$-1`
//! or `_`, a map as a flat array or `%`, a pushed message as an array or `>` — what
//! Redis itself writes for each version.

use super::push_decimal;

/// Which RESP a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// RESP2, every connection's start.
    #[default]
    Resp2,
    /// RESP3, after `HELLO 3`.
    Resp3,
}

/// Writes replies into `out`.
pub struct Writer<'a> {
    out: &'a mut Vec<u8>,
    proto: Protocol,
}

impl<'a> Writer<'a> {
    /// A writer appending to `out` in `proto`.
    pub fn new(out: &'a mut Vec<u8>, proto: Protocol) -> Self {
        Writer { out, proto }
    }

    fn line(&mut self, kind: u8, text: &[u8]) {
        self.out.push(kind);
        // A reply line cannot hold a line break: replace any (as Redis does for errors).
        self.out.extend(text.iter().map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }));
        self.out.extend_from_slice(b"\r\n");
    }

    fn header(&mut self, kind: u8, n: usize) {
        self.out.push(kind);
        push_decimal(self.out, n);
        self.out.extend_from_slice(b"\r\n");
    }

    /// Bytes already written as replies by another writer of the same protocol.
    pub fn raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// `+OK`.
    pub fn ok(&mut self) {
        self.out.extend_from_slice(b"+OK\r\n");
    }

    /// A simple string.
    pub fn simple(&mut self, text: &str) {
        self.line(b'+', text.as_bytes());
    }

    /// An error: `text` begins with its prefix (`ERR`, `WRONGTYPE`, `NOAUTH`...).
    pub fn error(&mut self, text: &str) {
        self.line(b'-', text.as_bytes());
    }

    /// An integer.
    pub fn integer(&mut self, n: i64) {
        self.out.push(b':');
        if n < 0 {
            self.out.push(b'-');
        }
        push_decimal(self.out, n.unsigned_abs() as usize);
        self.out.extend_from_slice(b"\r\n");
    }

    /// A bulk string.
    pub fn bulk(&mut self, bytes: &[u8]) {
        self.header(b'$', bytes.len());
        self.out.extend_from_slice(bytes);
        self.out.extend_from_slice(b"\r\n");
    }

    /// A bulk string, or nil.
    pub fn bulk_or_nil(&mut self, bytes: Option<&[u8]>) {
        match bytes {
            Some(b) => self.bulk(b),
            None => self.nil(),
        }
    }

    /// Nil: `$-1` in RESP2, `_` in RESP3.
    pub fn nil(&mut self) {
        match self.proto {
            Protocol::Resp2 => self.out.extend_from_slice(b"$-1\r\n"),
            Protocol::Resp3 => self.out.extend_from_slice(b"_\r\n"),
        }
    }

    /// The header of an array of `n` elements (written next).
    pub fn array(&mut self, n: usize) {
        self.header(b'*', n);
    }

    /// The header of a map of `n` pairs (a flat array of `2n` elements in RESP2).
    pub fn map(&mut self, n: usize) {
        match self.proto {
            Protocol::Resp2 => self.header(b'*', 2 * n),
            Protocol::Resp3 => self.header(b'%', n),
        }
    }

    /// The header of a set of `n` elements (an array in RESP2).
    pub fn set(&mut self, n: usize) {
        match self.proto {
            Protocol::Resp2 => self.header(b'*', n),
            Protocol::Resp3 => self.header(b'~', n),
        }
    }

    /// The header of a pushed message of `n` elements (a pub/sub message: an array in
    /// RESP2).
    pub fn push(&mut self, n: usize) {
        match self.proto {
            Protocol::Resp2 => self.header(b'*', n),
            Protocol::Resp3 => self.header(b'>', n),
        }
    }

    /// Text meant for people (`INFO`, `CLIENT INFO`): a bulk string in RESP2, a
    /// verbatim string of format `txt` in RESP3.
    pub fn verbatim(&mut self, text: &str) {
        match self.proto {
            Protocol::Resp2 => self.bulk(text.as_bytes()),
            Protocol::Resp3 => {
                self.header(b'=', text.len() + 4);
                self.out.extend_from_slice(b"txt:");
                self.out.extend_from_slice(text.as_bytes());
                self.out.extend_from_slice(b"\r\n");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(proto: Protocol, f: impl FnOnce(&mut Writer)) -> String {
        let mut out = Vec::new();
        f(&mut Writer::new(&mut out, proto));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn replies_in_both_protocols() {
        use Protocol::*;
        assert_eq!(written(Resp2, |w| w.ok()), "+OK\r\n");
        assert_eq!(written(Resp2, |w| w.error("ERR a\r\nb")), "-ERR a  b\r\n");
        assert_eq!(written(Resp2, |w| w.integer(-42)), ":-42\r\n");
        assert_eq!(written(Resp2, |w| w.integer(0)), ":0\r\n");
        assert_eq!(written(Resp2, |w| w.bulk(b"hi")), "$2\r\nhi\r\n");
        assert_eq!(written(Resp2, |w| w.nil()), "$-1\r\n");
        assert_eq!(written(Resp3, |w| w.nil()), "_\r\n");
        assert_eq!(written(Resp2, |w| w.map(2)), "*4\r\n");
        assert_eq!(written(Resp3, |w| w.map(2)), "%2\r\n");
        assert_eq!(written(Resp3, |w| w.push(3)), ">3\r\n");
        assert_eq!(written(Resp3, |w| w.set(1)), "~1\r\n");
        assert_eq!(written(Resp3, |w| w.verbatim("a")), "=5\r\ntxt:a\r\n");
        assert_eq!(written(Resp2, |w| w.verbatim("a")), "$1\r\na\r\n");
    }

    #[test]
    fn what_is_written_reads_back() {
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out, Protocol::Resp2);
        w.array(3);
        w.bulk(b"x");
        w.nil();
        w.integer(i64::MIN);
        let (v, n) = crate::resp::parse(&out).unwrap().unwrap();
        assert_eq!(n, out.len());
        use crate::resp::Value;
        assert_eq!(
            v,
            Value::Array(Some(vec![
                Value::Bulk(Some("x".into())),
                Value::Bulk(None),
                Value::Integer(i64::MIN)
            ]))
        );
    }
}
