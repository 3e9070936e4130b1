//! The console's two static files, compiled into the binary. Their URLs carry a hash of their
//! contents, so they are cached for a year and a new manager version is picked up at once.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

const CSS: &str = include_str!("static/console.css");
const JS: &str = include_str!("static/console.js");

fn versioned(name: &str, body: &str) -> String {
    let h = Sha256::digest(body.as_bytes());
    format!(
        "/console/static/{name}?v={}",
        hex::encode(h.get(..6).unwrap_or_default())
    )
}

/// URL of the stylesheet.
pub(crate) fn css_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| versioned("console.css", CSS))
}

/// URL of the script.
pub(crate) fn js_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| versioned("console.js", JS))
}

/// `GET /console/static/{name}`.
pub(crate) async fn serve(Path(name): Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "console.css" => (CSS, "text/css; charset=utf-8"),
        "console.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "not found").into_response(),
    };
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}
