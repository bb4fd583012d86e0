//! The HTTP API: the dhrt-db routes of DESIGN.md §4, the canonical `/v1/` API,
//! `/metrics` and `/openapi.json`.

use super::AppState;
use axum::{extract::State, http::header, response::IntoResponse, routing::get, Router};

/// The HTTP routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let text = state.snapshot().await.map(|s| s.prometheus()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
