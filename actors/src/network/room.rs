//! Starting and stopping the network room: the libp2p component and Codex's DHT on a tokio
//! runtime of their own, the block-exchange actor on an arbiter of its own, the fetch registry
//! on the caller's; and the one request every dataset operation starts with, a manifest from
//! peers.

use actix::{Actor, Addr, Arbiter, ArbiterHandle};
use bytes::Bytes;
use cid::Cid;
use tokio::sync::{mpsc, oneshot};

use super::{
    codex_dht::CodexDht,
    codex_join,
    exchange::{BlockExchange, DatasetStored, Delivery, Unwant, Want},
    fetch::Fetches,
    net::{identity, Net, NetError, NetHandle},
    NetworkConfig, StoreSettings,
};
use crate::{
    error::{Error, NetworkError, NotOnNetwork, Result},
    format::blockexc::BlockAddress,
    meta_reader::{FindManifest, ListFetches, ListManifests},
    repo::Repo,
};

/// The running network room: what [`super::Network`] holds behind its `Arc`.
pub(super) struct Room {
    pub(super) net: NetHandle,
    pub(super) exchange: Addr<BlockExchange>,
    pub(super) fetches: Addr<Fetches>,
    pub(super) config: NetworkConfig,
    /// The repository's actors, for the datasets fetched into it.
    pub(super) repo: Repo,
    /// The store's settings a fetch needs: lifetime of what it stores, read-ahead of streams.
    pub(super) store: StoreSettings,
    /// Codex's DHT, when [`NetworkConfig::codex_dht`] asks for it.
    pub(super) codex_dht: Option<CodexDht>,
    /// The exchange's thread.
    arbiter: ArbiterHandle,
    /// The libp2p component's runtime: its own threads, so decrypting, framing and checking
    /// received blocks against their CIDs use every core instead of one event loop. Taken on
    /// shutdown (a tokio runtime must not be dropped inside an async context).
    runtime: std::sync::Mutex<Option<tokio::runtime::Runtime>>,
}

/// Threads of the network runtime.
const NET_THREADS: usize = 2;

impl Room {
    /// Starts the libp2p component and the exchange on a new arbiter, and the fetch registry on
    /// the caller's.
    pub(super) async fn start(
        config: NetworkConfig,
        repo: Repo,
        store: StoreSettings,
    ) -> Result<Self> {
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
                Err(e) => Err(Error::Network(NetworkError::new(e))),
            };
            let _ = tx.send(started);
        });
        if !spawned {
            return Err(Error::Unavailable);
        }
        let (net, exchange, codex_dht) = rx.await.map_err(|_| Error::Unavailable)??;
        let fetches = Fetches::new(
            repo.clone(),
            exchange.clone(),
            (config.fetch_window_min, config.fetch_window),
            config.max_fetches,
        )
        .start();
        // From now on the registry hears of every dataset stored or removed.
        if !repo.events.set(fetches.clone().recipient()) {
            return Err(Error::Config(
                "a network runs on this repository already".into(),
            ));
        }
        tracing::info!(peer_id = %net.peer_id(), "network started");
        Ok(Self {
            net,
            exchange,
            fetches,
            config,
            repo,
            store,
            codex_dht,
            arbiter,
            runtime: std::sync::Mutex::new(Some(runtime)),
        })
    }

    /// The bytes of a block (a manifest) no local store has, from whichever peer has it; "not
    /// found" after [`NetworkConfig::manifest_timeout`].
    pub(super) async fn block_from_peers(&self, cid: Cid) -> Result<Bytes> {
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
            return Err(Error::NotOnNetwork(NotOnNetwork::NoPeers));
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
                Err(Error::NotOnNetwork(NotOnNetwork::NoDelivery))
            }
            Err(_) => {
                self.exchange.do_send(Unwant {
                    addresses: vec![address],
                    sink: tx,
                });
                let secs = timeout.as_secs();
                // Still connected to nobody: not "nobody has it" but "nobody could be asked".
                if self.net.connected_peers().await.unwrap_or(0) == 0 {
                    let known = known + codex_known as u64;
                    return Err(Error::NotOnNetwork(NotOnNetwork::Unreachable {
                        known,
                        secs,
                    }));
                }
                Err(Error::NotOnNetwork(NotOnNetwork::Timeout(secs)))
            }
        }
    }

    /// Announces every dataset the store holds, complete or being fetched (at start-up).
    pub(super) async fn announce_stored(&self) -> Result<()> {
        let mut datasets: Vec<(Cid, Cid)> = Vec::new();
        for dataset in self
            .repo
            .reader
            .send(ListManifests { expiry: false })
            .await??
        {
            if let Ok(m) = dataset.manifest {
                datasets.push((dataset.cid, m.tree_cid));
            }
        }
        for (cid, _) in self.repo.reader.send(ListFetches).await?? {
            if let Some(local) = self.repo.reader.send(FindManifest { cid }).await?? {
                datasets.push((cid, local.manifest.tree_cid));
            }
        }
        for (manifest, tree) in datasets {
            self.exchange.do_send(DatasetStored { manifest, tree });
        }
        Ok(())
    }

    /// Stops the swarm (saving the peer store) and the exchange's thread.
    pub(super) async fn shutdown(&self) {
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

impl Drop for Room {
    fn drop(&mut self) {
        self.stop_runtime();
    }
}
