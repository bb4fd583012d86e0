//! What the Redis keyspace commands (SCAN, KEYS, DBSIZE, FLUSHDB) need beyond dhrt's
//! scan: Redis's glob patterns, and Redis cursors — decimal numbers — for dhrt's scan
//! cursors.
//!
//! A dhrt cursor is a ring position (64 bits) and the last key examined there. In a
//! hashed collection keys sit at the positions their hashes give, so a Redis cursor
//! can be one 64-bit number: `n` means "from position `n` on", and a page that ended
//! on a key at position `p` continues at `p + 1` — only a key whose 64-bit hash equals
//! the last one's *and* sorts after it would be passed over, which for a collection
//! of a billion keys happens with odds of about one in 10^10 per page. Clients that
//! hold cursors in 64-bit integers (go-redis, node-redis) work. In an ordered
//! collection many keys share a position (their first 8 bytes), so the cursor is the
//! whole dhrt cursor written as one big decimal number — redis-py, Jedis and ioredis
//! hold cursors as strings or big integers — for keys up to [`MAX_ORDERED_KEY`] bytes.

use bytes::Bytes;
use dhrt_core::{hash::Position, node::scan::Cursor};

/// The longest key an ordered collection's Redis cursor may carry: its decimal form
/// stays under 200 digits.
pub const MAX_ORDERED_KEY: usize = 64;

/// Redis's cursor for dhrt's `cursor` (`None`: the scan is complete, "0").
pub fn redis_cursor(cursor: Option<&[u8]>, ordered: bool) -> Result<String, String> {
    let Some(bytes) = cursor else { return Ok("0".into()) };
    let c = Cursor::decode(bytes)?;
    if !ordered {
        let n: Option<Position> = if c.key.is_empty() { Some(c.pos) } else { c.pos.checked_add(1) };
        // Past the last position, or "before 0" (a scan that did not move): the end, or
        // the start — neither happens in a page that returned keys, see `dhrt_cursor`.
        return Ok(match n {
            Some(0) | None => "0".into(),
            Some(n) => n.to_string(),
        });
    }
    if c.key.len() > MAX_ORDERED_KEY {
        return Err(format!(
            "ERR SCAN cannot continue after a key longer than {MAX_ORDERED_KEY} bytes in an \
             ordered collection; scan it with dhrt's own protocol"
        ));
    }
    // A leading 1 keeps the position's leading zero bytes.
    let mut digits = vec![1u8];
    digits.extend_from_slice(bytes);
    Ok(to_decimal(&digits))
}

/// dhrt's cursor for Redis's `cursor`: `None` to start, an error (Redis's) for a
/// cursor no node handed out.
pub fn dhrt_cursor(cursor: &[u8], ordered: bool) -> Result<Option<Bytes>, String> {
    const INVALID: &str = "ERR invalid cursor";
    let text = std::str::from_utf8(cursor).map_err(|_| INVALID)?;
    if text == "0" {
        return Ok(None);
    }
    if !ordered {
        let n: u64 = text.parse().map_err(|_| INVALID)?;
        return Ok(Some(Cursor::before(n).encode()));
    }
    if text.len() > 200 || text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(INVALID.into());
    }
    let bytes = from_decimal(text);
    match bytes.split_first() {
        Some((1, rest)) if Cursor::decode(rest).is_ok() => Ok(Some(Bytes::copy_from_slice(rest))),
        _ => Err(INVALID.into()),
    }
}

/// `bytes` (big-endian) as a decimal number.
fn to_decimal(bytes: &[u8]) -> String {
    let mut n = bytes.to_vec();
    let mut digits = Vec::new();
    while n.iter().any(|&b| b != 0) {
        let mut rem = 0u32;
        for b in n.iter_mut() {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 10) as u8;
            rem = cur % 10;
        }
        digits.push(b'0' + rem as u8);
    }
    if digits.is_empty() {
        digits.push(b'0');
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

/// A decimal number (digits only) as big-endian bytes, without leading zeros.
fn from_decimal(text: &str) -> Vec<u8> {
    let mut n: Vec<u8> = Vec::new();
    for d in text.bytes() {
        let mut carry = u32::from(d - b'0');
        for b in n.iter_mut().rev() {
            let cur = u32::from(*b) * 10 + carry;
            *b = cur as u8;
            carry = cur >> 8;
        }
        while carry > 0 {
            n.insert(0, carry as u8);
            carry >>= 8;
        }
    }
    n
}

/// The literal start of a glob pattern: every key it matches begins with it.
pub fn literal_prefix(pattern: &[u8]) -> &[u8] {
    let end = pattern.iter().position(|b| matches!(b, b'*' | b'?' | b'[' | b'\\'));
    &pattern[..end.unwrap_or(pattern.len())]
}

/// Whether `key` matches the glob `pattern` as Redis matches them: `*` any run, `?` any
/// byte, `[abc]`, `[^a]`, `[a-z]` a class, `\x` the byte `x`. Iterative, with one
/// backtracking point, so any pattern costs at most `pattern × key` steps and no stack.
pub fn glob(pattern: &[u8], key: &[u8]) -> bool {
    let (mut p, mut k) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while k < key.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star = Some((p, k));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    k += 1;
                    continue;
                }
                b'[' => match class(pattern, p, key[k]) {
                    Some((true, next)) => {
                        p = next;
                        k += 1;
                        continue;
                    }
                    Some((false, _)) => {}
                    // Unclosed: a literal `[`.
                    None if key[k] == b'[' => {
                        p += 1;
                        k += 1;
                        continue;
                    }
                    None => {}
                },
                b'\\' if p + 1 < pattern.len() => {
                    if pattern[p + 1] == key[k] {
                        p += 2;
                        k += 1;
                        continue;
                    }
                }
                c => {
                    if c == key[k] {
                        p += 1;
                        k += 1;
                        continue;
                    }
                }
            }
        }
        // A mismatch: let the last `*` take one more byte, or fail.
        match star {
            Some((sp, sk)) => {
                p = sp + 1;
                k = sk + 1;
                star = Some((sp, sk + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// The class at `pattern[at] == b'['` against byte `b`: whether it matches, and where the
/// pattern goes on; `None` for an unclosed class (then `[` is a literal).
fn class(pattern: &[u8], at: usize, b: u8) -> Option<(bool, usize)> {
    let mut i = at + 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < pattern.len() {
        let c = pattern[i];
        if c == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if c == b'\\' && i + 1 < pattern.len() {
            matched |= pattern[i + 1] == b;
            i += 2;
        } else if i + 2 < pattern.len() && pattern[i + 1] == b'-' && pattern[i + 2] != b']' {
            let (lo, hi) = (c.min(pattern[i + 2]), c.max(pattern[i + 2]));
            matched |= lo <= b && b <= hi;
            i += 3;
        } else {
            matched |= c == b;
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn globs_match_as_redis_matches() {
        let yes = |p: &str, k: &str| assert!(glob(p.as_bytes(), k.as_bytes()), "{p} ~ {k}");
        let no = |p: &str, k: &str| assert!(!glob(p.as_bytes(), k.as_bytes()), "{p} !~ {k}");
        yes("*", "");
        yes("*", "anything");
        yes("user:*", "user:1");
        no("user:*", "use");
        yes("h?llo", "hello");
        no("h?llo", "hllo");
        yes("h[ae]llo", "hallo");
        no("h[ae]llo", "hillo");
        yes("h[^e]llo", "hallo");
        no("h[^e]llo", "hello");
        yes("h[a-b]llo", "hbllo");
        yes("a\\*b", "a*b");
        no("a\\*b", "axb");
        yes("*a*b*c*", "xxaxxbxxcxx");
        no("*a*b*c*", "xxaxxcxxbxx");
        yes("[", "[");
        assert_eq!(literal_prefix(b"user:*:x"), b"user:");
        assert_eq!(literal_prefix(b"plain"), b"plain");
    }

    #[test]
    fn hashed_cursors_are_64_bit_numbers() {
        let after = Cursor { pos: 41, key: Bytes::from_static(b"k") }.encode();
        assert_eq!(redis_cursor(Some(&after), false).unwrap(), "42");
        let back = dhrt_cursor(b"42", false).unwrap().unwrap();
        assert_eq!(Cursor::decode(&back).unwrap(), Cursor::before(42));
        let before = Cursor::before(7).encode();
        assert_eq!(redis_cursor(Some(&before), false).unwrap(), "7");
        assert_eq!(redis_cursor(None, false).unwrap(), "0");
        assert_eq!(dhrt_cursor(b"0", false).unwrap(), None);
        assert!(dhrt_cursor(b"x", false).is_err());
        assert!(dhrt_cursor(b"-1", false).is_err());
    }

    #[test]
    fn ordered_cursors_carry_the_whole_place() {
        let c = Cursor { pos: 0x0000_0102, key: Bytes::from_static(b"user:0001") }.encode();
        let text = redis_cursor(Some(&c), true).unwrap();
        assert!(text.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(dhrt_cursor(text.as_bytes(), true).unwrap().unwrap(), c);
        let long = Cursor { pos: 1, key: Bytes::from(vec![b'k'; 100]) }.encode();
        assert!(redis_cursor(Some(&long), true).is_err());
        assert!(dhrt_cursor(b"12345", true).is_err(), "not one a node handed out");
    }

    proptest! {
        #[test]
        fn decimal_round_trips(bytes in prop::collection::vec(any::<u8>(), 1..80)) {
            let mut lead = vec![1u8];
            lead.extend(&bytes);
            prop_assert_eq!(from_decimal(&to_decimal(&lead)), lead);
        }

        /// A pattern without special bytes matches exactly itself, with `*` anything
        /// that starts with it.
        #[test]
        fn literal_patterns(key in "[a-z:0-9]{0,12}", other in "[a-z:0-9]{0,12}") {
            prop_assert!(glob(key.as_bytes(), key.as_bytes()));
            prop_assert_eq!(glob(key.as_bytes(), other.as_bytes()), key == other);
            let star = format!("{key}*");
            prop_assert_eq!(glob(star.as_bytes(), other.as_bytes()), other.starts_with(&key));
        }
    }
}
