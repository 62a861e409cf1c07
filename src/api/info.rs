//! The JSON endpoints: a manifest, existence, space, and the Prometheus text at `/metrics`.

use actix_web::{web, HttpResponse};
use codex_actors::{cid_text, Cid, Manifest, Node};
use serde::Serialize;
use serde_json::json;

use super::PathCid;
use crate::error::ApiError;

/// Codex's manifest JSON (section 1.5 of the brief): fields in Codex's order, camelCase.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ManifestJson {
    tree_cid: String,
    dataset_size: u64,
    block_size: u32,
    filename: Option<String>,
    mimetype: Option<String>,
    protected: bool,
}

impl From<&Manifest> for ManifestJson {
    fn from(m: &Manifest) -> Self {
        Self {
            tree_cid: cid_text(&m.tree_cid),
            dataset_size: m.dataset_size,
            block_size: m.block_size,
            filename: m.filename.clone(),
            mimetype: m.mimetype.clone(),
            protected: false,
        }
    }
}

/// `{"cid": …, "manifest": {…}}`, the item of `GET /data` and the body of `/network/manifest`.
/// Structs rather than `json!` keep Codex's key order (a `json!` object sorts its keys).
#[derive(Serialize)]
pub(crate) struct ManifestEntry {
    cid: String,
    manifest: ManifestJson,
    /// Unix seconds at which the dataset expires, in `GET /data` (this node's addition; absent
    /// for a dataset that never expires, and on the other routes).
    #[serde(skip_serializing_if = "Option::is_none")]
    expiry: Option<u64>,
}

impl ManifestEntry {
    pub(crate) fn new(cid: &Cid, manifest: &Manifest) -> Self {
        Self {
            cid: cid_text(cid),
            manifest: manifest.into(),
            expiry: None,
        }
    }
}

/// The body of `GET /data`.
#[derive(Serialize)]
struct Listing {
    content: Vec<ManifestEntry>,
}

/// The body of `GET /space`, keys in Codex's order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpaceJson {
    total_blocks: u64,
    quota_max_bytes: u64,
    quota_used_bytes: u64,
    quota_reserved_bytes: u64,
}

/// The query of `GET /data`.
#[derive(serde::Deserialize)]
pub(crate) struct ListQuery {
    /// `?expiry=true`: each entry also gets its dataset's expiry (this node's addition; without
    /// it the body is byte for byte what Codex answers).
    #[serde(default)]
    expiry: bool,
}

/// `GET /data`: every local manifest. A record that cannot be decoded is logged and skipped;
/// it does not hide the rest (Codex stops at the first).
pub(crate) async fn list(
    node: web::Data<Node>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let mut content = Vec::new();
    for dataset in node.datasets(query.expiry).await? {
        match dataset.manifest {
            Ok(m) => content.push(ManifestEntry {
                expiry: dataset.expiry,
                ..ManifestEntry::new(&dataset.cid, &m)
            }),
            Err(e) => {
                tracing::warn!(cid = %cid_text(&dataset.cid), error = %e, "skipping unreadable manifest")
            }
        }
    }
    Ok(HttpResponse::Ok().json(Listing { content }))
}

/// `GET /data/{cid}/exists`: `{"<cid>": bool}` as the Codex server answers (not openapi's `has`).
pub(crate) async fn exists(
    path: web::Path<String>,
    node: web::Data<Node>,
) -> Result<HttpResponse, ApiError> {
    let (cid, found) = match PathCid::parse(&path)? {
        PathCid::Codex(cid) => (cid, node.exists(cid).await?),
        PathCid::Foreign(cid) => (cid, false),
    };
    Ok(HttpResponse::Ok().json(json!({ cid_text(&cid): found })))
}

/// `DELETE /data/{cid}`: a dataset (manifest CID) or an unused block; 204, also when absent.
pub(crate) async fn delete(
    path: web::Path<String>,
    node: web::Data<Node>,
) -> Result<HttpResponse, ApiError> {
    let PathCid::Codex(cid) = PathCid::parse(&path)? else {
        return Ok(HttpResponse::NoContent().finish());
    };
    let removed = node.delete(cid).await?;
    tracing::info!(cid = %cid_text(&cid), blocks = removed.blocks, bytes = removed.bytes, "deleted");
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /space`.
pub(crate) async fn space(node: web::Data<Node>) -> Result<HttpResponse, ApiError> {
    let s = node.space().await?;
    Ok(HttpResponse::Ok().json(SpaceJson {
        total_blocks: s.total_blocks,
        quota_max_bytes: s.quota_max_bytes,
        quota_used_bytes: s.quota_used_bytes,
        quota_reserved_bytes: s.quota_reserved_bytes,
    }))
}

/// `GET /metrics`: Prometheus text format.
pub(crate) async fn metrics(node: web::Data<Node>) -> Result<HttpResponse, ApiError> {
    let space = node.space().await?;
    // No exchange counters without a network (or once it stopped): the rest is still served.
    let exchange = match node.network() {
        Ok(network) => network.exchange_stats().await.ok(),
        Err(_) => None,
    };
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::metrics::render(&space, exchange.as_ref())))
}
