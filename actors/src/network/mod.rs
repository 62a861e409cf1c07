//! The node's network room, behind one door: [`Network`], which [`crate::Node::network`] hands
//! out the way iroh-blobs hands out its remote handle. Inside: the libp2p component ([`net`])
//! that speaks Codex's block exchange and runs our Kademlia, Codex's own DHT ([`codex_dht`],
//! joined to the rest in `codex_join.rs`), the block-exchange actor (`exchange/`) on an arbiter
//! of its own, and the fetches (`fetch/`). Started by `room.rs` when the configuration asks for
//! a network ([`crate::Node::start_with_network`]). The store's actors know nothing of it; it reaches
//! them through the same messages as everything else, and hears of datasets stored and removed
//! from the repository's events (`repo.rs`).
//!
//! [`Network`]'s operations: identity and peers here, datasets from peers in `datasets.rs`.

pub mod codex_dht;
pub(crate) mod codex_join;
mod datasets;
pub(crate) mod exchange;
pub(crate) mod fetch;
pub mod net;
mod room;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use libp2p::{Multiaddr, PeerId};

pub use datasets::Fetching;
pub use exchange::{ExchangeConfig, ExchangeStats, PeerStats};
pub use fetch::FetchStatus;

use crate::{
    error::{Error, NetworkError, Result},
    repo::Repo,
};
use exchange::{Connect, GetStats};
use net::{DhtStats, NetConfig, RoutingTable};
use room::Room;

/// How the node takes part in the network. Every default is set in [`NetworkConfig::new`].
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// The libp2p stack: identity, listen addresses, peers, DHT.
    pub net: NetConfig,
    /// The block-exchange engine's limits and timings.
    pub exchange: ExchangeConfig,
    /// Most blocks one fetch keeps wanted at once; with 64 KiB blocks, the most memory one
    /// fetch may hold for blocks on their way and waiting to be written (so at most
    /// `max_fetches` × this in all). Within it, the window is sized from the measured rate ×
    /// latency (`fetch/window.rs`). Default 1024 (64 MiB).
    pub fetch_window: usize,
    /// Fewest blocks one fetch keeps wanted at once, where it starts. Default 256 (16 MiB), the
    /// fixed window of before: on loopback, where the measured product is small, smaller
    /// windows were slower (write batches need the room).
    pub fetch_window_min: usize,
    /// Datasets fetched at once. Default 16.
    pub max_fetches: usize,
    /// How long a manifest is looked for among peers before the answer is "not found".
    /// Default 20 s.
    pub manifest_timeout: Duration,
    /// The UDP address of Codex's DHT (Codex's `--disc-port`), which runs beside our Kademlia
    /// so that Codex nodes and ours find each other's data; an unspecified IP binds the first
    /// specific IPv4 listen address, if any. Default: none, Codex's DHT is not started (the
    /// binary starts it on port 8090).
    pub codex_dht: Option<SocketAddr>,
}

impl NetworkConfig {
    /// Defaults for a node whose repository is `data_dir`: its key at `<data-dir>/key`, its
    /// known peers at `<data-dir>/peers`, listening nowhere until told.
    pub fn new(data_dir: &std::path::Path) -> Self {
        Self {
            net: NetConfig::new(data_dir.join("key")).peer_store(data_dir.join("peers")),
            exchange: ExchangeConfig::default(),
            fetch_window: 1024,
            fetch_window_min: 256,
            max_fetches: 16,
            manifest_timeout: Duration::from_secs(20),
            codex_dht: None,
        }
    }
}

/// What the store lends the network: how long fetched blocks live, how far a stream reads ahead.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StoreSettings {
    pub(crate) block_ttl: Duration,
    pub(crate) read_ahead_blocks: usize,
}

/// The network room's handle: cheap to clone, every clone talks to the same actors. Get it from
/// [`crate::Node::network`].
#[derive(Clone)]
pub struct Network {
    room: Arc<Room>,
}

impl Network {
    /// Starts the room (see `room.rs`) and announces every dataset the store holds.
    pub(crate) async fn start(
        config: NetworkConfig,
        repo: Repo,
        store: StoreSettings,
    ) -> Result<Self> {
        let room = Room::start(config, repo, store).await?;
        room.announce_stored().await?;
        Ok(Self {
            room: Arc::new(room),
        })
    }

    /// Stops the swarm (saving the peer store), Codex's DHT and the exchange's thread.
    pub(crate) async fn shutdown(&self) {
        self.room.shutdown().await;
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.room.net.peer_id()
    }

    /// The addresses the network listens on.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the network stopped.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>> {
        self.room
            .net
            .listen_addrs()
            .await
            .map_err(|_| Error::Unavailable)
    }

    /// The addresses peers should dial now: the configured announce addresses, the listen
    /// addresses, the public address AutoNAT confirmed, relayed addresses while private
    /// ([`NetHandle::announce_addrs`](net::NetHandle::announce_addrs)).
    ///
    /// # Errors
    /// As [`Network::listen_addrs`].
    pub async fn announce_addrs(&self) -> Result<Vec<Multiaddr>> {
        self.room
            .net
            .announce_addrs()
            .await
            .map_err(|_| Error::Unavailable)
    }

    /// Reachability, relay reservations and each peer's connections (direct or relayed) with
    /// their bytes.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the network stopped.
    pub async fn nat_info(&self) -> Result<net::NatInfo> {
        self.room
            .net
            .nat_info()
            .await
            .map_err(|_| Error::Unavailable)
    }

    /// This node's signed peer record (`spr:` text): when Codex's DHT runs, its record (the
    /// UDP address, what a Codex node takes as `--bootstrap-node`), else one over the TCP
    /// announce addresses.
    ///
    /// # Errors
    /// As [`Network::listen_addrs`]; [`Error::Network`] when the record cannot be signed.
    pub async fn spr(&self) -> Result<String> {
        if let Some(dht) = &self.room.codex_dht {
            return Ok(dht.local_record().to_text());
        }
        let addrs = self.announce_addrs().await?;
        self.room
            .net
            .spr(addrs)
            .map_err(|e| Error::Network(NetworkError::new(e)))
    }

    /// Connects to `peer` at `addrs` (Codex's `/connect`).
    ///
    /// # Errors
    /// [`Error::Network`] when the peer cannot be reached there.
    pub async fn connect(&self, peer: PeerId, addrs: Vec<Multiaddr>) -> Result<()> {
        self.room
            .exchange
            .send(Connect { peer, addrs })
            .await?
            .map_err(|e| Error::Network(NetworkError::new(e)))
    }

    /// Counters of the block exchange.
    ///
    /// # Errors
    /// [`Error::Unavailable`].
    pub async fn exchange_stats(&self) -> Result<ExchangeStats> {
        Ok(self.room.exchange.send(GetStats).await?)
    }

    /// The DHT routing table, in Codex's `/debug/info` `table` shape.
    ///
    /// # Errors
    /// [`Error::Unavailable`].
    pub async fn routing_table(&self) -> Result<RoutingTable> {
        self.room
            .net
            .routing_table()
            .await
            .map_err(|_| Error::Unavailable)
    }

    /// Codex's DHT routing table in Codex's `/debug/info` shape; `None` when Codex's DHT does
    /// not run.
    ///
    /// # Errors
    /// [`Error::Unavailable`].
    pub async fn codex_routing_table(&self) -> Result<Option<crate::CodexTable>> {
        match &self.room.codex_dht {
            Some(dht) => codex_join::table(dht)
                .await
                .map(Some)
                .map_err(|_| Error::Unavailable),
            None => Ok(None),
        }
    }

    /// Counters of the DHT: lookups, providers found, dials.
    ///
    /// # Errors
    /// [`Error::Unavailable`].
    pub async fn dht_stats(&self) -> Result<DhtStats> {
        self.room
            .net
            .dht_stats()
            .await
            .map_err(|_| Error::Unavailable)
    }
}
