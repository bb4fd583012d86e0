//! Client tokens on the server: who is asking, checked before anything reaches the node.
//!
//! The rules (roles, collections, reserved names) are the core's ([`dhrt_core::auth`]);
//! this module finds the [`Grant`] behind a token and applies it at the two doors:
//!
//! - the client WebSocket ([`super::ws`]): the token comes as `Authorization: Bearer` on
//!   the upgrade or as [`Op::Auth`], and every request of the connection is checked
//!   against the grant, looked up again through the cache so a revoked token stops
//!   working on an open connection too;
//! - the HTTP routes ([`super::http`]): [`require_token`] authenticates the request and
//!   runs its handler with the grant as the [`CALLER`] task-local, which
//!   [`super::AppState::call`] checks for every operation the handler runs. An operation
//!   reaching `call` with no caller while tokens are required is refused: the check fails
//!   closed.
//!
//! Tokens live in the reserved collection [`TOKENS_COLLECTION`], replicated like any
//! other. [`Tokens`] caches what it read for [`FRESH`], so a revocation reaches every node
//! within seconds; the cache is bounded ([`MAX_ENTRIES`]) and lookups of ids it does not
//! know are rate-limited ([`MISS_RATE`]), so a flood of made-up tokens cannot become a
//! flood of quorum reads. The bootstrap admin token comes from `--admin-token-file`: it is
//! compared with what the file held at start, never stored in the ring. Secrets are
//! compared as SHA-256 digests, in constant time. Token management (create, list, revoke)
//! is [`manage`].

pub mod manage;
pub mod session;

use super::{http::error::ApiError, security::SecurityOptions, AppState};
use axum::{
    extract::{Request, State},
    http::{header, HeaderMap, HeaderValue},
    middleware::Next,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use dhrt_core::{
    auth::{check_reserved, parse_token, Grant, TokenRecord, TOKENS_COLLECTION},
    proto::client::{Consistency, ErrorCode, Op, Reply},
};
use ring::digest;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// How long a token looked up stays trusted before it is read again: the longest a
/// revoked token keeps working on a node that had just read it.
pub const FRESH: Duration = Duration::from_secs(2);
/// How long past [`FRESH`] a cached token may still be used while another request is
/// reading it again, or when the read fails (no quorum).
pub const STALE_GRACE: Duration = Duration::from_secs(8);
/// Most token ids cached (known and unknown).
pub const MAX_ENTRIES: usize = 4096;
/// Lookups of token ids not in the cache allowed per second (with a burst of as many).
pub const MISS_RATE: f64 = 50.0;
/// Shortest bootstrap admin token accepted, in characters.
pub const MIN_ADMIN_TOKEN: usize = 32;

tokio::task_local! {
    /// The grant of the HTTP request being served (set by [`require_token`]).
    pub static CALLER: Arc<Grant>;
}

/// Why a client is refused: an error code (`unauthorized`, `forbidden`, `unavailable`)
/// and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What kind of refusal.
    pub code: ErrorCode,
    /// What to do about it.
    pub message: String,
}

impl Refusal {
    fn new(code: ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal { code, message: message.into() }
    }

    /// No usable token.
    pub fn unauthorized(message: impl Into<String>) -> Refusal {
        Refusal::new(ErrorCode::Unauthorized, message)
    }

    /// The token does not allow it.
    pub fn forbidden(denied: impl std::fmt::Display) -> Refusal {
        Refusal::new(ErrorCode::Forbidden, denied.to_string())
    }

    /// The refusal as a node's error reply.
    pub fn reply(self) -> Reply {
        Reply::Error { code: self.code, message: self.message, acked: None }
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        ApiError::new(r.code, r.message)
    }
}

/// The message for a request that carries no token.
pub const NO_TOKEN: &str = "this node requires a token: pass --token (or set DHRT_TOKEN), \
     send `Authorization: Bearer TOKEN`, or send Op::Auth first on a WebSocket";

/// A token a client presented, hashed: what a connection keeps instead of the string.
#[derive(Clone, PartialEq, Eq)]
pub enum Presented {
    /// The bootstrap admin token of `--admin-token-file`.
    Admin,
    /// A token of the ring: its id and the SHA-256 of its secret.
    Token {
        /// The id.
        id: String,
        /// SHA-256 of the secret's text.
        digest: [u8; 32],
    },
}

/// A token known to the ring: the hash of its secret and its grant.
#[derive(Clone)]
struct Known {
    hash: [u8; 32],
    grant: Arc<Grant>,
}

impl Known {
    fn of(record: TokenRecord) -> Known {
        Known { hash: record.hash, grant: Arc::new(record.grant()) }
    }
}

impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Presented::Admin => f.write_str("Presented::Admin"),
            Presented::Token { id, .. } => write!(f, "Presented::Token({id})"),
        }
    }
}

/// One cached lookup of a token id.
struct Entry {
    /// What the ring holds, `None` when the id is unknown or revoked.
    known: Option<Known>,
    /// When it was read.
    read_at: Instant,
    /// A request is reading it again.
    refreshing: bool,
}

/// Lookups of unknown ids allowed, refilled at [`MISS_RATE`].
struct Bucket {
    level: f64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * MISS_RATE;
        self.level = (self.level + refill).min(MISS_RATE);
        self.at = now;
        if self.level >= 1.0 {
            self.level -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The node's view of the cluster's tokens: the bootstrap admin token and a short-lived
/// cache of the token records read from the ring.
pub struct Tokens {
    required: bool,
    admin: Option<[u8; 32]>,
    admin_grant: Arc<Grant>,
    cache: Mutex<(HashMap<String, Entry>, Bucket)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("required", &self.required).finish_non_exhaustive()
    }
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, bytes);
    let mut out = [0; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Whether two digests are equal, in time independent of where they differ.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Tokens {
    /// The tokens of a node started with `security`: reads the bootstrap admin token
    /// file, if any (tokens are then required).
    pub fn new(security: &SecurityOptions) -> Result<Tokens, String> {
        let admin = match &security.admin_token_file {
            Some(path) => Some(sha256(read_admin_token(path)?.as_bytes())),
            None => None,
        };
        Ok(Tokens::with_admin(admin))
    }

    /// Tokens with the admin token whose SHA-256 is `admin` (required when given).
    pub fn with_admin(admin: Option<[u8; 32]>) -> Tokens {
        Tokens {
            required: admin.is_some(),
            admin,
            admin_grant: Arc::new(Grant::admin()),
            cache: Mutex::new((HashMap::new(), Bucket { level: MISS_RATE, at: Instant::now() })),
        }
    }

    /// Whether clients must present a token.
    pub fn required(&self) -> bool {
        self.required
    }

    /// Takes a presented token apart: the admin token, or a well-formed ring token.
    pub fn present(&self, token: &str) -> Result<Presented, Refusal> {
        let token = token.trim();
        if let Some(admin) = &self.admin {
            if same(admin, &sha256(token.as_bytes())) {
                return Ok(Presented::Admin);
            }
        }
        match parse_token(token) {
            Some(p) => {
                Ok(Presented::Token { id: p.id.to_string(), digest: sha256(p.secret.as_bytes()) })
            }
            None => Err(Refusal::unauthorized(
                "the token presented is malformed: a token looks like dhrt_<16 hex digits>_<43 \
                 characters>, as `dhrt token create` printed it",
            )),
        }
    }

    /// Presents `token` and looks up its grant.
    pub async fn authenticate(
        &self,
        state: &AppState,
        token: &str,
    ) -> Result<(Presented, Arc<Grant>), Refusal> {
        let presented = self.present(token)?;
        let grant = self.grant(state, &presented).await?;
        Ok((presented, grant))
    }

    /// The grant behind a presented token, from the cache or read again from the ring.
    pub async fn grant(&self, state: &AppState, p: &Presented) -> Result<Arc<Grant>, Refusal> {
        let (id, digest) = match p {
            Presented::Admin => return Ok(self.admin_grant.clone()),
            Presented::Token { id, digest } => (id, digest),
        };
        let now = Instant::now();
        let stale = {
            let mut cache = self.cache.lock().map_err(|_| internal())?;
            let (entries, bucket) = &mut *cache;
            match entries.get_mut(id) {
                Some(e) if now.duration_since(e.read_at) < FRESH => {
                    return verify(e.known.as_ref(), digest);
                }
                Some(e) if e.refreshing && now.duration_since(e.read_at) < FRESH + STALE_GRACE => {
                    return verify(e.known.as_ref(), digest);
                }
                Some(e) => {
                    e.refreshing = true;
                    Some(e.known.clone())
                }
                None if bucket.take(now) => None,
                None => {
                    return Err(Refusal::new(
                        ErrorCode::Unavailable,
                        "too many unknown tokens are being presented to this node: try again \
                         in a second",
                    ))
                }
            }
        };
        match read_record(state, id).await {
            Ok(record) => {
                let known = record.map(Known::of);
                let result = verify(known.as_ref(), digest);
                self.store(id, known, now);
                result
            }
            Err(e) => {
                // Keep serving a recent answer while the ring cannot be read.
                if let Ok(mut cache) = self.cache.lock() {
                    if let Some(entry) = cache.0.get_mut(id) {
                        entry.refreshing = false;
                        if now.duration_since(entry.read_at) < FRESH + STALE_GRACE {
                            return verify(stale.flatten().as_ref(), digest);
                        }
                    }
                }
                Err(e)
            }
        }
    }

    /// Caches what was read about `id`, making room when the cache is full.
    fn store(&self, id: &str, known: Option<Known>, read_at: Instant) {
        let Ok(mut cache) = self.cache.lock() else { return };
        let entries = &mut cache.0;
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(id) {
            let now = Instant::now();
            entries.retain(|_, e| now.duration_since(e.read_at) < FRESH);
            if entries.len() >= MAX_ENTRIES {
                entries.retain(|_, e| e.known.is_some());
            }
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(id.to_string(), Entry { known, read_at, refreshing: false });
    }

    /// Forgets what is cached about `id` (after a revocation on this node).
    pub fn forget(&self, id: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.0.remove(id);
        }
    }

    /// Checks `op` for the HTTP request being served ([`CALLER`]): reserved
    /// collections are refused to everyone; with tokens required, the caller's grant
    /// must allow the operation, and no caller at all is refused.
    pub fn authorize_current(&self, op: &Op) -> Result<(), Refusal> {
        check_reserved(op).map_err(Refusal::forbidden)?;
        if !self.required {
            return Ok(());
        }
        match CALLER.try_with(|g| g.permits(op)) {
            Ok(result) => result.map_err(Refusal::forbidden),
            Err(_) => Err(Refusal::unauthorized(NO_TOKEN)),
        }
    }

    /// Checks that the HTTP request being served may drop `collection` (admins only).
    pub fn authorize_drop(&self, collection: &str) -> Result<(), Refusal> {
        let grant = match CALLER.try_with(|g| g.clone()) {
            Ok(grant) if self.required => grant,
            Err(_) if self.required => return Err(Refusal::unauthorized(NO_TOKEN)),
            _ => self.admin_grant.clone(),
        };
        grant.may_drop(collection).map_err(Refusal::forbidden)
    }
}

fn internal() -> Refusal {
    Refusal::new(ErrorCode::Internal, "the token cache is unusable after a crash; restart the node")
}

/// The grant of `record` if `digest` is its secret's.
fn verify(known: Option<&Known>, digest: &[u8; 32]) -> Result<Arc<Grant>, Refusal> {
    match known {
        Some(k) if same(&k.hash, digest) => Ok(k.grant.clone()),
        _ => Err(Refusal::unauthorized(
            "the token presented is unknown or was revoked: ask an admin for a token \
             (`dhrt token create`)",
        )),
    }
}

/// Reads the record of token `id` at quorum (`None` when there is none).
async fn read_record(state: &AppState, id: &str) -> Result<Option<TokenRecord>, Refusal> {
    let op = Op::Get {
        collection: TOKENS_COLLECTION.into(),
        key: Bytes::copy_from_slice(id.as_bytes()),
        consistency: Consistency::Quorum,
    };
    match state.call_unchecked(op).await {
        Reply::Value { value: None, .. } => Ok(None),
        // A damaged record authorizes nothing.
        Reply::Value { value: Some(v), .. } => Ok(TokenRecord::decode(&v).ok()),
        Reply::Error { message, .. } => Err(Refusal::new(
            ErrorCode::Unavailable,
            format!("cannot check the token now ({message}); try again"),
        )),
        _ => Err(internal()),
    }
}

/// Reads the bootstrap admin token: the file's text, surrounding whitespace trimmed, at
/// least [`MIN_ADMIN_TOKEN`] characters.
pub fn read_admin_token(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the admin token file {}: {e}", path.display()))?;
    let token = text.trim();
    if token.chars().count() < MIN_ADMIN_TOKEN {
        return Err(format!(
            "the admin token in {} is {} characters long; use at least {MIN_ADMIN_TOKEN} \
             (for example: head -c 32 /dev/urandom | base64 > {})",
            path.display(),
            token.chars().count(),
            path.display()
        ));
    }
    Ok(token.to_string())
}

/// The token of an `Authorization: Bearer TOKEN` header, if there is one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

/// The middleware of every HTTP route that needs a token: authenticates the request's
/// `Authorization: Bearer` and runs the handler with its grant as [`CALLER`]. Without
/// tokens required it only runs the handler.
pub async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !state.tokens.required() {
        return next.run(req).await;
    }
    let Some(token) = bearer(req.headers()) else {
        return challenge(Refusal::unauthorized(NO_TOKEN));
    };
    match state.tokens.authenticate(&state, token).await {
        Ok((_, grant)) => CALLER.scope(grant, next.run(req)).await,
        Err(refusal) => challenge(refusal),
    }
}

/// A refusal as an HTTP response, with `WWW-Authenticate: Bearer` on a 401.
pub fn challenge(refusal: Refusal) -> Response {
    let unauthorized = refusal.code == ErrorCode::Unauthorized;
    let mut response = ApiError::from(refusal).into_response();
    if unauthorized {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"dhrt\""));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_token_and_ring_tokens_are_told_apart() {
        let admin = "a".repeat(40);
        let tokens = Tokens::with_admin(Some(sha256(admin.as_bytes())));
        assert!(tokens.required());
        assert!(matches!(tokens.present(&format!(" {admin}\n")), Ok(Presented::Admin)));
        let t = dhrt_core::auth::format_token([1; 8], [2; 32]);
        assert!(matches!(tokens.present(&t), Ok(Presented::Token { .. })));
        let bad = tokens.present("nonsense").unwrap_err();
        assert_eq!(bad.code, ErrorCode::Unauthorized);
        assert!(!Tokens::with_admin(None).required());
    }

    #[test]
    fn bearer_headers_are_read() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer   abc "));
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn short_admin_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.token");
        std::fs::write(&path, "short\n").unwrap();
        assert!(read_admin_token(&path).unwrap_err().contains("at least 32"));
        std::fs::write(&path, format!("  {}\n", "x".repeat(32))).unwrap();
        assert_eq!(read_admin_token(&path).unwrap(), "x".repeat(32));
        assert!(read_admin_token(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn the_miss_bucket_refills_at_its_rate() {
        let start = Instant::now();
        let mut b = Bucket { level: MISS_RATE, at: start };
        let taken = (0..1000).filter(|_| b.take(start)).count();
        assert_eq!(taken, MISS_RATE as usize);
        assert!(!b.take(start));
        assert!(b.take(start + Duration::from_millis(100)));
    }

    #[test]
    fn digests_compare_equal_only_when_equal() {
        assert!(same(&[1; 32], &[1; 32]));
        let mut other = [1; 32];
        other[31] = 0;
        assert!(!same(&[1; 32], &other));
    }
}
