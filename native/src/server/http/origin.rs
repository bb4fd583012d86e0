//! Which web pages may talk to the node: the `Origin` check, CORS, and the refusal of
//! cross-site requests that would change something.
//!
//! A node on a developer's loopback is reachable from every page their browser opens,
//! and a browser lets any page send "simple" requests anywhere (an HTML form, a
//! `text/plain` POST, a `no-cors` fetch) and open WebSockets anywhere, with the page's
//! origin in the `Origin` header. So every request passes [`guard`] before any handler:
//!
//! - A request that changes state — any method but `GET`, `HEAD` and `OPTIONS`, and any
//!   protocol upgrade (WebSocket) — from a foreign page is refused with `403` and a JSON
//!   error body: its `Origin` is not allowed, or `Sec-Fetch-Site` says `cross-site` or
//!   `same-site` without an allowed `Origin`. Requests with neither header (the Rust
//!   client, Python, Node, curl) pass: they come from programs, not pages.
//! - `/v1/peer` is refused to anything that looks like a browser: peers are never pages.
//! - CORS: a preflight `OPTIONS` is answered for allowed origins only, and only their
//!   answers carry `Access-Control-Allow-Origin` (the origin itself, never `*`). A page of
//!   another origin can still send a `GET`, but the browser does not let it read the
//!   answer; that, with tokens, is what protects reads.
//! - DNS rebinding: a page on `evil.example` whose name later resolves to `127.0.0.1` is
//!   same-origin with itself, not with the node, so a loopback node refuses requests
//!   whose `Host` names a host it does not know (an IP address, `localhost` and the
//!   allowed origins' hosts are known).
//!
//! Allowed origins ([`Origins`]): the node's own (`http(s)://ADVERTISE`, and the
//! `localhost`, `127.0.0.1` and `[::1]` spellings of a loopback address), those of the
//! cluster's current members ([`MemberOrigins`], refreshed by the node thread: the
//! dashboard served by one member runs a light peer that connects to the others), and
//! `--allow-origin`. Origins are compared normalized ([`normalize`]).

use super::AppState;
use axum::{
    extract::{Request, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use std::{
    collections::HashSet,
    net::IpAddr,
    sync::{Arc, RwLock},
};

/// Most member addresses whose origins are kept (a bigger cluster's extra members are
/// not allowed as origins; nothing an outsider sends can grow the set past this).
pub const MAX_MEMBERS: usize = 1024;

/// The methods a CORS preflight allows.
const ALLOW_METHODS: &str = "GET, HEAD, POST, PUT, DELETE, OPTIONS";
/// The request headers a CORS preflight allows.
const ALLOW_HEADERS: &str = "Authorization, Content-Type";
/// How long a browser may cache a preflight answer, in seconds.
const PREFLIGHT_MAX_AGE: &str = "600";

/// The origins of the cluster's current members, shared between the node thread (which
/// replaces them when membership changes) and the HTTP layer (which reads them).
#[derive(Debug, Clone, Default)]
pub struct MemberOrigins(Arc<RwLock<HashSet<String>>>);

impl MemberOrigins {
    /// Replaces the members by those reachable at `addrs` (`host:port`), keeping the
    /// first [`MAX_MEMBERS`].
    pub fn set<'a>(&self, addrs: impl IntoIterator<Item = &'a str>) {
        let origins: HashSet<String> =
            addrs.into_iter().take(MAX_MEMBERS).flat_map(origins_of_addr).collect();
        let mut current = self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if *current != origins {
            *current = origins;
        }
    }

    /// Whether `origin` (normalized) is a member's.
    fn contains(&self, origin: &str) -> bool {
        self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner()).contains(origin)
    }
}

/// The web origins a node accepts requests from.
#[derive(Debug, Clone)]
pub struct Origins {
    /// The node's own origins and `--allow-origin`, normalized.
    fixed: HashSet<String>,
    /// The members' origins.
    members: MemberOrigins,
    /// Whether the node is on a loopback address (then `Host` is checked).
    loopback: bool,
}

impl Origins {
    /// The origins of the node reached at `own` (`host:port`), its `members` and the
    /// `allowed` origins (`--allow-origin`; any that is no origin is skipped with a
    /// warning, the command line refuses those before this).
    pub fn new(own: &str, allowed: &[String], members: MemberOrigins) -> Origins {
        let mut fixed: HashSet<String> = origins_of_addr(own).collect();
        for origin in allowed {
            match normalize(origin) {
                Ok(o) => {
                    fixed.insert(o);
                }
                Err(e) => tracing::warn!("--allow-origin {origin:?} is ignored: {e}"),
            }
        }
        let loopback = split_host_port(own).is_some_and(|(host, _)| is_loopback_host(host));
        Origins { fixed, members, loopback }
    }

    /// The origins of the node behind `state`, for [`guard`].
    pub fn shared(state: &AppState) -> Arc<Origins> {
        let members = state.member_origins.clone();
        Arc::new(Origins::new(&state.addr, &state.security.allow_origins, members))
    }

    /// Whether a page of `origin` (an `Origin` header's value) may talk to the node.
    pub fn allows(&self, origin: &str) -> bool {
        match normalize(origin) {
            Ok(o) => self.fixed.contains(&o) || self.members.contains(&o),
            Err(_) => false,
        }
    }

    /// Whether a request with `Host: host` may reach the node: on a loopback node, the
    /// host must be an IP address, `localhost` (or under `.localhost`), or the host of
    /// an allowed origin — a name the attacker controls could be resolved to the
    /// loopback by DNS rebinding. Other nodes are reached by any name.
    pub fn host_ok(&self, host: &str) -> bool {
        if !self.loopback {
            return true;
        }
        let name = split_host_port(host).map_or(host, |(h, _)| h).to_ascii_lowercase();
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        bare.parse::<IpAddr>().is_ok()
            || bare == "localhost"
            || bare.ends_with(".localhost")
            || self.allows(&format!("http://{host}"))
            || self.allows(&format!("https://{host}"))
    }

    /// What to do with a request: refuse it (a sentence saying why), or serve it and
    /// grant CORS to the origin returned (its `Origin` header, when allowed).
    pub fn check(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Option<HeaderValue>, String> {
        if let Some(host) = headers.get(header::HOST) {
            let host = host.to_str().unwrap_or_default();
            if !self.host_ok(host) {
                return Err(format!(
                    "this node is on the loopback and is not known as {host:?}: a page served under that name could be rebinding it to 127.0.0.1. Reach it as 127.0.0.1 or localhost, or allow the name with --allow-origin http://{host}",
                    host = shorten(host)
                ));
            }
        }
        let origin = headers.get(header::ORIGIN);
        let allowed = origin.filter(|o| o.to_str().is_ok_and(|o| self.allows(o))).cloned();
        let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
        if path == "/v1/peer" && (origin.is_some() || site.is_some()) {
            return Err("/v1/peer is for links between nodes, never for web pages".into());
        }
        let changes_state = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
            || headers.contains_key(header::UPGRADE);
        let foreign_site = matches!(site, Some("cross-site" | "same-site"));
        if (changes_state || is_preflight(method, headers))
            && allowed.is_none()
            && (origin.is_some() || foreign_site)
        {
            let from = origin.map_or_else(
                || "another site".to_string(),
                |o| format!("{:?}", shorten(o.to_str().unwrap_or("?"))),
            );
            return Err(format!(
                "requests that change data are not accepted from web pages of {from}: only the node's own origin, the cluster's members and --allow-origin origins may send them"
            ));
        }
        Ok(allowed)
    }
}

/// Refuses a request from a foreign web page (403, before any handler), answers an
/// allowed origin's preflight, and grants CORS to allowed origins.
pub async fn guard(State(origins): State<Arc<Origins>>, req: Request, next: Next) -> Response {
    let allowed = match origins.check(req.method(), req.uri().path(), req.headers()) {
        Ok(allowed) => allowed,
        Err(why) => {
            tracing::debug!(method = %req.method(), path = req.uri().path(), "refused: {why}");
            return refused(why);
        }
    };
    let mut resp = match &allowed {
        Some(_) if is_preflight(req.method(), req.headers()) => preflight(),
        _ => next.run(req).await,
    };
    let headers = resp.headers_mut();
    headers.append(header::VARY, HeaderValue::from_static("origin"));
    if let Some(origin) = allowed {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    resp
}

/// A CORS preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key(header::ORIGIN)
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The answer to an allowed origin's preflight (the origin is added by [`guard`]).
fn preflight() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (header::ACCESS_CONTROL_ALLOW_METHODS, ALLOW_METHODS),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOW_HEADERS),
            (header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE),
            (header::VARY, "access-control-request-method, access-control-request-headers"),
        ],
    )
        .into_response()
}

/// The refusal: 403 with the JSON error body of [`super::error`], code `forbidden`.
fn refused(message: String) -> Response {
    super::error::ApiError::new(dhrt_core::proto::client::ErrorCode::Forbidden, message)
        .into_response()
}

/// An origin as compared: `scheme://host[:port]`, lowercase, without the scheme's
/// default port or a trailing `/`. Only `http` and `https` origins exist for pages that
/// can be allowed; `null` (sandboxed frames, files) and `*` are refused.
pub fn normalize(origin: &str) -> Result<String, String> {
    let lower = origin.trim().to_ascii_lowercase();
    let (scheme, rest) = lower
        .split_once("://")
        .ok_or("an origin is scheme://host[:port], for example https://app.example.com")?;
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return Err(format!("the scheme {scheme:?} is not a web page's; use http or https")),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#', '@', '*']) {
        return Err("an origin has no path, query, user or wildcard: scheme://host[:port]".into());
    }
    let (host, port) = split_host_port(rest).unwrap_or((rest, None));
    let ipv6 = host.starts_with('[');
    let host_ok = !host.is_empty()
        && if ipv6 {
            host.ends_with(']') && host[1..host.len() - 1].parse::<std::net::Ipv6Addr>().is_ok()
        } else {
            host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        };
    if !host_ok {
        return Err(format!("{host:?} is not a host name or address"));
    }
    match port {
        None => Ok(format!("{scheme}://{host}")),
        Some(p) if p == default_port => Ok(format!("{scheme}://{host}")),
        Some(p) => Ok(format!("{scheme}://{host}:{p}")),
    }
}

/// `host` and the port of `host:port` (`[v6]:port` too); `None` when a port is given
/// but is no number.
fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = match s.rfind(':') {
        Some(i) if !s[i..].contains(']') && (s.starts_with('[') || !s[..i].contains(':')) => {
            (&s[..i], Some(&s[i + 1..]))
        }
        _ => (s, None),
    };
    match port {
        Some(p) => p.parse().ok().filter(|p| *p > 0).map(|p| (host, Some(p))),
        None => Some((host, None)),
    }
}

/// Whether `host` (a name, an IPv4 or a bracketed IPv6 address) is this machine's
/// loopback.
fn is_loopback_host(host: &str) -> bool {
    crate::server::security::is_loopback(host)
}

/// The origins of a node reached at `addr` (`host:port`): both schemes (the port serves
/// one of them), and every loopback spelling of a loopback address.
fn origins_of_addr(addr: &str) -> impl Iterator<Item = String> {
    let mut hosts = Vec::new();
    if let Some((host, Some(port))) = split_host_port(addr) {
        if is_loopback_host(host) {
            for h in ["localhost", "127.0.0.1", "[::1]"] {
                hosts.push(format!("{h}:{port}"));
            }
        }
        hosts.push(addr.to_string());
    }
    hosts
        .into_iter()
        .flat_map(|h| ["http", "https"].map(|s| normalize(&format!("{s}://{h}"))))
        .filter_map(Result::ok)
}

/// At most 100 bytes of `s`, for messages.
fn shorten(s: &str) -> &str {
    let mut end = s.len().min(100);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins(own: &str, allowed: &[&str]) -> Origins {
        let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
        Origins::new(own, &allowed, MemberOrigins::default())
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn origins_are_normalized() {
        assert_eq!(normalize("HTTPS://App.Example.com:443/").unwrap(), "https://app.example.com");
        assert_eq!(normalize("http://127.0.0.1:80").unwrap(), "http://127.0.0.1");
        assert_eq!(normalize("http://[::1]:7453").unwrap(), "http://[::1]:7453");
        assert_eq!(normalize("https://a.example:8443").unwrap(), "https://a.example:8443");
        for bad in [
            "null",
            "*",
            "https://*.example.com",
            "app.example.com",
            "ftp://a.example",
            "https://a.example/path",
            "https://user@a.example",
            "https://a.example:99999",
            "https://[nonsense]:1",
            "https://",
        ] {
            assert!(normalize(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn own_loopback_member_and_configured_origins_are_allowed() {
        let members = MemberOrigins::default();
        let o = Origins::new(
            "127.0.0.1:7453",
            &["https://app.example.com".into(), "not an origin".into()],
            members.clone(),
        );
        for ok in [
            "http://127.0.0.1:7453",
            "http://localhost:7453",
            "http://[::1]:7453",
            "https://127.0.0.1:7453",
            "https://app.example.com",
            "https://APP.example.com:443",
        ] {
            assert!(o.allows(ok), "{ok}");
        }
        for no in ["http://127.0.0.1:7454", "http://evil", "null", "https://app.example.com:8443"] {
            assert!(!o.allows(no), "{no}");
        }
        members.set(["127.0.0.1:7454"]);
        assert!(o.allows("http://127.0.0.1:7454") && o.allows("http://localhost:7454"));
        members.set(["127.0.0.1:7455"]);
        assert!(!o.allows("http://127.0.0.1:7454"), "a member gone is no longer allowed");
    }

    #[test]
    fn the_member_set_is_bounded() {
        let members = MemberOrigins::default();
        let addrs: Vec<String> =
            (0..MAX_MEMBERS + 10).map(|i| format!("10.0.{}.{}:1", i / 256, i % 256)).collect();
        members.set(addrs.iter().map(String::as_str));
        assert_eq!(members.0.read().unwrap().len(), MAX_MEMBERS * 2, "two schemes each");
    }

    #[test]
    fn foreign_pages_cannot_change_state() {
        let o = origins("127.0.0.1:7453", &["https://app.example.com"]);
        let post = Method::POST;
        let evil = headers(&[("origin", "http://evil.example")]);
        assert!(o.check(&post, "/users/alice/x", &evil).is_err());
        assert!(o.check(&Method::DELETE, "/users", &headers(&[("origin", "null")])).is_err());
        let cross = headers(&[("sec-fetch-site", "cross-site")]);
        assert!(o.check(&post, "/users/alice/x", &cross).is_err());
        let upgrade = headers(&[("origin", "http://evil.example"), ("upgrade", "websocket")]);
        assert!(o.check(&Method::GET, "/v1/ws", &upgrade).is_err());
        // Reads pass, without a CORS grant.
        assert_eq!(o.check(&Method::GET, "/users/alice", &evil), Ok(None));
        // Programs (no Origin) and the node's own pages pass.
        assert_eq!(o.check(&post, "/users/alice/x", &HeaderMap::new()), Ok(None));
        let own =
            headers(&[("origin", "http://127.0.0.1:7453"), ("sec-fetch-site", "same-origin")]);
        assert!(o.check(&post, "/users/alice/x", &own).unwrap().is_some());
        let app =
            headers(&[("origin", "https://app.example.com"), ("sec-fetch-site", "cross-site")]);
        assert!(o.check(&post, "/users/alice/x", &app).unwrap().is_some());
    }

    #[test]
    fn peers_are_never_pages() {
        let o = origins("127.0.0.1:7453", &[]);
        let own = headers(&[("origin", "http://127.0.0.1:7453")]);
        assert!(o.check(&Method::GET, "/v1/peer", &own).is_err());
        assert!(o
            .check(&Method::GET, "/v1/peer", &headers(&[("sec-fetch-site", "none")]))
            .is_err());
        assert_eq!(o.check(&Method::GET, "/v1/peer", &HeaderMap::new()), Ok(None));
    }

    #[test]
    fn a_loopback_node_refuses_unknown_host_names() {
        let o = origins("127.0.0.1:7453", &["http://dhrt.test:7453"]);
        for ok in
            ["127.0.0.1:7453", "localhost:7453", "[::1]:7453", "a.localhost:7453", "dhrt.test:7453"]
        {
            assert!(o.host_ok(ok), "{ok}");
        }
        assert!(!o.host_ok("evil.example:7453"));
        let h = headers(&[("host", "evil.example:7453")]);
        assert!(o.check(&Method::GET, "/users/alice", &h).is_err());
        let remote = origins("10.0.0.5:7453", &[]);
        assert!(remote.host_ok("dhrt.internal:7453"), "other nodes are reached by any name");
    }
}
