//! Our Codex DHT service against a live Codex v0.2.5 node on loopback.
//!
//! Each test starts its own Codex node(s) through `run-codex` with unique ports, and our
//! service on `127.0.0.1:0`; all traffic stays on 127.0.0.1. Where Codex cannot run, the
//! tests print `SKIP: … because …` and pass (see `codex_dht_support`).

mod codex_dht_support;

use std::time::{Duration, Instant};

use codex_actors::network::codex_dht::{CodexDht, DhtConfig, DhtStats, NodeId, Spr};
use codex_actors::parse_cid;
use codex_dht_support::{pseudo_random, Codex, TestResult};
use libp2p::identity::Keypair;
use libp2p::Multiaddr;

async fn our_node() -> TestResult<CodexDht> {
    our_node_with(Vec::new()).await
}

async fn our_node_with(provider_addrs: Vec<Multiaddr>) -> TestResult<CodexDht> {
    let config = DhtConfig::new(Keypair::generate_secp256k1())
        .bind("127.0.0.1:0".parse()?)
        .provider_addrs(provider_addrs);
    Ok(CodexDht::start(config).await?)
}

/// Polls `check` every 100 ms until it returns `Some`, for at most `limit`.
async fn eventually<T, F, Fut>(limit: Duration, mut check: F) -> TestResult<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = TestResult<Option<T>>>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(v) = check().await? {
            return Ok(Some(v));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(None)
}

/// Nothing Codex sent us was dropped as malformed, forged or replayed.
fn assert_clean(stats: &DhtStats) {
    assert_eq!(stats.malformed, 0, "{stats:?}");
    assert_eq!(stats.handshake_failures, 0, "{stats:?}");
    assert_eq!(stats.unknown_type, 0, "{stats:?}");
    assert_eq!(stats.oversized, 0, "{stats:?}");
}

/// Whether a Codex node's `/debug/info` routing table lists `peer`.
async fn codex_knows(codex: &Codex, peer: &str) -> TestResult<bool> {
    let info = codex.debug_info().await?;
    Ok(info["table"]["nodes"]
        .as_array()
        .is_some_and(|nodes| nodes.iter().any(|n| n["peerId"].as_str() == Some(peer))))
}

/// (a) handshake and PING/PONG; (b) FINDNODE and a lookup return Codex's nodes.
#[tokio::test]
async fn handshake_ping_and_find_node_with_codex() -> TestResult {
    let test = "handshake_ping_and_find_node_with_codex";
    let Some(c1) = Codex::start_or_skip(test, &[]).await? else {
        return Ok(());
    };
    let c1_spr = Spr::from_text(&c1.spr().await?)?;
    // Codex's /spr holds only the UDP discovery address.
    assert_eq!(c1_spr.addrs().len(), 1, "{c1_spr:?}");
    assert_eq!(
        c1_spr.udp_addr(),
        Some(format!("127.0.0.1:{}", c1.disc_port).parse()?)
    );
    let info = c1.debug_info().await?;
    assert_eq!(info["spr"].as_str(), Some(c1_spr.to_text().as_str()));
    // /debug/info prints the node id as a number, without leading zeros.
    let shown = info["table"]["localNode"]["nodeId"]
        .as_str()
        .ok_or("no nodeId")?;
    assert_eq!(
        shown.trim_start_matches('0'),
        c1_spr.node_id().to_string().trim_start_matches('0')
    );

    let dht = our_node().await?;
    let started = Instant::now();
    let pong = dht.ping(&c1_spr).await?;
    println!("handshake + PING/PONG with Codex: {:?}", started.elapsed());
    // Codex saw us where we are: its PONG's address encoding matches ours.
    assert_eq!(pong.observed, dht.local_addr());
    // PONG carries the sequence number of the record Codex's DHT uses internally, which is
    // ahead of the one `/spr` shows (Codex re-signs it twice at start).
    assert!(
        pong.spr_seq >= c1_spr.seq(),
        "{} < {}",
        pong.spr_seq,
        c1_spr.seq()
    );
    println!("PONG seq {} vs /spr seq {}", pong.spr_seq, c1_spr.seq());
    // Over the session now, without a handshake.
    dht.ping(&c1_spr).await?;

    // Distance 0: the node's own record.
    let own = dht.find_node(&c1_spr, vec![0]).await?;
    assert_eq!(
        own.iter().map(Spr::peer_id).collect::<Vec<_>>(),
        vec![c1_spr.peer_id()]
    );
    // Our handshake carried our record from the address it names: Codex put us in its table
    // and hands us out.
    assert!(codex_knows(&c1, &dht.local_record().peer_id().to_string()).await?);
    let d = c1_spr.node_id().log_distance(&dht.node_id());
    let found = dht.find_node(&c1_spr, vec![d]).await?;
    assert!(
        found
            .iter()
            .any(|r| r.peer_id() == dht.local_record().peer_id()),
        "{found:?}"
    );

    // A second Codex node joins through the first; our lookup finds it through the first.
    let size = dht.bootstrap(c1_spr.clone()).await?;
    assert!(size >= 1);
    let c2 =
        Codex::start_or_skip(test, &[format!("--bootstrap-node={}", c1_spr.to_text())]).await?;
    let c2 = c2.ok_or("the second Codex node did not start")?;
    let c2_spr = Spr::from_text(&c2.spr().await?)?;
    let c2_peer = c2_spr.peer_id().to_string();
    eventually(Duration::from_secs(10), || async {
        Ok(codex_knows(&c1, &c2_peer).await?.then_some(()))
    })
    .await?
    .ok_or("the first Codex node never listed the second")?;
    let started = Instant::now();
    let closest = dht.lookup(c2_spr.node_id()).await?;
    println!(
        "lookup through Codex: {:?}, {} nodes",
        started.elapsed(),
        closest.len()
    );
    assert_eq!(
        closest.first().map(Spr::peer_id),
        Some(c2_spr.peer_id()),
        "{closest:?}"
    );
    assert!(closest.iter().any(|r| r.peer_id() == c1_spr.peer_id()));
    let table = dht.routing_table().await?;
    assert!(table.iter().any(|e| e.record.peer_id() == c2_spr.peer_id()));
    // Bootstrapping saw PONG's newer sequence number and fetched Codex's current record.
    let c1_entry = table
        .iter()
        .find(|e| e.record.peer_id() == c1_spr.peer_id())
        .ok_or("c1 missing")?;
    assert_eq!(c1_entry.record.seq(), pong.spr_seq);
    assert!(dht.refresh().await? >= 2);

    let stats = dht.stats().await?;
    assert_clean(&stats);
    assert!(stats.handshakes_out + stats.handshakes_in >= 2, "{stats:?}");
    dht.shutdown().await?;
    Ok(())
}

/// (c) Codex's provider record for an upload is found with GET_PROVIDERS; (d) our
/// ADD_PROVIDER is kept by Codex and found by another node through it; and Codex announces
/// a later upload to us.
#[tokio::test]
async fn providers_with_codex() -> TestResult {
    let test = "providers_with_codex";
    let Some(c1) = Codex::start_or_skip(test, &[]).await? else {
        return Ok(());
    };
    let c1_spr = Spr::from_text(&c1.spr().await?)?;

    // (c) Codex alone: it keeps its own provider records for its upload.
    let cid_text = c1.upload(pseudo_random(100_000, 1)).await?;
    let key = NodeId::from_cid(&parse_cid(&cid_text)?);
    let dht = our_node().await?;
    let started = Instant::now();
    let providers = eventually(Duration::from_secs(10), || async {
        let p = dht.get_providers_from(&c1_spr, key).await?;
        Ok((!p.is_empty()).then_some(p))
    })
    .await?
    .ok_or_else(|| {
        format!(
            "Codex never listed a provider of {cid_text}\n{}",
            c1.log_tail()
        )
    })?;
    println!(
        "GET_PROVIDERS found Codex's upload after {:?}",
        started.elapsed()
    );
    assert_eq!(providers.len(), 1);
    assert_eq!(providers[0].peer_id(), c1_spr.peer_id());
    // The provider record is not the DHT record: it holds the TCP address block exchange
    // listens on.
    let tcp: Multiaddr = format!("/ip4/127.0.0.1/tcp/{}", c1.tcp_port).parse()?;
    assert_eq!(providers[0].tcp_addrs(), vec![tcp]);
    // Codex announces the tree CID of the dataset too.
    let manifest: serde_json::Value = serde_json::from_str(
        &c1.get(&format!("/data/{cid_text}/network/manifest"))
            .await?,
    )?;
    let tree_cid = manifest["manifest"]["treeCid"]
        .as_str()
        .ok_or("no treeCid")?;
    let tree_key = NodeId::from_cid(&parse_cid(tree_cid)?);
    let tree_providers = eventually(Duration::from_secs(10), || async {
        let p = dht.get_providers_from(&c1_spr, tree_key).await?;
        Ok((!p.is_empty()).then_some(p))
    })
    .await?
    .ok_or("Codex never listed a provider of its tree CID")?;
    assert_eq!(tree_providers[0].peer_id(), c1_spr.peer_id());
    // Through a full lookup too, once we know the node.
    dht.bootstrap(c1_spr.clone()).await?;
    let found = dht.get_providers(key).await?;
    assert!(found.iter().any(|r| r.peer_id() == c1_spr.peer_id()));

    // (d) We provide a key; Codex keeps our record; another node finds it through Codex.
    let our_tcp: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse()?;
    let a = our_node_with(vec![our_tcp.clone()]).await?;
    a.bootstrap(c1_spr.clone()).await?;
    let our_key = NodeId::keccak(b"a key only we provide");
    let sent = a.provide(our_key).await?;
    assert!(sent >= 1, "ADD_PROVIDER went nowhere");
    let direct = eventually(Duration::from_secs(5), || async {
        let p = dht.get_providers_from(&c1_spr, our_key).await?;
        Ok(p.iter()
            .any(|r| r.peer_id() == a.local_record().peer_id())
            .then_some(p))
    })
    .await?
    .ok_or("Codex never returned our provider record")?;
    let ours = direct
        .iter()
        .find(|r| r.peer_id() == a.local_record().peer_id())
        .ok_or("missing")?;
    assert_eq!(ours.tcp_addrs(), vec![our_tcp]);
    let b = our_node().await?;
    b.bootstrap(c1_spr.clone()).await?;
    let via_lookup = b.get_providers(our_key).await?;
    assert!(
        via_lookup
            .iter()
            .any(|r| r.peer_id() == a.local_record().peer_id()),
        "{via_lookup:?}"
    );

    // Codex now knows our nodes, so it announces its next upload to them rather than
    // keeping the record itself.
    let cid2 = c1.upload(pseudo_random(50_000, 2)).await?;
    let key2 = NodeId::from_cid(&parse_cid(&cid2)?);
    let started = Instant::now();
    eventually(Duration::from_secs(10), || async {
        let p = a.get_providers(key2).await?;
        Ok(p.iter()
            .any(|r| r.peer_id() == c1_spr.peer_id())
            .then_some(()))
    })
    .await?
    .ok_or("Codex's announcement of its second upload never reached our nodes")?;
    println!(
        "Codex's ADD_PROVIDER reached us after {:?}",
        started.elapsed()
    );
    // Codex's own lookup leaves Codex out, so with peers it keeps no record of its own data.
    let at_codex = dht.get_providers_from(&c1_spr, key2).await?;
    println!(
        "Codex itself lists {} provider(s) for its second upload",
        at_codex.len()
    );
    let stats = a.stats().await?;
    assert!(stats.add_providers_in >= 1, "{stats:?}");
    for node in [&dht, &a, &b] {
        assert_clean(&node.stats().await?);
    }
    Ok(())
}

/// (e) A Codex node started with our record as its bootstrap node contacts us and lists us.
#[tokio::test]
async fn codex_bootstraps_from_our_record() -> TestResult {
    let test = "codex_bootstraps_from_our_record";
    let dht = our_node().await?;
    let ours = dht.local_record().to_text();
    let started = Instant::now();
    let Some(c1) = Codex::start_or_skip(test, &[format!("--bootstrap-node={ours}")]).await? else {
        return Ok(());
    };
    let c1_spr = Spr::from_text(&c1.spr().await?)?;
    let stats = eventually(Duration::from_secs(15), || async {
        let s = dht.stats().await?;
        Ok((s.find_nodes_in + s.pings_in > 0 && s.handshakes_in > 0).then_some(s))
    })
    .await?
    .ok_or_else(|| format!("Codex never contacted us\n{}", c1.log_tail()))?;
    println!(
        "Codex bootstrapped from us within {:?}: {stats:?}",
        started.elapsed()
    );
    // Its handshake carried its record from the address it names: it is in our table.
    let table = dht.routing_table().await?;
    let entry = table
        .iter()
        .find(|e| e.record.peer_id() == c1_spr.peer_id())
        .ok_or("Codex's node is not in our routing table")?;
    assert!(entry.verified);
    assert!(codex_knows(&c1, &dht.local_record().peer_id().to_string()).await?);
    // And we can talk back over the session it opened.
    dht.ping(&c1_spr).await?;

    // A second Codex node bootstrapped from us alone joins through us. Whether it also learns of
    // the first from our answers depends on their ids: Codex asks for three distances around
    // its lookup target, and a node at another distance from us is never named (about one run
    // in ten), so that part is reported, not asserted.
    let c2 = Codex::start_or_skip(test, &[format!("--bootstrap-node={ours}")]).await?;
    let c2 = c2.ok_or("the second Codex node did not start")?;
    let ours_id = dht.local_record().peer_id().to_string();
    let started = Instant::now();
    eventually(Duration::from_secs(20), || async {
        Ok(codex_knows(&c2, &ours_id).await?.then_some(()))
    })
    .await?
    .ok_or_else(|| {
        format!(
            "the second Codex node never joined through us\n{}",
            c2.log_tail()
        )
    })?;
    let c1_peer = c1_spr.peer_id().to_string();
    let found = eventually(Duration::from_secs(5), || async {
        Ok(codex_knows(&c2, &c1_peer).await?.then_some(()))
    })
    .await?
    .is_some();
    println!(
        "a Codex node joined through us in {:?}; it learned of the other Codex node: {found}",
        started.elapsed()
    );
    assert_clean(&dht.stats().await?);
    Ok(())
}
