//! Routes of the Codex data API (`/api/codex/v1`). Every handler calls the engine's `Node`
//! handle and nothing else.

mod download;
mod info;
mod upload;

use actix_web::{web, HttpResponse};

/// Registers every route on an actix-web app.
pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/codex/v1")
            .route("/data", web::post().to(upload::upload))
            .route("/data", web::get().to(info::list))
            .route("/data/{cid}", web::get().to(download::download))
            .route("/data/{cid}", web::delete().to(info::delete))
            .route(
                "/data/{cid}/network/manifest",
                web::get().to(info::manifest),
            )
            .route("/data/{cid}/exists", web::get().to(info::exists))
            .route("/space", web::get().to(info::space))
            .route("/debug/info", web::get().to(info::debug_info)),
    )
    .route("/metrics", web::get().to(info::metrics))
    .default_service(web::to(not_found));
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .content_type("text/plain; charset=utf-8")
        .body("No such endpoint")
}
