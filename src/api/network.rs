//! The network routes: identity (`/peerid`, `/spr`), peering (`/connect`), datasets from peers
//! (`POST /data/{cid}/network`, `/network/manifest`; `/network/stream` is in `download.rs`), the
//! progress of a fetch, and `/debug/info`.

use actix_web::{web, HttpResponse};
use codex_actors::{Multiaddr, Node, PeerId};
use serde::Serialize;
use serde_json::json;

use super::{info::ManifestEntry, PathCid};
use crate::error::ApiError;

/// Most `addrs` one `/connect` dials: a page or a script must not make the node dial a list of
/// arbitrary addresses (Codex has no limit).
const MAX_CONNECT_ADDRS: usize = 8;

/// `GET /peerid`: `{"id": …}`.
pub(crate) async fn peer_id(node: web::Data<Node>) -> Result<HttpResponse, ApiError> {
    let id = node.network()?.peer_id();
    Ok(HttpResponse::Ok().json(json!({ "id": id.to_string() })))
}

/// `GET /spr`: `{"spr": "spr:…"}`, this node's record in Codex's DHT (its UDP address), or,
/// without Codex's DHT, its signed record over its TCP announce addresses.
pub(crate) async fn spr(node: web::Data<Node>) -> Result<HttpResponse, ApiError> {
    let spr = node.network()?.spr().await?;
    Ok(HttpResponse::Ok().json(json!({ "spr": spr })))
}

/// `GET /connect/{peerId}?addrs=<multiaddr>`: dial a peer, as Codex does (400 with Codex's
/// texts when the peer id or an address is unusable or the dial fails). Without `addrs`, the
/// addresses the node already knows for the peer (its DHT and peer store) are tried.
pub(crate) async fn connect(
    path: web::Path<String>,
    query: actix_web::web::Query<Vec<(String, String)>>,
    node: web::Data<Node>,
) -> Result<HttpResponse, ApiError> {
    let peer: PeerId = path
        .parse()
        .map_err(|_| ApiError::BadRequest("Unable to decode Peer ID".into()))?;
    // `addrs` may be given several times.
    let texts: Vec<&String> = query
        .iter()
        .filter(|(k, _)| k == "addrs")
        .map(|(_, v)| v)
        .collect();
    if texts.len() > MAX_CONNECT_ADDRS {
        return Err(ApiError::BadRequest(format!(
            "Too many addresses: at most {MAX_CONNECT_ADDRS} per request, got {}",
            texts.len()
        )));
    }
    let mut addrs = Vec::new();
    for text in texts {
        let addr: Multiaddr = text
            .parse()
            .map_err(|_| ApiError::BadRequest(format!("Unable to parse address {text}")))?;
        addrs.push(addr);
    }
    let known = !addrs.is_empty();
    match node.network()?.connect(peer, addrs).await {
        Ok(()) => Ok(HttpResponse::Ok()
            .content_type("text/plain")
            .body("Successfully connected to peer")),
        Err(codex_actors::Error::Network(reason)) => {
            tracing::info!(%peer, %reason, "connect failed");
            let text = if known {
                "Unable to dial peer"
            } else {
                "Unable to find Peer!"
            };
            Err(ApiError::BadRequest(text.into()))
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /data/{cid}/network`: start fetching a dataset in the background (or resume one cut
/// short); answers at once with the manifest. 507 when the dataset cannot fit the quota.
pub(crate) async fn fetch(
    path: web::Path<String>,
    node: web::Data<Node>,
) -> Result<HttpResponse, ApiError> {
    let cid = PathCid::parse(&path)?.held()?;
    let fetching = node.network()?.fetch(cid).await?;
    Ok(HttpResponse::Ok().json(ManifestEntry::new(&cid, &fetching.manifest)))
}

/// `GET /data/{cid}/network/manifest`: the manifest, from the local store or from peers.
pub(crate) async fn manifest(
    path: web::Path<String>,
    node: web::Data<Node>,
) -> Result<HttpResponse, ApiError> {
    let cid = PathCid::parse(&path)?.held()?;
    // Without a network, the local answer.
    let manifest = match node.network() {
        Ok(network) => network.manifest(cid).await?.0,
        Err(_) => node.manifest(cid).await?,
    };
    Ok(HttpResponse::Ok().json(ManifestEntry::new(&cid, &manifest)))
}

/// The body of `GET /data/{cid}/network/progress`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Progress {
    cid: String,
    blocks_stored: u64,
    blocks_total: u64,
    complete: bool,
    fetching: bool,
    /// Why the last fetch stopped, when it failed and none runs now.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `GET /data/{cid}/network/progress` (this node's own route): blocks stored of blocks total,
/// whether a fetch is running, and, when the last one failed, why. 404 when nothing of the
/// dataset is here.
pub(crate) async fn progress(
    path: web::Path<String>,
    node: web::Data<Node>,
) -> Result<HttpResponse, ApiError> {
    let cid = PathCid::parse(&path)?.held()?;
    let (progress, fetching) = node
        .fetch_progress(cid)
        .await?
        .ok_or(codex_actors::Error::NotFound(cid))?;
    let error = match node.network() {
        Ok(network) if !fetching && !progress.complete => network.last_failure(cid).await?,
        _ => None,
    };
    Ok(HttpResponse::Ok().json(Progress {
        cid: codex_actors::cid_text(&cid),
        blocks_stored: progress.stored,
        blocks_total: progress.total,
        complete: progress.complete,
        fetching,
        error: error.map(|e| e.to_string()),
    }))
}

/// `GET /debug/info`: Codex's shape, with this node's network identity when it has one.
pub(crate) async fn debug_info(node: web::Data<Node>) -> Result<HttpResponse, ApiError> {
    let s = node.space().await?;
    let mut body = json!({
        "id": node.network().ok().map(|n| n.peer_id().to_string()),
        "addrs": [],
        "repo": node.config().data_dir.display().to_string(),
        "spr": "",
        "announceAddresses": [],
        "table": { "localNode": null, "nodes": [] },
        // Codex's schema has strings here; this node has no marketplace, so no contracts.
        "codex": {
            "version": env!("CARGO_PKG_VERSION"),
            "revision": env!("CODEX_NODE_REVISION"),
            "contracts": "none",
        },
        "storage": { "totalBlocks": s.total_blocks, "quotaMaxBytes": s.quota_max_bytes, "quotaUsedBytes": s.quota_used_bytes },
    });
    if let Ok(network) = node.network() {
        let text = |a: Vec<Multiaddr>| a.iter().map(ToString::to_string).collect::<Vec<_>>();
        body["addrs"] = json!(text(network.listen_addrs().await?));
        body["announceAddresses"] = json!(text(network.announce_addrs().await?));
        body["spr"] = json!(network.spr().await?);
        let table = network.routing_table().await?;
        let entry = |n: &codex_actors::network::net::RoutingNode| {
            json!({
                "nodeId": n.node_id,
                "peerId": n.peer_id.to_string(),
                "record": n.record,
                "address": n.address.as_ref().map(ToString::to_string),
                "seen": n.seen,
            })
        };
        let kademlia = json!({
            "localNode": entry(&table.local_node),
            "nodes": table.nodes.iter().map(entry).collect::<Vec<_>>(),
        });
        // `table` is Codex's DHT when it runs, as on a Codex node; our Kademlia's then moves to
        // `kademliaTable`.
        match network.codex_routing_table().await? {
            Some(codex) => {
                let entry = |n: &codex_actors::CodexTableNode| {
                    json!({
                        "nodeId": n.node_id,
                        "peerId": n.peer_id.to_string(),
                        "record": n.record,
                        "address": n.address,
                        "seen": n.seen,
                    })
                };
                body["table"] = json!({
                    "localNode": entry(&codex.local_node),
                    "nodes": codex.nodes.iter().map(entry).collect::<Vec<_>>(),
                });
                body["kademliaTable"] = kademlia;
            }
            None => body["table"] = kademlia,
        }
        let stats = network.exchange_stats().await?;
        let per_peer: Vec<_> = stats
            .per_peer
            .iter()
            .map(|p| {
                json!({
                    "peerId": p.peer.to_string(),
                    "agent": p.agent,
                    "blocksSent": p.blocks_sent,
                    "blocksReceived": p.blocks_received,
                    "requestWindow": p.request_window,
                })
            })
            .collect();
        body["exchange"] = json!({
            "peers": stats.peers,
            "blocksSent": stats.blocks_sent,
            "blocksReceived": stats.blocks_received,
            "duplicateBlocks": stats.duplicate_blocks,
            "badBlocks": stats.bad_blocks,
            "violations": stats.violations,
            "retries": stats.retries,
            "peerTimeouts": stats.peer_timeouts,
            "shedEntries": stats.shed_entries,
            "requestTimeouts": stats.request_timeouts,
            "distrustedPeers": stats.distrusted_peers,
            "slowPeers": stats.slow_peers,
            "refusedConnections": stats.refused_connections,
            "failedWants": stats.failed_wants,
            "pendingBlocks": stats.pending,
            "mostPendingBlocks": stats.most_pending,
            "peerList": per_peer,
        });
        let dht = network.dht_stats().await?;
        body["dht"] = json!({
            "lookups": dht.lookups,
            "providersFound": dht.providers_found,
            "dials": dht.dials,
            "announcements": dht.announcements,
            "providedKeys": dht.provided_keys,
            "routingTablePeers": dht.routing_table_peers,
            "storedProviderRecords": dht.stored_provider_records,
            "refusedProviderRecords": dht.refused_provider_records,
        });
        let fetches: Vec<_> = node
            .partial_datasets()
            .await?
            .into_iter()
            .map(|(cid, p)| {
                json!({ "cid": codex_actors::cid_text(&cid), "blocksStored": p.stored, "blocksTotal": p.total })
            })
            .collect();
        body["partialDatasets"] = json!(fetches);
        body["nat"] = nat_json(&network.nat_info().await?);
    }
    let text = serde_json::to_string_pretty(&body).unwrap_or_default();
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(text))
}

/// `/debug/info`'s `nat`: reachability, relay reservations, and per peer whether its connection
/// is direct or relayed and the bytes each way (stream payload of its open connections).
fn nat_json(nat: &codex_actors::network::net::NatInfo) -> serde_json::Value {
    let peers: Vec<_> = nat
        .peers
        .iter()
        .map(|p| {
            let connection = match (p.direct, p.relayed) {
                (0, _) => "relayed",
                (_, 0) => "direct",
                _ => "direct+relayed",
            };
            json!({
                "peerId": p.peer.to_string(),
                "connection": connection,
                "bytesSent": p.bytes_sent,
                "bytesReceived": p.bytes_received,
                "relayedBytesSent": p.relayed_bytes_sent,
                "relayedBytesReceived": p.relayed_bytes_received,
            })
        })
        .collect();
    let reservations: Vec<_> = nat
        .reservations
        .iter()
        .map(|r| json!({ "relay": r.relay.to_string(), "address": r.addr.to_string(), "accepted": r.accepted }))
        .collect();
    let limits: Vec<_> = nat
        .relay_limits_reached
        .iter()
        .map(|(p, why)| json!({ "peerId": p.to_string(), "reason": why }))
        .collect();
    json!({
        "reachability": nat.reachability.as_str(),
        "publicAddress": nat.public_address.as_ref().map(ToString::to_string),
        "mappedAddresses": nat.mapped_addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "relayService": nat.relay_service,
        "relayReservations": reservations,
        "holePunchesSucceeded": nat.hole_punches_succeeded,
        "holePunchesFailed": nat.hole_punches_failed,
        "relayLimitsReached": limits,
        "peers": peers,
    })
}
