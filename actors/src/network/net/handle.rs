//! [`NetHandle`]: the cheap, cloneable handle on the running network component, and the
//! commands it sends the driver task.

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};

use super::dht::{DhtStats, RoutingTable};
use super::{spr, NatInfo, NetError, Providers};
use crate::format::blockexc::Message;
use crate::Cid;

/// What the handle asks the driver task.
pub(crate) enum Command {
    Dial {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    Send {
        peer: PeerId,
        message: Message,
        reply: oneshot::Sender<Result<(), NetError>>,
        /// Told whether the frame was written, once the peer's writer is done with it.
        written: Option<oneshot::Sender<bool>>,
    },
    Disconnect {
        peer: PeerId,
        reply: oneshot::Sender<bool>,
    },
    ListenAddrs {
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
    Provide {
        key: Cid,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    StopProviding {
        key: Cid,
        reply: oneshot::Sender<()>,
    },
    FindProviders {
        key: Cid,
        reply: oneshot::Sender<Result<Providers, NetError>>,
    },
    RoutingTable {
        reply: oneshot::Sender<RoutingTable>,
    },
    DhtStats {
        reply: oneshot::Sender<DhtStats>,
    },
    ConnectedPeers {
        reply: oneshot::Sender<usize>,
    },
    NatInfo {
        reply: oneshot::Sender<NatInfo>,
    },
    AnnounceAddrs {
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
}

/// A cheap, cloneable handle on the running network component.
#[derive(Clone)]
pub struct NetHandle {
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) key: Keypair,
    /// Inbound connections refused by the per-IP cap.
    pub(super) refused: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl NetHandle {
    /// Inbound connections refused so far because their address had too many already.
    pub fn refused_connections(&self) -> u64 {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Our peer id.
    pub fn peer_id(&self) -> PeerId {
        self.key.public().to_peer_id()
    }

    /// Connects to `peer` at `addrs` and returns once a connection is up (at once if one is).
    ///
    /// # Errors
    /// [`NetError::Dial`] when no address worked, [`NetError::Stopped`].
    pub async fn dial(&self, peer: PeerId, addrs: Vec<Multiaddr>) -> Result<(), NetError> {
        self.ask(|reply| Command::Dial { peer, addrs, reply })
            .await?
    }

    /// Queues `message` for `peer`'s outbound stream. Returns once queued, not once written:
    /// write failures come back as [`NetEvent::SendFailed`](crate::network::net::NetEvent::SendFailed).
    ///
    /// # Errors
    /// [`NetError::NotConnected`], [`NetError::QueueFull`], [`NetError::Stopped`].
    pub async fn send(&self, peer: PeerId, message: Message) -> Result<(), NetError> {
        self.ask(|reply| Command::Send {
            peer,
            message,
            reply,
            written: None,
        })
        .await?
    }

    /// Queues `message` for `peer` like [`NetHandle::send`], then waits until it has been
    /// written to the peer's stream. Senders of large messages (block deliveries) use it to
    /// keep one message per peer in flight instead of filling the queue with megabytes.
    ///
    /// # Errors
    /// As [`NetHandle::send`]; [`NetError::NotConnected`] when the write failed.
    pub async fn send_written(&self, peer: PeerId, message: Message) -> Result<(), NetError> {
        let (written_tx, written_rx) = oneshot::channel();
        self.ask(|reply| Command::Send {
            peer,
            message,
            reply,
            written: Some(written_tx),
        })
        .await??;
        match written_rx.await {
            Ok(true) => Ok(()),
            _ => Err(NetError::NotConnected(peer)),
        }
    }

    /// Closes every connection to `peer`; `false` when there was none.
    ///
    /// # Errors
    /// [`NetError::Stopped`].
    pub async fn disconnect(&self, peer: PeerId) -> Result<bool, NetError> {
        self.ask(|reply| Command::Disconnect { peer, reply }).await
    }

    /// The addresses we listen on.
    ///
    /// # Errors
    /// [`NetError::Stopped`].
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NetError> {
        self.ask(|reply| Command::ListenAddrs { reply }).await
    }

    /// Our signed peer record over `addrs`, as `spr:…` text.
    ///
    /// # Errors
    /// [`spr::SprError::Signing`] if the key cannot sign.
    pub fn spr(&self, addrs: Vec<Multiaddr>) -> Result<String, spr::SprError> {
        spr::encode(&self.key, addrs)
    }

    /// Announces that this node provides the data of `key` (the binary CID is the DHT key):
    /// stores our provider record and sends it to the peers closest to the key. Returns once
    /// that first announcement finished, or after [`DhtConfig::lookup_timeout`](crate::network::net::DhtConfig::lookup_timeout); either way the
    /// key is announced again every [`DhtConfig::provider_republish_interval`](crate::network::net::DhtConfig::provider_republish_interval) until
    /// [`NetHandle::stop_providing`]. Providing a key again is harmless.
    ///
    /// # Errors
    /// [`NetError::TooManyProvidedKeys`], [`NetError::TooManyLookups`] (the key is then not
    /// provided), [`NetError::Stopped`].
    pub async fn provide(&self, key: Cid) -> Result<(), NetError> {
        self.ask(|reply| Command::Provide { key, reply }).await?
    }

    /// Stops answering for and re-announcing `key`. Peers that stored our record keep handing
    /// it out until it expires ([`DhtConfig::provider_record_ttl`](crate::network::net::DhtConfig::provider_record_ttl)).
    ///
    /// # Errors
    /// [`NetError::Stopped`].
    pub async fn stop_providing(&self, key: Cid) -> Result<(), NetError> {
        self.ask(|reply| Command::StopProviding { key, reply })
            .await
    }

    /// Looks up providers of `key` in the DHT, taking at most [`DhtConfig::lookup_timeout`](crate::network::net::DhtConfig::lookup_timeout)
    /// (an empty list means nobody was found in that time). Each provider comes with the
    /// addresses known for it (from its record, the routing table or identify; possibly none).
    /// This node is never listed. Nothing is dialled for the caller: connecting is up to it.
    ///
    /// # Errors
    /// [`NetError::TooManyLookups`] when 128 are running, [`NetError::Stopped`].
    pub async fn find_providers(&self, key: Cid) -> Result<Providers, NetError> {
        self.ask(|reply| Command::FindProviders { key, reply })
            .await?
    }

    /// The DHT routing table, in the shape of Codex's `/debug/info` `table`.
    ///
    /// # Errors
    /// [`NetError::Stopped`].
    pub async fn routing_table(&self) -> Result<RoutingTable, NetError> {
        self.ask(|reply| Command::RoutingTable { reply }).await
    }

    /// The DHT counters, for metrics.
    ///
    /// # Errors
    /// [`NetError::Stopped`].
    pub async fn dht_stats(&self) -> Result<DhtStats, NetError> {
        self.ask(|reply| Command::DhtStats { reply }).await
    }

    /// How many peers the node has a connection to right now (a dial is answered once its
    /// connection is up, before the block exchange hears of the peer).
    ///
    /// # Errors
    /// [`NetError::Stopped`].
    pub async fn connected_peers(&self) -> Result<usize, NetError> {
        self.ask(|reply| Command::ConnectedPeers { reply }).await
    }

    /// Reachability, relay reservations, and each connected peer's connections (direct or
    /// relayed) with their bytes, for `/debug/info`.
    ///
    /// # Errors
    /// [`NetError::Stopped`].
    pub async fn nat_info(&self) -> Result<NatInfo, NetError> {
        self.ask(|reply| Command::NatInfo { reply }).await
    }

    /// The addresses peers should dial us at now: the confirmed external ones (the configured
    /// or listen addresses, the public address AutoNAT confirmed, relayed addresses while
    /// private), else the listen addresses.
    ///
    /// # Errors
    /// [`NetError::Stopped`].
    pub async fn announce_addrs(&self) -> Result<Vec<Multiaddr>, NetError> {
        self.ask(|reply| Command::AnnounceAddrs { reply }).await
    }

    /// Stops the network: saves the peer store, closes all connections and ends the driver
    /// task.
    ///
    /// # Errors
    /// [`NetError::Stopped`] when it had already stopped.
    pub async fn shutdown(&self) -> Result<(), NetError> {
        self.ask(|reply| Command::Shutdown { reply }).await
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NetError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(command(tx))
            .await
            .map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)
    }
}
