//! The node's network room: the libp2p component, the block-exchange actor on an arbiter of its
//! own, and the registry of fetches, started behind [`crate::Node`] when the configuration asks
//! for a network ([`crate::Config::network`]). The store's actors know nothing of it; it reaches
//! them through the same messages as everything else.

pub mod codex_dht;
pub(crate) mod codex_join;
pub mod exchange;
pub mod fetch;
pub mod net;

use std::{net::SocketAddr, time::Duration};

use actix::{Actor, Addr, Arbiter, ArbiterHandle};
use bytes::Bytes;
use cid::Cid;
use tokio::sync::{mpsc, oneshot};

use crate::{
    error::{Error, Result},
    format::blockexc::BlockAddress,
    meta_reader::{FindManifest, ListFetches, ListManifests},
    network::codex_dht::CodexDht,
    network::exchange::{BlockExchange, DatasetStored, Delivery, ExchangeConfig, Unwant, Want},
    network::fetch::Fetches,
    network::net::{identity, Net, NetConfig, NetError, NetHandle},
    repo::Repo,
};

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
    /// latency ([`fetch`]'s `window.rs`). Default 1024 (64 MiB).
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

/// The running network room.
pub(crate) struct Network {
    pub(crate) net: NetHandle,
    pub(crate) exchange: Addr<BlockExchange>,
    pub(crate) fetches: Addr<Fetches>,
    pub(crate) config: NetworkConfig,
    /// Codex's DHT, when [`NetworkConfig::codex_dht`] asks for it.
    pub(crate) codex_dht: Option<CodexDht>,
    /// The exchange's thread.
    arbiter: ArbiterHandle,
    /// The libp2p component's runtime: its own threads, so decrypting, framing and checking
    /// received blocks against their CIDs use every core instead of one event loop. Taken on
    /// shutdown (a tokio runtime must not be dropped inside an async context).
    runtime: std::sync::Mutex<Option<tokio::runtime::Runtime>>,
}

/// Threads of the network runtime.
const NET_THREADS: usize = 2;

impl Network {
    /// Starts the libp2p component and the exchange on a new arbiter, and the fetch registry on
    /// the caller's.
    pub(crate) async fn start(config: NetworkConfig, repo: Repo) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(NET_THREADS)
            .thread_name("network")
            .enable_all()
            .build()?;
        let bootstraps =
            codex_join::split_bootstraps(&config.net.bootstrap, config.codex_dht.is_some());
        let mut net_config = config.net.clone();
        net_config.bootstrap = bootstraps.kademlia;
        let codex_bind = config.codex_dht;
        let net_started = runtime.spawn(async move {
            let key_path = net_config.key_path.clone();
            let announce = net_config.announce_addrs.clone();
            let (handle, events) = Net::start(net_config).await?;
            let Some(bind) = codex_bind else {
                return Ok((handle, events, None));
            };
            let start = codex_join::Start {
                // Net::start created the key file if it was missing.
                keypair: identity::load_or_create(&key_path)?,
                bind,
                announce,
                listening: handle.listen_addrs().await?,
                bootstrap: bootstraps.codex,
            };
            let dht = codex_join::start(start)
                .await
                .map_err(|e| NetError::Listen(format!("Codex DHT on UDP {bind}: {e}")))?;
            Ok((handle, events, Some(dht)))
        });
        let arbiter = Arbiter::new().handle();
        let (tx, rx) = oneshot::channel();
        let exchange_config = config.exchange.clone();
        let exchange_repo = repo.clone();
        let spawned = arbiter.spawn(async move {
            let net = net_started
                .await
                .unwrap_or_else(|e| Err(NetError::Listen(e.to_string())));
            let started = match net {
                Ok((handle, events, codex_dht)) => {
                    let net = handle.clone();
                    let dht = codex_dht.clone();
                    let exchange = BlockExchange::create(move |ctx| {
                        let events = futures_util::stream::unfold(events, |mut rx| async move {
                            rx.recv().await.map(|e| (e, rx))
                        });
                        actix::AsyncContext::add_stream(ctx, events);
                        BlockExchange::new(handle, exchange_repo, exchange_config)
                            .with_codex_dht(dht)
                    });
                    Ok((net, exchange, codex_dht))
                }
                Err(e) => Err(Error::Network(e.to_string())),
            };
            let _ = tx.send(started);
        });
        if !spawned {
            return Err(Error::Unavailable);
        }
        let (net, exchange, codex_dht) = rx.await.map_err(|_| Error::Unavailable)??;
        let fetches = Fetches::new(
            repo,
            exchange.clone(),
            (config.fetch_window_min, config.fetch_window),
            config.max_fetches,
        )
        .start();
        tracing::info!(peer_id = %net.peer_id(), "network started");
        Ok(Self {
            net,
            exchange,
            fetches,
            config,
            codex_dht,
            arbiter,
            runtime: std::sync::Mutex::new(Some(runtime)),
        })
    }

    /// The bytes of a block (a manifest) no local store has, from whichever peer has it; "not
    /// found" after [`NetworkConfig::manifest_timeout`].
    pub(crate) async fn block_from_peers(&self, cid: Cid) -> Result<Bytes> {
        // A node that knows no peer at all (none connected, none in its DHT table) cannot find
        // anything: it says so at once instead of waiting out the timeout. Connections are
        // counted where they are made: the exchange hears of a peer a moment after `/connect`
        // has answered, and a request right after it must still wait for that peer.
        let connected = self.net.connected_peers().await.unwrap_or(0);
        let known = self
            .net
            .dht_stats()
            .await
            .map_or(0, |s| s.routing_table_peers);
        let codex_known = match &self.codex_dht {
            Some(dht) => dht.routing_table().await.map_or(0, |t| t.len()),
            None => 0,
        };
        if connected == 0 && known == 0 && codex_known == 0 {
            return Err(Error::NotOnNetwork("this node knows no peer".into()));
        }
        let (tx, mut rx) = mpsc::channel(1);
        let address = BlockAddress::Cid(cid);
        self.exchange
            .send(Want {
                addresses: vec![address.clone()],
                sink: tx.clone(),
            })
            .await?;
        let timeout = self.config.manifest_timeout;
        let got = tokio::time::timeout(timeout, rx.recv()).await;
        match got {
            Ok(Some(Delivery::Block { data, .. })) => Ok(data),
            Ok(Some(Delivery::Failed { .. }) | None) => {
                Err(Error::NotOnNetwork("no connected peer delivered it".into()))
            }
            Err(_) => {
                self.exchange.do_send(Unwant {
                    addresses: vec![address],
                    sink: tx,
                });
                Err(Error::NotOnNetwork(format!(
                    "no peer delivered it within {} s",
                    timeout.as_secs()
                )))
            }
        }
    }

    /// Announces every dataset the store holds, complete or being fetched (at start-up).
    pub(crate) async fn announce_stored(&self, repo: &Repo) -> Result<()> {
        let mut datasets: Vec<(Cid, Cid)> = Vec::new();
        for (cid, manifest) in repo.reader.send(ListManifests).await?? {
            if let Ok(m) = manifest {
                datasets.push((cid, m.tree_cid));
            }
        }
        for (cid, _) in repo.reader.send(ListFetches).await?? {
            if let Some(local) = repo.reader.send(FindManifest { cid }).await?? {
                datasets.push((cid, local.manifest.tree_cid));
            }
        }
        for (manifest, tree) in datasets {
            self.exchange.do_send(DatasetStored { manifest, tree });
        }
        Ok(())
    }

    /// Stops the swarm (saving the peer store) and the exchange's thread.
    pub(crate) async fn shutdown(&self) {
        if let Some(dht) = &self.codex_dht {
            let _ = dht.shutdown().await;
        }
        let _ = self.net.shutdown().await;
        self.arbiter.stop();
        self.stop_runtime();
    }

    fn stop_runtime(&self) {
        let runtime = self
            .runtime
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(runtime) = runtime {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.stop_runtime();
    }
}
