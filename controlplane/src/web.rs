//! The dashboard: the files Vite builds into `web/dist`, embedded in the
//! binary at compile time and served at `/` beside the API.

use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(rust_embed::Embed)]
// Relative to controlplane/Cargo.toml.
#[folder = "../web/dist/"]
// A build without the dashboard (`cargo build` before `npm run build`)
// still compiles; `/` then says how to get it.
#[allow_missing = true]
struct Dist;

const NOT_BUILT: &str = "<!doctype html><html lang=en><meta charset=utf-8>\
<title>slotkv</title><p>The dashboard was not built into this binary. \
Run <code>./run.sh</code>, or <code>npm ci &amp;&amp; npm run build</code> \
in <code>web/</code> and then <code>cargo build</code>. The API is at \
<code>/api/v1</code>.</p></html>";

/// Whether this binary carries the dashboard.
pub fn built() -> bool {
    Dist::get("index.html").is_some()
}

/// A file of the dashboard, or `None` (the caller answers 404).
pub fn serve(req: &Request) -> Option<Response> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return None;
    }
    let path = req.uri().path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    let Some(file) = Dist::get(path) else {
        if path == "index.html" {
            return Some(
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    NOT_BUILT,
                )
                    .into_response(),
            );
        }
        return None;
    };
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]));
    if req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag)
    {
        return Some(StatusCode::NOT_MODIFIED.into_response());
    }
    // Vite names assets by their content: they never change. The page
    // itself is checked every time, so a new build is picked up.
    let cache = if path.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    // Embedded files are static: served without a copy.
    let body = match file.data {
        std::borrow::Cow::Borrowed(b) => axum::body::Body::from(b),
        std::borrow::Cow::Owned(v) => axum::body::Body::from(v),
    };
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(file.metadata.mimetype()) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    // The page talks only to its own origin.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
             connect-src 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Some(r)
}
