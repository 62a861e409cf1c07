//! Our DHT next to a real Codex node (loopback only; skips when the Codex binary is missing).
//! Codex v0.2.5 speaks no `/ipfs/kad/1.0.0`: it must stay out of our routing table, DHT work
//! around it must not disturb it, and block exchange with it must go on.

mod net_common;

use std::time::Duration;

use codex_actors::format::blockexc::{BlockAddress, Message, WantEntry, WantType, Wantlist};
use codex_actors::format::cid::{cid_from_digest, sha256, MANIFEST_CODEC};
use codex_actors::network::net::NetEvent;
use codex_actors::parse_cid;
use net_common::codex::{codex_peer, pseudo_random, start_codex, upload};
use net_common::{start, TestResult};

#[actix_rt::test]
async fn a_codex_peer_stays_connected_and_out_of_the_routing_table() -> TestResult {
    let Some(codex) = start_codex().await? else {
        return Ok(());
    };
    let manifest_cid = parse_cid(&upload(&codex, pseudo_random(100_000)).await?)?;
    let (codex_id, codex_addr) = codex_peer(&codex).await?;

    // Two of our nodes form a DHT; the first also talks to Codex.
    let mut node = start(|c| c).await?;
    let boot = format!("{}/p2p/{}", node.addr, node.peer_id());
    let mut other = start(|c| c.bootstrap_peer(boot)).await?;
    node.handle.dial(codex_id, vec![codex_addr]).await?;
    node.expect("Codex's identify", |e| match e {
        NetEvent::Identified { peer, .. } if peer == codex_id => Some(()),
        _ => None,
    })
    .await?;
    other
        .expect("other identified node", |e| match e {
            NetEvent::Identified { peer, .. } if peer == node.peer_id() => Some(()),
            _ => None,
        })
        .await?;

    // DHT work while Codex is connected: announce, look up, refresh.
    node.handle.provide(manifest_cid).await?;
    let found = other.handle.find_providers(manifest_cid).await?;
    assert_eq!(
        found.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
        vec![node.peer_id()]
    );
    let nobody = cid_from_digest(MANIFEST_CODEC, &sha256(b"nobody has this"));
    assert!(node.handle.find_providers(nobody).await?.is_empty());
    let table = node.handle.routing_table().await?;
    let ids: Vec<_> = table.nodes.iter().map(|n| n.peer_id).collect();
    assert!(ids.contains(&other.peer_id()), "{ids:?}");
    assert!(!ids.contains(&codex_id), "Codex entered the routing table");

    // Codex still serves us, and neither side dropped or faulted the connection meanwhile.
    let want = WantEntry::new(BlockAddress::Cid(manifest_cid), WantType::Block);
    let message = Message {
        wantlist: Wantlist {
            entries: vec![want],
            full: false,
        },
        ..Message::default()
    };
    node.handle.send(codex_id, message).await?;
    let delivered = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(e) = node.events.recv().await {
            match e {
                NetEvent::Message { peer, message, .. }
                    if peer == codex_id
                        && message.deliveries.iter().any(|d| d.cid == manifest_cid) =>
                {
                    return Ok(());
                }
                NetEvent::PeerDisconnected { peer, .. } if peer == codex_id => {
                    return Err("Codex disconnected");
                }
                NetEvent::Violation { peer, violation } if peer == codex_id => {
                    eprintln!("violation: {violation}");
                    return Err("Codex broke the protocol");
                }
                NetEvent::SendFailed { peer, reason } if peer == codex_id => {
                    eprintln!("send failed: {reason:?}");
                    return Err("send to Codex failed");
                }
                _ => {}
            }
        }
        Err("event stream ended")
    })
    .await?;
    delivered?;
    let stats = node.handle.dht_stats().await?;
    assert_eq!(stats.dial_failures, 0, "{stats:?}");
    Ok(())
}
