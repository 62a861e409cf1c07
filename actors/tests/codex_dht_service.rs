//! The Codex DHT service among our own nodes, and against a hand-driven peer that sends it
//! garbage, replays, unknown message types and oversized answers. All on 127.0.0.1.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use codex_actors::network::codex_dht::codec::{Codec, CodecLimits, Inbound, Peer};
use codex_actors::network::codex_dht::rate_limit::RateLimits;
use codex_actors::network::codex_dht::{
    Body, CodexDht, DhtConfig, DhtError, Message, NodeId, RequestId, RoutingEntry, Spr,
};
use libp2p::identity::Keypair;
use tokio::net::UdpSocket;

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

async fn node() -> TestResult<CodexDht> {
    node_with(|c| c).await
}

async fn node_with(f: impl FnOnce(DhtConfig) -> DhtConfig) -> TestResult<CodexDht> {
    let config = DhtConfig::new(Keypair::generate_secp256k1()).bind("127.0.0.1:0".parse()?);
    Ok(CodexDht::start(f(config)).await?)
}

/// A peer driven by hand: a socket and a codec, no service.
struct Fake {
    socket: UdpSocket,
    codec: Codec,
    addr: SocketAddr,
}

impl Fake {
    async fn new() -> TestResult<Self> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let addr = socket.local_addr()?;
        let key = Keypair::generate_secp256k1();
        let record = Spr::create(
            &key,
            vec![format!("/ip4/127.0.0.1/udp/{}", addr.port()).parse()?],
        )?;
        let limits = CodecLimits {
            sessions: 8,
            challenges: 8,
            sent: 8,
            handshake_timeout: Duration::from_secs(5),
        };
        Ok(Fake {
            socket,
            codec: Codec::new(key, record, limits)?,
            addr,
        })
    }

    fn peer(dht: &CodexDht) -> Peer {
        Peer {
            id: dht.node_id(),
            addr: dht.local_addr(),
            public_key: Some(dht.local_record().public_key().clone()),
        }
    }

    async fn send(&self, to: SocketAddr, datagrams: Vec<Vec<u8>>) -> TestResult {
        for d in datagrams {
            self.socket.send_to(&d, to).await?;
        }
        Ok(())
    }

    /// Receives one datagram and opens it.
    async fn recv(&mut self) -> TestResult<(Inbound, Vec<u8>)> {
        let mut buf = vec![0u8; 20_000];
        let (n, from) =
            tokio::time::timeout(Duration::from_secs(3), self.socket.recv_from(&mut buf)).await??;
        let inbound = self.codec.open(from, &buf[..n], Instant::now())?;
        Ok((inbound, buf[..n].to_vec()))
    }

    /// Sends `plain` to the service, doing the handshake; returns the datagrams that carried
    /// it (the handshake packet when there was one) and the answer.
    async fn exchange(
        &mut self,
        dht: &CodexDht,
        plain: Vec<u8>,
    ) -> TestResult<(Vec<Vec<u8>>, Message)> {
        let to = dht.local_addr();
        let mut carried = self.codec.seal(&Self::peer(dht), plain, Instant::now());
        self.send(to, carried.clone()).await?;
        loop {
            match self.recv().await?.0 {
                Inbound::Send(datagrams) => {
                    carried = datagrams.clone();
                    self.send(to, datagrams).await?;
                }
                Inbound::Message { message, .. } => return Ok((carried, message)),
                Inbound::Undecryptable { .. } => {
                    return Err("service sent something we cannot open".into())
                }
            }
        }
    }
}

#[tokio::test]
async fn our_nodes_find_each_other_and_providers() -> TestResult {
    let a = node().await?;
    let b =
        node_with(|c| c.provider_addrs(vec!["/ip4/127.0.0.1/tcp/4001".parse().unwrap()])).await?;
    let c = node().await?;
    b.bootstrap(a.local_record().clone()).await?;
    c.bootstrap(a.local_record().clone()).await?;
    let found = c.lookup(b.node_id()).await?;
    assert_eq!(
        found.first().map(Spr::peer_id),
        Some(b.local_record().peer_id())
    );

    let key = NodeId::keccak(b"some cid");
    assert!(b.provide(key).await? >= 1);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let providers = c.get_providers(key).await?;
        if let Some(p) = providers
            .iter()
            .find(|r| r.peer_id() == b.local_record().peer_id())
        {
            assert_eq!(p.tcp_addrs(), vec!["/ip4/127.0.0.1/tcp/4001".parse()?]);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "c never found b's provider record"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A node alone keeps its provider record itself.
    let alone = node().await?;
    assert_eq!(alone.provide(key).await?, 0);
    assert_eq!(alone.get_providers(key).await?.len(), 1);
    for n in [&a, &b, &c] {
        let s = n.stats().await?;
        assert_eq!(
            (s.malformed, s.handshake_failures, s.replayed),
            (0, 0, 0),
            "{s:?}"
        );
    }
    a.shutdown().await?;
    assert!(matches!(a.stats().await, Err(DhtError::Unavailable)));
    Ok(())
}

/// Waits until `c` finds `b`'s provider record for `key` with these TCP addresses.
async fn wait_provider(c: &CodexDht, b: &CodexDht, key: NodeId, tcp: &str) -> TestResult {
    let want: libp2p::Multiaddr = tcp.parse()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let providers = c.get_providers(key).await?;
        let held = providers
            .iter()
            .find(|r| r.peer_id() == b.local_record().peer_id())
            .map(Spr::tcp_addrs);
        if held.as_deref() == Some(std::slice::from_ref(&want)) {
            return Ok(());
        }
        assert!(
            Instant::now() < deadline,
            "c does not see b's provider record at {tcp}: {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Issue 18: a node whose reachable addresses change signs its records anew. A provider record
/// announced again replaces the old one where it is kept, and a node that PINGs it sees the
/// higher sequence number and fetches the new DHT record (with its new UDP address).
/// A key whose node id lies at a log distance from `from` that `wanted` accepts.
fn key_at(from: &NodeId, wanted: impl Fn(u16) -> bool) -> Keypair {
    loop {
        let key = Keypair::generate_secp256k1();
        let id = NodeId::from_peer_id(&key.public().to_peer_id());
        if wanted(id.log_distance(from)) {
            return key;
        }
    }
}

async fn node_from(key: Keypair) -> TestResult<CodexDht> {
    let config = DhtConfig::new(key).bind("127.0.0.1:0".parse()?);
    Ok(CodexDht::start(config).await?)
}

/// A join's lookup asks the node it joins through for three log distances, those nearest its
/// own id; a node at another distance from that node stays unknown, however small the
/// network. A sweep asks for the 16 greatest and finds it.
#[tokio::test]
async fn a_sweep_finds_the_node_a_join_cannot() -> TestResult {
    let x = node().await?;
    // C1 at distance 250 or less from X; the joiner at 254 or more, so that its join asks X
    // for 253 to 256 only.
    let c1 = node_from(key_at(&x.node_id(), |d| d <= 250)).await?;
    let joiner = node_from(key_at(&x.node_id(), |d| d >= 254)).await?;
    c1.bootstrap(x.local_record()).await?;
    joiner.bootstrap(x.local_record()).await?;
    let known = |table: Vec<RoutingEntry>| -> Vec<NodeId> {
        table.iter().map(|e| e.record.node_id()).collect()
    };
    let before = known(joiner.routing_table().await?);
    assert_eq!(before, vec![x.node_id()], "the join found only X");
    joiner.sweep().await?;
    let after = known(joiner.routing_table().await?);
    assert!(
        after.contains(&c1.node_id()),
        "the sweep missed C1: {after:?}"
    );
    Ok(())
}

#[tokio::test]
async fn records_follow_a_change_of_address() -> TestResult {
    let a = node().await?;
    // Bound on every loopback address, so that its record may move to 127.0.0.2.
    let b = node_with(|c| {
        c.bind("0.0.0.0:0".parse().unwrap())
            .announce_ip(std::net::Ipv4Addr::LOCALHOST)
            .provider_addrs(vec!["/ip4/127.0.0.1/tcp/4001".parse().unwrap()])
    })
    .await?;
    let c = node().await?;
    b.bootstrap(a.local_record()).await?;
    c.bootstrap(a.local_record()).await?;
    let key = NodeId::keccak(b"a dataset");
    b.provide(key).await?;
    wait_provider(&c, &b, key, "/ip4/127.0.0.1/tcp/4001").await?;

    let before = b.local_record();
    let moved = vec!["/ip4/127.0.0.2/tcp/4002".parse()?];
    assert!(
        b.readdress(Some("127.0.0.2".parse()?), moved.clone())
            .await?
    );
    // The same addresses again change nothing.
    assert!(!b.readdress(Some("127.0.0.2".parse()?), moved).await?);
    let after = b.local_record();
    assert!(
        after.seq() > before.seq(),
        "{} !> {}",
        after.seq(),
        before.seq()
    );
    assert_eq!(
        after.udp_addr().map(|a| a.ip().to_string()).as_deref(),
        Some("127.0.0.2")
    );
    assert_eq!(
        after.udp_addr().map(|a| a.port()),
        before.udp_addr().map(|a| a.port())
    );

    b.provide(key).await?;
    wait_provider(&c, &b, key, "/ip4/127.0.0.2/tcp/4002").await?;
    // A node that knew b's first record sees the new sequence number in b's PONG, and
    // FINDNODE at distance 0 (codex-dht's revalidation) gives it the new record.
    let pong = a.ping(&before).await?;
    assert_eq!(pong.spr_seq, after.seq());
    let fetched = a.find_node(&before, vec![0]).await?;
    let held = fetched.first().map(Spr::seq);
    assert_eq!(held, Some(after.seq()), "b answered with an old record");
    Ok(())
}

#[tokio::test]
async fn garbage_replays_and_unknown_types_are_dropped_and_counted() -> TestResult {
    let dht = node().await?;
    let mut fake = Fake::new().await?;
    let to = dht.local_addr();

    // Garbage of every size, and a packet masked for someone else.
    fake.send(
        to,
        vec![
            vec![],
            vec![1; 10],
            vec![0; 63],
            vec![7; 200],
            vec![0; 17_000],
        ],
    )
    .await?;

    // A real handshake carrying a PING, then the same handshake packet again (a replay).
    let ping = Message {
        request_id: RequestId::random(),
        body: Body::Ping { spr_seq: 1 },
    };
    let (handshake, pong) = fake.exchange(&dht, ping.encode()).await?;
    assert_eq!(pong.request_id, ping.request_id);
    let Body::Pong { ip, port, .. } = pong.body else {
        panic!("{pong:?}")
    };
    assert_eq!(SocketAddr::new(ip, port), fake.addr);
    fake.send(to, handshake).await?;

    // Over the session: a GET_PROVIDERS, then the very same packet again.
    let ask = Message {
        request_id: RequestId::random(),
        body: Body::GetProviders {
            key: NodeId::keccak(b"k"),
        },
    };
    let (sealed, answer) = fake.exchange(&dht, ask.encode()).await?;
    assert!(matches!(answer.body, Body::Providers { total: 1, ref records } if records.is_empty()));
    fake.send(to, sealed).await?;

    // A topic query (0x0A: never finished, refused) and a type nobody knows.
    let mut plain = Message {
        request_id: RequestId::random(),
        body: Body::Ping { spr_seq: 1 },
    }
    .encode();
    for kind in [0x0a, 0x42] {
        plain[0] = kind;
        let datagrams = fake
            .codec
            .seal(&Fake::peer(&dht), plain.clone(), Instant::now());
        fake.send(to, datagrams).await?;
    }
    // The service still answers.
    let ping2 = Message {
        request_id: RequestId::random(),
        body: Body::Ping { spr_seq: 1 },
    };
    let (_, pong2) = fake.exchange(&dht, ping2.encode()).await?;
    assert_eq!(pong2.request_id, ping2.request_id);

    let s = dht.stats().await?;
    assert_eq!(s.malformed, 5, "{s:?}");
    assert_eq!(s.replayed, 2, "{s:?}");
    assert_eq!(s.unknown_type, 2, "{s:?}");
    assert_eq!(s.pings_in, 2, "{s:?}");
    assert_eq!(s.get_providers_in, 1, "{s:?}");
    Ok(())
}

#[tokio::test]
async fn oversized_nodes_answers_are_refused() -> TestResult {
    let dht = node().await?;
    let mut fake = Fake::new().await?;
    let fake_record = fake.codec.record().clone();
    let asking = {
        let dht = dht.clone();
        let record = fake_record.clone();
        tokio::spawn(async move { dht.find_node(&record, vec![256]).await })
    };
    // Serve the request by hand: WHOAREYOU, then answer the FINDNODE with too many messages.
    let (inbound, _) = fake.recv().await?;
    let Inbound::Undecryptable { src, nonce } = inbound else {
        panic!("{inbound:?}")
    };
    let who = fake
        .codec
        .whoareyou(src, dht.local_addr(), nonce, None, Instant::now())
        .ok_or("whoareyou")?;
    fake.send(dht.local_addr(), vec![who]).await?;
    let (inbound, _) = fake.recv().await?;
    let Inbound::Message { message, .. } = inbound else {
        panic!("{inbound:?}")
    };
    assert!(matches!(message.body, Body::FindNode { .. }));
    let answer = Message {
        request_id: message.request_id,
        body: Body::Nodes {
            total: 50,
            records: vec![fake_record],
        },
    };
    let peer = Peer {
        id: dht.node_id(),
        addr: dht.local_addr(),
        public_key: None,
    };
    let datagrams = fake.codec.seal(&peer, answer.encode(), Instant::now());
    fake.send(dht.local_addr(), datagrams).await?;
    assert!(matches!(asking.await?, Err(DhtError::Oversized)));
    assert_eq!(dht.stats().await?.oversized, 1);

    // And a node that never answers times out after the request timeout.
    let silent = Fake::new().await?;
    let started = Instant::now();
    assert!(matches!(
        dht.ping(silent.codec.record()).await,
        Err(DhtError::Timeout)
    ));
    assert!(started.elapsed() < Duration::from_secs(3));
    Ok(())
}

#[tokio::test]
async fn a_flood_from_one_address_is_rate_limited() -> TestResult {
    let dht = node_with(|mut c| {
        c.rate = RateLimits {
            packets_per_second: 50,
            burst: 100,
            max_sources: 16,
        };
        c
    })
    .await?;
    let fake = Fake::new().await?;
    for _ in 0..300 {
        fake.send(dht.local_addr(), vec![vec![9; 80]]).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    let stats = loop {
        let s = dht.stats().await?;
        if s.packets_in >= 300 || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(stats.rate_limited >= 150, "{stats:?}");
    assert_eq!(
        stats.rate_limited + stats.malformed,
        stats.packets_in,
        "{stats:?}"
    );
    Ok(())
}
