//! Helpers shared by the network tests: starting a node on loopback, waiting for events, and
//! building test blocks.

#![allow(dead_code)] // each test file uses its own subset

pub mod codex;

use std::time::Duration;

use bytes::Bytes;
use codex_actors::format::blockexc::{BlockAddress, BlockDelivery, Message};
use codex_actors::format::cid::{cid_from_digest, sha256, BLOCK_CODEC};
use codex_actors::network::net::{Net, NetConfig, NetEvent, NetHandle};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::mpsc;

/// Test result: any error fails the test with its message.
pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// How long a test waits for one expected event.
pub const EVENT_WAIT: Duration = Duration::from_secs(20);

/// A running node: its handle, events, first listen address and the temp dir of its key.
pub struct Node {
    pub handle: NetHandle,
    pub events: mpsc::Receiver<NetEvent>,
    pub addr: Multiaddr,
    pub dir: tempfile::TempDir,
}

impl Node {
    pub fn peer_id(&self) -> PeerId {
        self.handle.peer_id()
    }

    /// Waits for the first event `pick` accepts, skipping others.
    pub async fn expect<T>(
        &mut self,
        what: &str,
        pick: impl FnMut(NetEvent) -> Option<T>,
    ) -> TestResult<T> {
        expect(&mut self.events, what, pick).await
    }
}

/// A bare libp2p swarm with a fresh key (TCP, Noise, yamux, no identify) that can open
/// block-exchange streams and write anything on them; idle connections live a minute.
pub fn raw_swarm() -> TestResult<libp2p::Swarm<libp2p_stream::Behaviour>> {
    use libp2p::{identity::Keypair, noise, tcp, yamux, SwarmBuilder};
    Ok(
        SwarmBuilder::with_existing_identity(Keypair::generate_secp256k1())
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )?
            .with_behaviour(|_| libp2p_stream::Behaviour::new())?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build(),
    )
}

/// A node listening on 127.0.0.1 with a fresh key, configured further by `tune`.
pub async fn start(tune: impl FnOnce(NetConfig) -> NetConfig) -> TestResult<Node> {
    start_in(tempfile::tempdir()?, tune).await
}

/// A node listening on 127.0.0.1 with its key in `dir` (the same identity across restarts),
/// configured further by `tune`.
pub async fn start_in(
    dir: tempfile::TempDir,
    tune: impl FnOnce(NetConfig) -> NetConfig,
) -> TestResult<Node> {
    let config =
        tune(NetConfig::new(dir.path().join("key")).listen_on("/ip4/127.0.0.1/tcp/0".parse()?));
    let (handle, events) = Net::start(config).await?;
    let addr = handle
        .listen_addrs()
        .await?
        .into_iter()
        .next()
        .ok_or("no listen address")?;
    Ok(Node {
        handle,
        events,
        addr,
        dir,
    })
}

/// Waits up to [`EVENT_WAIT`] for the first event `pick` accepts.
pub async fn expect<T>(
    events: &mut mpsc::Receiver<NetEvent>,
    what: &str,
    mut pick: impl FnMut(NetEvent) -> Option<T>,
) -> TestResult<T> {
    let found = tokio::time::timeout(EVENT_WAIT, async {
        while let Some(e) = events.recv().await {
            if let Some(t) = pick(e) {
                return Some(t);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(t)) => Ok(t),
        Ok(None) => Err(format!("event stream ended while waiting for {what}").into()),
        Err(_) => Err(format!("timed out waiting for {what}").into()),
    }
}

/// A message from `from`, if `e` is one.
pub fn message_from(from: PeerId) -> impl FnMut(NetEvent) -> Option<Message> {
    move |e| match e {
        NetEvent::Message { peer, message, .. } if peer == from => Some(message),
        _ => None,
    }
}

/// A standalone data block delivery of `len` bytes filled with `fill`.
pub fn block(fill: u8, len: usize) -> BlockDelivery {
    let data = Bytes::from(vec![fill; len]);
    let cid = cid_from_digest(BLOCK_CODEC, &sha256(&data));
    BlockDelivery {
        cid,
        data,
        address: BlockAddress::Cid(cid),
        proof: None,
    }
}
