//! The HTTP API of `dhrt serve`: the dhrt-db routes of docs/http.md ([`legacy`]), the
//! canonical API under `/v1/` ([`v1`]), `/metrics`, `/openapi.json`, the WebSocket
//! endpoints ([`super::ws`]) and the dashboard ([`super::dashboard`]) — every route of
//! the one port, in one table.
//!
//! Handlers only translate: a request becomes one or a few [`dhrt_core::proto::client::Op`]s
//! run through [`AppState::call`] ([`ops`]), the reply becomes JSON or bytes
//! ([`encode`]), and every failure becomes an [`error::ApiError`] with a JSON body. The
//! route table ([`table`]) is also what the test holds `openapi.json` against, so the
//! document cannot silently miss a route. `docs/http.md` is the user's guide.

pub mod clock;
pub mod collections;
pub mod encode;
pub mod error;
pub mod input;
pub mod legacy;
pub mod ops;
pub mod origin;
pub mod tokens;
pub mod v1;

use super::{
    dashboard,
    handoff::{NotAnUpgrade, Upgrade},
    read_budget::ReadMeter,
    ws, AppState,
};
use axum::{
    extract::{rejection::QueryRejection, DefaultBodyLimit, Query, State},
    handler::Handler,
    http::{header, HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::{on, MethodFilter, MethodRouter},
    Router,
};
use dhrt_core::proto::client::ErrorCode;
use error::ApiError;

/// The OpenAPI 3.1 document of every route, served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// One route of the table: a method, a path (axum's `{param}` syntax, which is also
/// OpenAPI's) and its handler.
pub struct Route {
    /// The method.
    pub method: Method,
    /// The path.
    pub path: &'static str,
    /// The path as `openapi.json` writes it (differs for a catch-all `{*rest}`).
    pub doc_path: &'static str,
    /// Who may call it when the node requires tokens.
    pub access: Access,
    handler: MethodRouter<AppState>,
}

/// Who may call a route when the node requires tokens (`--admin-token-file`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A valid token (`Authorization: Bearer`); each operation is then checked against
    /// its grant ([`super::auth`]).
    Token,
    /// Anyone: the health check, the API description, the dashboard's files (its data
    /// comes over its WebSocket, which needs the token).
    Public,
    /// `/metrics`: a token, unless `--metrics-public`.
    Metrics,
    /// Checked by the handler itself: the client WebSocket (a token on the upgrade or as
    /// its first message) and peer links (the cluster's own handshake).
    Socket,
}

impl Route {
    /// The same route, with another access rule.
    fn access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    /// The same route, written `doc_path` in `openapi.json`.
    fn documented_as(mut self, doc_path: &'static str) -> Self {
        self.doc_path = doc_path;
        self
    }
}

/// A route for `method` on `path`; method filter and table entry agree by construction.
fn at<H, T>(method: Method, path: &'static str, handler: H) -> Route
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("the table uses standard methods");
    Route { method, path, doc_path: path, access: Access::Token, handler: on(filter, handler) }
}

/// Every route of the port; `batch` limits the bodies of batches (every other body is
/// limited by the router to one value, [`routes`]).
pub fn table(batch: usize) -> Vec<Route> {
    use Method as M;
    let mut batch_route = at(M::POST, "/v1/collections/{collection}/batch", v1::batch);
    batch_route.handler = batch_route.handler.layer(DefaultBodyLimit::max(batch));
    vec![
        at(M::GET, "/", legacy::stats),
        at(M::GET, "/{name}", legacy::get_name),
        at(M::DELETE, "/{name}", legacy::delete_name),
        at(M::POST, "/{first}/{second}", legacy::set_default),
        at(M::GET, "/{first}/{second}", legacy::get_key),
        at(M::DELETE, "/{first}/{second}", legacy::delete_key),
        at(M::POST, "/{collection}/{key}/{value}", legacy::set_key),
        at(M::GET, "/v1/collections/{collection}/keys/{key}", v1::get_value),
        at(M::PUT, "/v1/collections/{collection}/keys/{key}", v1::put_value),
        at(M::DELETE, "/v1/collections/{collection}/keys/{key}", v1::delete_value),
        at(M::GET, "/v1/collections/{collection}/keys", v1::scan),
        batch_route,
        at(M::DELETE, "/v1/collections/{collection}", v1::drop),
        at(M::GET, "/v1/collections", collections::list),
        at(M::GET, "/v1/collections/{collection}", collections::show),
        at(M::PUT, "/v1/collections/{collection}", collections::create),
        at(M::PATCH, "/v1/collections/{collection}", collections::alter),
        at(M::GET, "/v1/stats", v1::stats),
        at(M::GET, "/v1/ring", v1::ring),
        at(M::DELETE, "/v1/ring/{id}", v1::remove_member),
        at(M::GET, "/v1/health", v1::health).access(Access::Public),
        at(M::POST, "/v1/tokens", tokens::create),
        at(M::GET, "/v1/tokens", tokens::list),
        at(M::DELETE, "/v1/tokens/{id}", tokens::revoke),
        at(M::GET, "/v1/ws", client_socket).access(Access::Socket),
        at(M::GET, "/v1/peer", peer_socket).access(Access::Socket),
        at(M::GET, "/metrics", metrics).access(Access::Metrics),
        at(M::GET, "/openapi.json", openapi).access(Access::Public),
        at(M::GET, "/dashboard", dashboard::index).access(Access::Public),
        at(M::GET, "/dashboard/", dashboard::index).access(Access::Public),
        at(M::GET, "/dashboard/{*path}", dashboard::asset)
            .documented_as("/dashboard/{path}")
            .access(Access::Public),
    ]
}

/// `(method, path)` of every route served, the paths as `openapi.json` writes them.
pub fn served() -> Vec<(Method, &'static str)> {
    table(0).into_iter().map(|r| (r.method, r.doc_path)).collect()
}

/// The largest batch body: the largest request a client could send over the WebSocket,
/// with room for base64 and JSON.
pub fn batch_limit(state: &AppState) -> usize {
    state.max_frame.saturating_mul(3) / 2
}

/// The router of every route, with JSON errors for unknown paths and methods, bodies
/// limited to one value (`AppState::max_value`) except batches, requests from foreign
/// web pages refused before any route ([`origin`]), and the token check of each route's
/// [`Access`].
pub fn routes(state: &AppState) -> Router<AppState> {
    let mut router = Router::new();
    for route in table(batch_limit(state)) {
        let needs_token = match route.access {
            Access::Token => true,
            Access::Metrics => !state.security.metrics_public,
            Access::Public | Access::Socket => false,
        };
        let handler = if needs_token {
            route.handler.layer(axum::middleware::from_fn_with_state(
                state.clone(),
                super::auth::require_token,
            ))
        } else {
            route.handler
        };
        router = router.route(route.path, handler);
    }
    router
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(no_route)
        .layer(DefaultBodyLimit::max(state.max_value))
        .layer(axum::middleware::from_fn(clock::clock_headers))
        .layer(axum::middleware::from_fn_with_state(origin::Origins::shared(state), origin::guard))
}

/// `GET /v1/ws` ([`ws::client`]), with a JSON error for a request that is no upgrade.
async fn client_socket(
    upgrade: Result<Upgrade, NotAnUpgrade>,
    headers: HeaderMap,
    state: State<AppState>,
    meter: Option<axum::Extension<ReadMeter>>,
) -> Response {
    let meter = meter.map(|axum::Extension(m)| m).unwrap_or_default();
    match upgrade {
        Ok(upgrade) => ws::client(upgrade, headers, state, meter).await,
        Err(e) => not_an_upgrade(e.status, e.reason, "/v1/ws is the client WebSocket endpoint"),
    }
}

/// `GET /v1/peer` ([`ws::peer`]), with JSON errors for a request that is no upgrade or
/// lacks the handshake parameters.
async fn peer_socket(
    parts: axum::http::request::Parts,
    upgrade: Result<Upgrade, NotAnUpgrade>,
    hello: Result<Query<ws::PeerHello>, QueryRejection>,
    state: State<AppState>,
) -> Response {
    // Mutual TLS: a link without a certificate from the cluster CA goes no further.
    if let Some(refusal) = crate::tls::refuse_uncertified_peer(&state.security, &parts) {
        return refusal;
    }
    let context = "/v1/peer is for links between nodes";
    match (upgrade, hello) {
        (Ok(upgrade), Ok(hello)) => {
            let meter = parts.extensions.get::<ReadMeter>().cloned().unwrap_or_default();
            ws::peer(upgrade, hello.0, state.0, meter)
        }
        (Err(e), _) => not_an_upgrade(e.status, e.reason, context),
        (_, Err(e)) => ApiError::invalid(format!("{context}: {}", e.body_text())).into_response(),
    }
}

fn not_an_upgrade(status: StatusCode, reason: &str, context: &str) -> Response {
    let status = if status.is_client_error() { status } else { StatusCode::BAD_REQUEST };
    ApiError::invalid(format!("{context}: {reason}; connect with a WebSocket client"))
        .with_status(status)
        .into_response()
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let text = state.snapshot().await.map(|s| s.prometheus()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!(
        "there is no route {method} {}: the API is described at /openapi.json",
        shorten(uri.path())
    ))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        ErrorCode::Unsupported,
        format!(
            "{method} is not allowed on {}: the API is described at /openapi.json",
            shorten(uri.path())
        ),
    )
    .with_status(StatusCode::METHOD_NOT_ALLOWED)
}

fn shorten(path: &str) -> String {
    let mut end = path.len().min(200);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    path[..end].to_string()
}

/// The node thread is gone.
pub(crate) fn stopped() -> ApiError {
    ApiError::new(ErrorCode::Unavailable, "the node is shutting down: use another member")
}

/// A missing key.
pub(crate) fn no_key(collection: &str, key: &[u8]) -> ApiError {
    ApiError::not_found(format!("no key {} in the collection {collection:?}", encode::show(key)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn openapi_describes_every_route_served_and_no_other() {
        let doc: Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..3]), Some("3.1"));
        let paths = doc["paths"].as_object().expect("paths");
        let served = served();
        for (method, path) in &served {
            let op = &paths.get(*path).unwrap_or_else(|| panic!("{path} is not in openapi.json"))
                [method.as_str().to_ascii_lowercase()];
            assert!(op.is_object(), "{method} {path} is not in openapi.json");
            assert!(op["responses"].is_object(), "{method} {path} has no responses");
        }
        let methods = ["get", "put", "post", "delete", "patch", "head", "options"];
        for (path, item) in paths {
            for m in methods.iter().filter(|m| item.get(**m).is_some()) {
                assert!(
                    served.iter().any(|(sm, sp)| sp == path && sm.as_str().eq_ignore_ascii_case(m)),
                    "openapi.json describes {m} {path}, which is not served"
                );
            }
        }
    }

    #[test]
    fn the_table_has_no_duplicates() {
        let served = served();
        for (i, a) in served.iter().enumerate() {
            assert!(!served[i + 1..].contains(a), "{a:?} twice");
        }
    }
}
