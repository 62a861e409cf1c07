//! Routes of the Codex data API (`/api/codex/v1`). Every handler calls the engine's `Node`
//! handle and nothing else.

mod download;
mod info;
mod network;
mod upload;

use actix_web::{http::Method, web, HttpResponse};
use codex_actors::{parse_cid, Cid, CidError, Error};

use crate::error::ApiError;

/// Registers every route on an actix-web app.
pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/codex/v1")
            .route("/data", web::post().to(upload::upload))
            .route("/data", web::get().to(info::list))
            .route("/data/{cid}", web::get().to(download::download))
            .route("/data/{cid}", web::delete().to(info::delete))
            .route("/data", web::method(Method::OPTIONS).to(preflight))
            .route("/data/{cid}", web::method(Method::OPTIONS).to(preflight))
            .route("/data/{cid}/network", web::post().to(network::fetch))
            .route(
                "/data/{cid}/network/stream",
                web::get().to(download::network_stream),
            )
            .route(
                "/data/{cid}/network/manifest",
                web::get().to(network::manifest),
            )
            .route(
                "/data/{cid}/network/progress",
                web::get().to(network::progress),
            )
            .route("/data/{cid}/exists", web::get().to(info::exists))
            .route("/space", web::get().to(info::space))
            .route("/peerid", web::get().to(network::peer_id))
            .route("/spr", web::get().to(network::spr))
            .route("/connect/{peer}", web::get().to(network::connect))
            .route("/debug/info", web::get().to(network::debug_info)),
    )
    .route("/metrics", web::get().to(info::metrics))
    .default_service(web::to(not_found));
}

/// `OPTIONS` without an allowed origin on the data routes: 204 with no body, as Codex answers.
/// The preflight of an origin allowed with `--api-cors-origin` is answered, with its CORS
/// headers, by `guard.rs` on every route.
async fn preflight() -> HttpResponse {
    HttpResponse::NoContent().finish()
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .content_type("text/plain; charset=utf-8")
        .body("No such endpoint")
}

/// A CID from a request path.
pub(crate) enum PathCid {
    /// A Codex CID: the engine may hold it.
    Codex(Cid),
    /// A well-formed CID of another kind (CIDv0, another codec or hash) that this node can never
    /// hold. Codex treats it as any CID it does not have (404, `false`, 204), and so do we.
    Foreign(Cid),
}

impl PathCid {
    /// Parses CID text; 400 `Incorrect Cid` for text that is no CID at all.
    pub(crate) fn parse(text: &str) -> Result<Self, ApiError> {
        match parse_cid(text) {
            Ok(cid) => Ok(Self::Codex(cid)),
            Err(e @ CidError::Unsupported(_)) => Cid::try_from(text)
                .map(Self::Foreign)
                .map_err(|_| Error::from(e).into()),
            Err(e) => Err(Error::from(e).into()),
        }
    }

    /// The Codex CID, or `NotFound` (404) for a CID this node cannot hold.
    pub(crate) fn held(self) -> Result<Cid, ApiError> {
        match self {
            Self::Codex(cid) => Ok(cid),
            Self::Foreign(cid) => Err(Error::NotFound(cid).into()),
        }
    }
}
