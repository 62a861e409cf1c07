//! The dashboard: a page of plain HTML, CSS and JavaScript modules, compiled into the binary and
//! served at `/` (turned off with `--no-dashboard`). It uses only the REST API under
//! `/api/codex/v1`, the same routes curl uses, from the same origin, so it passes the API's
//! Origin/Host checks (`guard.rs`) without an exception. Nothing is loaded from elsewhere, and
//! the Content-Security-Policy says so to the browser.
//!
//! Files: `index.html` (the page), `style.css`, and one module per part: `app.js` (wiring,
//! refresh), `api.js` (requests, formatting), `upload.js`, `datasets.js`, `fetch.js`, `node.js`.

use actix_web::{http::header, web, HttpResponse};

/// One embedded file: its name under `/dashboard/`, its type and its bytes.
struct Asset {
    name: &'static str,
    mime: &'static str,
    body: &'static str,
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the page, served by name from this list only (a request never names a path
/// on disk).
const ASSETS: &[Asset] = &[
    Asset {
        name: "style.css",
        mime: "text/css; charset=utf-8",
        body: include_str!("style.css"),
    },
    Asset {
        name: "app.js",
        mime: JS,
        body: include_str!("app.js"),
    },
    Asset {
        name: "api.js",
        mime: JS,
        body: include_str!("api.js"),
    },
    Asset {
        name: "upload.js",
        mime: JS,
        body: include_str!("upload.js"),
    },
    Asset {
        name: "datasets.js",
        mime: JS,
        body: include_str!("datasets.js"),
    },
    Asset {
        name: "fetch.js",
        mime: JS,
        body: include_str!("fetch.js"),
    },
    Asset {
        name: "node.js",
        mime: JS,
        body: include_str!("node.js"),
    },
];

const INDEX: &str = include_str!("index.html");

/// Only the node itself: no other origin for scripts, styles, requests or frames; no framing
/// of the page by others (clickjacking); `data:` images for the empty favicon.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Registers `/` and `/dashboard/{file}`.
pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/dashboard/{file}", web::get().to(asset));
}

async fn index() -> HttpResponse {
    page("text/html; charset=utf-8", INDEX)
}

async fn asset(file: web::Path<String>) -> HttpResponse {
    match ASSETS.iter().find(|a| a.name == file.as_str()) {
        Some(a) => page(a.mime, a.body),
        None => HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("No such file"),
    }
}

/// A file of the page with the headers that keep it to itself. `no-cache` lets a browser keep
/// a copy but ask again, so a newer binary's page is never mixed with an older one's.
fn page(mime: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(mime)
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every module the page imports is served, so a new file cannot be forgotten here.
    #[test]
    fn every_imported_module_is_served() {
        let sources = std::iter::once(INDEX).chain(ASSETS.iter().map(|a| a.body));
        for source in sources {
            for piece in source.split(['"', '\'']) {
                let name = piece
                    .strip_prefix("./")
                    .or_else(|| piece.strip_prefix("/dashboard/"));
                if let Some(name) = name.filter(|n| n.ends_with(".js") || n.ends_with(".css")) {
                    assert!(
                        ASSETS.iter().any(|a| a.name == name),
                        "{name} is not served"
                    );
                }
            }
        }
    }

    /// Nothing from outside the node: no absolute URL in any file.
    #[test]
    fn nothing_is_loaded_from_elsewhere() {
        for source in std::iter::once(INDEX).chain(ASSETS.iter().map(|a| a.body)) {
            assert!(!source.contains("http://") && !source.contains("https://"));
        }
    }
}
