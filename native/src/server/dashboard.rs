//! The dashboard at `/dashboard`, served by every node from files embedded in the
//! binary at build time.
//!
//! The page (`js/dashboard/`) is plain ES modules, CSS and SVG; it talks to the cluster
//! through the npm package `dhrt` — the package's JavaScript (`js/src/`) and its
//! WebAssembly light peer (`js/pkg/`, committed, rebuilt by `scripts/build-js.sh`) — which
//! is served under `/dashboard/dhrt/` with the package's own layout, so its relative
//! imports resolve as they do from npm. Every file has its content type and an `ETag`;
//! `Cache-Control: no-cache` makes a browser revalidate (a `304` when the binary did not
//! change) so a node upgraded in place never serves a stale page. The WebAssembly module
//! is also embedded gzipped and sent so to browsers that accept it.

use axum::{
    extract::Path,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use std::sync::OnceLock;

/// One embedded file.
struct Asset {
    /// Its path under `/dashboard/`.
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    /// The same bytes gzipped, when shipped so.
    gzip: Option<&'static [u8]>,
}

macro_rules! asset {
    ($path:literal, $file:literal, $type:expr) => {
        Asset {
            path: $path,
            content_type: $type,
            body: include_bytes!(concat!("../../../js/", $file)),
            gzip: None,
        }
    };
}

/// The content type of JavaScript modules.
const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the dashboard.
static ASSETS: &[Asset] = &[
    asset!("index.html", "dashboard/index.html", "text/html; charset=utf-8"),
    asset!("style.css", "dashboard/style.css", "text/css; charset=utf-8"),
    asset!("app.js", "dashboard/app.js", JS),
    asset!("chart.js", "dashboard/chart.js", JS),
    asset!("keys.js", "dashboard/keys.js", JS),
    asset!("nodes.js", "dashboard/nodes.js", JS),
    asset!("ring.js", "dashboard/ring.js", JS),
    asset!("dhrt/src/index.js", "src/index.js", JS),
    asset!("dhrt/src/bytes.js", "src/bytes.js", JS),
    asset!("dhrt/src/errors.js", "src/errors.js", JS),
    asset!("dhrt/src/replica.js", "src/replica.js", JS),
    asset!("dhrt/src/socket.js", "src/socket.js", JS),
    asset!("dhrt/src/wasm.js", "src/wasm.js", JS),
    asset!("dhrt/pkg/dhrt_wasm.js", "pkg/dhrt_wasm.js", JS),
    Asset {
        path: "dhrt/pkg/dhrt_wasm_bg.wasm",
        content_type: "application/wasm",
        body: include_bytes!("../../../js/pkg/dhrt_wasm_bg.wasm"),
        gzip: Some(include_bytes!("../../../js/pkg/dhrt_wasm_bg.wasm.gz")),
    },
];

/// Every path served under `/dashboard/` (for tests and the docs).
pub fn paths() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|a| a.path)
}

/// The `ETag` of every asset, computed once: a hash of its bytes.
fn etag(i: usize) -> &'static HeaderValue {
    static TAGS: OnceLock<Vec<HeaderValue>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let hash = xxhash_rust::xxh3::xxh3_64(a.body);
                HeaderValue::from_str(&format!("\"{hash:016x}\"")).expect("hex is a valid header")
            })
            .collect()
    });
    &tags[i]
}

/// `GET /dashboard` and `GET /dashboard/`: the page.
pub async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `GET /dashboard/{*path}`: the page's files.
pub async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(if path.is_empty() { "index.html" } else { &path }, &headers)
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.path == path) else {
        let body = format!(
            "{{\"error\":{{\"code\":\"not_found\",\"message\":\"the dashboard has no file {}: open /dashboard\"}}}}",
            path.chars().filter(|c| c.is_ascii_alphanumeric() || "/._-".contains(*c)).take(100).collect::<String>()
        );
        return (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "application/json")], body)
            .into_response();
    };
    let a = &ASSETS[i];
    let tag = etag(i);
    let cache = [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::ETAG, tag.clone()),
        (header::VARY, HeaderValue::from_static("accept-encoding")),
        // No other site may frame the dashboard (clickjacking its buttons).
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("frame-ancestors 'none'")),
    ];
    if headers.get(header::IF_NONE_MATCH).is_some_and(|v| v == tag) {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    let content_type = [(header::CONTENT_TYPE, HeaderValue::from_static(a.content_type))];
    let accepts_gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    match a.gzip {
        Some(gz) if accepts_gzip => {
            let encoding = [(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"))];
            (content_type, encoding, cache, gz).into_response()
        }
        _ => (content_type, cache, a.body).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_page_imports_is_embedded() {
        // Relative and absolute imports of every embedded module resolve to an asset.
        let re_from = |text: &str| -> Vec<String> {
            text.split("from '")
                .skip(1)
                .chain(text.split("import('").skip(1))
                .filter_map(|s| s.split('\'').next().map(str::to_string))
                .collect()
        };
        for a in ASSETS.iter().filter(|a| a.content_type == JS) {
            let text = std::str::from_utf8(a.body).expect("modules are UTF-8");
            let dir = a.path.rsplit_once('/').map_or("", |(d, _)| d);
            for spec in re_from(text) {
                let local = spec.starts_with('.') || spec.starts_with('/');
                if !local || !spec.ends_with(".js") {
                    // `node:…` and `ws` are Node only, never loaded in a browser; JSDoc
                    // type references (`import('./index').Client`) name no file.
                    continue;
                }
                let resolved = if let Some(abs) = spec.strip_prefix("/dashboard/") {
                    abs.to_string()
                } else {
                    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
                    for seg in spec.split('/') {
                        match seg {
                            "." => {}
                            ".." => {
                                parts.pop();
                            }
                            s => parts.push(s),
                        }
                    }
                    parts.join("/")
                };
                assert!(paths().any(|p| p == resolved), "{} imports {spec}: not embedded", a.path);
            }
        }
    }

    #[test]
    fn the_wasm_is_gzipped_only_for_browsers_that_accept_it() {
        let mut h = HeaderMap::new();
        let plain = serve("dhrt/pkg/dhrt_wasm_bg.wasm", &h);
        assert_eq!(plain.headers()[header::CONTENT_TYPE], "application/wasm");
        assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("br, gzip;q=0.9"));
        let gz = serve("dhrt/pkg/dhrt_wasm_bg.wasm", &h);
        assert_eq!(gz.headers()[header::CONTENT_ENCODING], "gzip");
        let tag = gz.headers()[header::ETAG].clone();
        h.insert(header::IF_NONE_MATCH, tag);
        assert_eq!(serve("dhrt/pkg/dhrt_wasm_bg.wasm", &h).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(serve("nope.js", &HeaderMap::new()).status(), StatusCode::NOT_FOUND);
        let index = serve("index.html", &HeaderMap::new());
        assert_eq!(index.headers()[header::CACHE_CONTROL], "no-cache");
        assert_eq!(index.headers()[header::X_FRAME_OPTIONS], "DENY", "no site may frame it");
        assert_eq!(index.headers()[header::CONTENT_SECURITY_POLICY], "frame-ancestors 'none'");
    }
}
