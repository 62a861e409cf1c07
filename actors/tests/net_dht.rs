//! The provider DHT on loopback: joining through a bootstrap node, finding a provider by CID
//! alone, lookups that find nothing, records that lapse after stop_providing, and a node that
//! rejoins from its peer store after a restart.

mod net_common;

use std::path::Path;
use std::time::{Duration, Instant};

use codex_actors::format::cid::{cid_from_digest, sha256, MANIFEST_CODEC};
use codex_actors::network::net::{spr, DhtConfig, Net, NetConfig, NetError, NetHandle};
use codex_actors::Cid;
use libp2p::{Multiaddr, PeerId};
use net_common::TestResult;

/// How long a test waits for the network to settle (joins, routing tables).
const SETTLE: Duration = Duration::from_secs(20);

/// A node whose events are drained in the background (a full event queue would stall it).
struct DhtNode {
    handle: NetHandle,
    addr: Multiaddr,
    dir: tempfile::TempDir,
}

impl DhtNode {
    fn peer_id(&self) -> PeerId {
        self.handle.peer_id()
    }

    /// How others name this node as a bootstrap peer.
    fn bootstrap_text(&self) -> String {
        format!("{}/p2p/{}", self.addr, self.peer_id())
    }
}

/// Starts a node with its key (and peer store) in `dir`, configured further by `tune`; its
/// events are drained (these tests look at the DHT only).
async fn start_in(
    dir: tempfile::TempDir,
    tune: impl FnOnce(NetConfig) -> NetConfig,
) -> TestResult<DhtNode> {
    let peers = dir.path().join("peers");
    let node = net_common::start_in(dir, |c| tune(c.peer_store(peers))).await?;
    let mut events = node.events;
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    Ok(DhtNode {
        handle: node.handle,
        addr: node.addr,
        dir: node.dir,
    })
}

async fn start(tune: impl FnOnce(NetConfig) -> NetConfig) -> TestResult<DhtNode> {
    start_in(tempfile::tempdir()?, tune).await
}

/// A node joining through `via`.
async fn join(via: &DhtNode) -> TestResult<DhtNode> {
    let text = via.bootstrap_text();
    start(|c| c.bootstrap_peer(text)).await
}

/// Waits until `node`'s routing table lists every peer in `peers`.
async fn wait_for_table(node: &DhtNode, peers: &[PeerId]) -> TestResult {
    let deadline = Instant::now() + SETTLE;
    loop {
        let table = node.handle.routing_table().await?;
        if peers
            .iter()
            .all(|p| table.nodes.iter().any(|n| n.peer_id == *p))
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("routing table still lacks peers: {table:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A manifest-like CID that no one has seen before.
fn fresh_cid(tag: &str) -> Cid {
    let nonce = format!("{tag}-{}", PeerId::random());
    cid_from_digest(MANIFEST_CODEC, &sha256(nonce.as_bytes()))
}

/// The providers `node` finds for `cid`, as peer ids.
async fn provider_ids(node: &DhtNode, cid: Cid) -> TestResult<Vec<PeerId>> {
    Ok(node
        .handle
        .find_providers(cid)
        .await?
        .into_iter()
        .map(|(p, _)| p)
        .collect())
}

#[actix_rt::test]
async fn a_late_joiner_finds_a_provider_by_cid_alone() -> TestResult {
    let boot = start(|c| c).await?;
    let a = join(&boot).await?;
    let c = join(&boot).await?;
    let e = join(&boot).await?;
    wait_for_table(&boot, &[a.peer_id(), c.peer_id(), e.peer_id()]).await?;
    wait_for_table(&a, &[boot.peer_id(), c.peer_id(), e.peer_id()]).await?;
    let cid = fresh_cid("late-joiner");
    a.handle.provide(cid).await?;

    // d did not exist while a announced, so it holds no record and was never told a's address:
    // all it knows is the bootstrap node and the CID.
    let d = join(&boot).await?;
    let found = d.handle.find_providers(cid).await?;
    let (peer, addrs) = found
        .iter()
        .find(|(p, _)| *p == a.peer_id())
        .ok_or_else(|| format!("a not among the providers: {found:?}"))?;
    assert_eq!(found.len(), 1, "only a provides it: {found:?}");
    assert!(
        addrs.contains(&a.addr),
        "{peer}: {addrs:?} lacks {}",
        a.addr
    );
    // The addresses are good enough to connect with.
    d.handle.dial(*peer, addrs.clone()).await?;

    let stats = d.handle.dht_stats().await?;
    assert_eq!((stats.lookups, stats.providers_found), (1, 1), "{stats:?}");
    assert!(
        stats.dials >= 1 && stats.routing_table_peers >= 1,
        "{stats:?}"
    );
    assert_eq!(a.handle.dht_stats().await?.provided_keys, 1);

    // The routing table in Codex's /debug/info shape.
    let table = d.handle.routing_table().await?;
    assert_eq!(table.local_node.peer_id, d.peer_id());
    assert_eq!(table.local_node.address.as_ref(), Some(&d.addr));
    let record = table
        .local_node
        .record
        .as_deref()
        .ok_or("no local record")?;
    assert_eq!(spr::decode(record)?, (d.peer_id(), vec![d.addr.clone()]));
    let b = table
        .nodes
        .iter()
        .find(|n| n.peer_id == boot.peer_id())
        .ok_or("bootstrap node not in the table")?;
    assert_eq!(b.address.as_ref(), Some(&boot.addr));
    assert_eq!(b.node_id.len(), 64);
    assert!(b.seen && b.record.is_none());
    Ok(())
}

#[actix_rt::test]
async fn a_cid_nobody_provides_gives_an_empty_answer_in_bounded_time() -> TestResult {
    let timeout = Duration::from_secs(4);
    let short = move |c: NetConfig| NetConfig {
        dht: DhtConfig {
            lookup_timeout: timeout,
            ..DhtConfig::default()
        },
        ..c
    };
    // A peer that accepts TCP connections and then says nothing: asking it can only end by
    // timing out, so a lookup that includes it must be cut by the deadline.
    let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
    let silent_text = format!(
        "/ip4/127.0.0.1/tcp/{}/p2p/{}",
        silent.local_addr()?.port(),
        PeerId::random()
    );
    let boot = start(short).await?;
    let text = boot.bootstrap_text();
    let a = start(move |c| short(c).bootstrap_peer(text).bootstrap_peer(silent_text)).await?;
    wait_for_table(&a, &[boot.peer_id()]).await?;
    let started = Instant::now();
    assert!(provider_ids(&a, fresh_cid("nobody")).await?.is_empty());
    let took = started.elapsed();
    // One tick of slack for the deadline check, one for scheduling on a busy machine.
    assert!(took < timeout + Duration::from_secs(2), "took {took:?}");
    let stats = a.handle.dht_stats().await?;
    assert_eq!((stats.lookups, stats.lookups_empty), (1, 1), "{stats:?}");
    assert_eq!(stats.lookups_timed_out, 1, "{stats:?}");

    // The lone first node answers at once: there is nobody to ask.
    let lone = start(|c| c).await?;
    let started = Instant::now();
    assert!(provider_ids(&lone, fresh_cid("lonely")).await?.is_empty());
    assert!(started.elapsed() < Duration::from_secs(1));
    let stats = lone.handle.dht_stats().await?;
    assert_eq!(
        (stats.lookups, stats.lookups_empty, stats.lookups_timed_out),
        (1, 1, 0)
    );
    Ok(())
}

#[actix_rt::test]
async fn a_provider_announcing_a_dead_address_is_still_found_with_a_live_one() -> TestResult {
    let boot = start(|c| c).await?;
    let text = boot.bootstrap_text();
    // a's records name only a closed port; its real address is known to the peers it met.
    let dead: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse()?;
    let a = start({
        let (text, dead) = (text.clone(), dead.clone());
        move |c| NetConfig {
            announce_addrs: vec![dead],
            ..c.bootstrap_peer(text)
        }
    })
    .await?;
    wait_for_table(&boot, &[a.peer_id()]).await?;
    let cid = fresh_cid("dead-address");
    a.handle.provide(cid).await?;

    // d gets a's record with the dead address only; the walk towards a's own id finds the
    // address boot learned from identify.
    let d = start(move |c| c.bootstrap_peer(text)).await?;
    let found = d.handle.find_providers(cid).await?;
    let (_, addrs) = found
        .iter()
        .find(|(p, _)| *p == a.peer_id())
        .ok_or_else(|| format!("a not among the providers: {found:?}"))?;
    assert!(addrs.contains(&a.addr), "{addrs:?} lacks {}", a.addr);
    Ok(())
}

#[actix_rt::test]
async fn stop_providing_makes_lookups_forget_the_provider_within_a_ttl() -> TestResult {
    // Short record lifetimes so the test sees them lapse; a record stays fresh only by being
    // announced again.
    let ttl = Duration::from_secs(3);
    let quick = move |c: NetConfig| NetConfig {
        dht: DhtConfig {
            provider_record_ttl: ttl,
            provider_republish_interval: Duration::from_secs(1),
            ..DhtConfig::default()
        },
        ..c
    };
    let boot = start(quick).await?;
    let text = boot.bootstrap_text();
    let a = start({
        let text = text.clone();
        move |c| quick(c).bootstrap_peer(text)
    })
    .await?;
    let d = start(move |c| quick(c).bootstrap_peer(text)).await?;
    wait_for_table(&boot, &[a.peer_id(), d.peer_id()]).await?;
    let cid = fresh_cid("stop");
    a.handle.provide(cid).await?;
    assert_eq!(provider_ids(&d, cid).await?, vec![a.peer_id()]);

    // Re-announcement keeps the record alive past its TTL.
    tokio::time::sleep(ttl * 2).await;
    assert_eq!(provider_ids(&d, cid).await?, vec![a.peer_id()]);
    assert!(a.handle.dht_stats().await?.announcements >= 3);

    // After stop_providing, a answers no more and stops re-announcing; the copies boot and d
    // hold lapse within one TTL of the last announcement.
    a.handle.stop_providing(cid).await?;
    let stopped = Instant::now();
    loop {
        if provider_ids(&d, cid).await?.is_empty() {
            break;
        }
        assert!(
            stopped.elapsed() < ttl + Duration::from_secs(3),
            "still listed {:?} after stop_providing",
            stopped.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(a.handle.dht_stats().await?.provided_keys, 0);
    Ok(())
}

/// The peer ids in a peer store file.
fn saved_peers(path: &Path) -> TestResult<Vec<PeerId>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect())
}

#[actix_rt::test]
async fn a_restarted_node_rejoins_from_its_peer_store_without_bootstrap() -> TestResult {
    let boot = start(|c| c).await?;
    let a = join(&boot).await?;
    let c = join(&boot).await?;
    let r = join(&boot).await?;
    wait_for_table(&r, &[boot.peer_id(), a.peer_id(), c.peer_id()]).await?;
    let cid = fresh_cid("rejoin");
    a.handle.provide(cid).await?;

    // r stops (saving its peers), and so does the only node it was told about.
    r.handle.shutdown().await?;
    let saved = saved_peers(&r.dir.path().join("peers"))?;
    for p in [boot.peer_id(), a.peer_id(), c.peer_id()] {
        assert!(saved.contains(&p), "{p} not saved: {saved:?}");
    }
    let r_id = r.peer_id();
    boot.handle.shutdown().await?;

    // Same key and peer store, no bootstrap peer.
    let again = start_in(r.dir, |c| c).await?;
    assert_eq!(again.peer_id(), r_id);
    assert_eq!(provider_ids(&again, cid).await?, vec![a.peer_id()]);
    wait_for_table(&again, &[a.peer_id(), c.peer_id()]).await?;
    Ok(())
}

#[actix_rt::test]
async fn bad_bootstrap_texts_stop_the_start_and_good_ones_join() -> TestResult {
    let boot = start(|c| c).await?;
    let peer = boot.peer_id();
    let bad = [
        "not an address".to_string(),
        boot.addr.to_string(), // no /p2p/<peerId>
        format!("/ip4/127.0.0.1/udp/8090/p2p/{peer}"),
        boot.handle.spr(vec!["/ip4/127.0.0.1/udp/8090".parse()?])?, // a Codex DHT record
    ];
    for text in bad {
        let dir = tempfile::tempdir()?;
        let config = NetConfig::new(dir.path().join("key")).bootstrap_peer(text.clone());
        match Net::start(config).await {
            Err(NetError::Bootstrap(why)) => assert!(why.contains("#1"), "{why}"),
            Err(e) => return Err(format!("{text}: wrong error {e}").into()),
            Ok(_) => return Err(format!("{text} was accepted").into()),
        }
    }
    // An SPR with the TCP address is a fine bootstrap peer.
    let spr_text = boot.handle.spr(vec![boot.addr.clone()])?;
    let via_spr = start(|c| c.bootstrap_peer(spr_text)).await?;
    wait_for_table(&via_spr, &[peer]).await?;
    wait_for_table(&boot, &[via_spr.peer_id()]).await?;
    Ok(())
}
