//! The libp2p side of block exchange: a network component that speaks `/codex/blockexc/1.0.0`
//! with Codex nodes and with other nodes like this one.
//!
//! # Stack
//! TCP (nodelay) + Noise + a muxer choice of yamux or mplex (Codex speaks only `/mplex/6.7.0`),
//! a secp256k1 identity kept on disk ([`identity`]), identify without a signed peer record (nim
//! drops connections whose record it cannot verify, and rust-libp2p's identify would sign one
//! with a legacy domain), a connection limit, and raw streams for block exchange.
//!
//! # Streams
//! Codex does not pair requests with replies. Each side lazily opens one long-lived outbound
//! stream per peer and writes all of its messages on it, replies included, and reads every
//! stream it has: its inbound ones and its own outbound one. So does this component: one
//! writer task per peer owns our outbound stream (and reopens it on the next send after a
//! failure), and a reader task runs on every stream. Frames are varint-length-prefixed protobuf
//! ([`framing`], [`crate::format::blockexc`]).
//!
//! # Running it
//! [`Net::start`] builds the swarm, binds the listen addresses and spawns the driver task on the
//! current tokio runtime with `tokio::spawn`. actix-rt runs on tokio, so it works from inside an
//! actix `System` or `Arbiter` (e.g. `Arbiter::new().spawn(async { Net::start(cfg).await … })`,
//! or straight from an actor's `started` with `ctx.spawn(fut.into_actor(self))`). It returns a
//! [`NetHandle`] (cheap to clone: commands go over a bounded channel) and a receiver of
//! [`NetEvent`]s. Dropping that receiver, or calling [`NetHandle::shutdown`], stops the network.
//!
//! # Limits
//! Every queue is bounded: commands, events, each peer's send queue (a full one makes
//! [`NetHandle::send`] fail with [`NetError::QueueFull`] instead of growing). Frames are at most
//! [`NetConfig::max_frame_bytes`]; the bytes of frames being read or queued as events are
//! capped by a shared budget ([`FrameBudget`]); each peer may run a few inbound block-exchange streams at a time. A peer that sends an
//! oversized frame, garbage or an out-of-range enum has that stream reset and a
//! [`NetEvent::Violation`] is reported; its other streams and all other peers carry on.
//!
//! # Finding data
//! [`dht`]: a Kademlia DHT of provider records on the same connections, bootstrap peers, and a
//! peer store that lets a restarted node rejoin on its own. Through the handle:
//! [`NetHandle::provide`], [`NetHandle::stop_providing`], [`NetHandle::find_providers`],
//! [`NetHandle::routing_table`], [`NetHandle::dht_stats`].

pub mod dht;
mod driver;
pub mod framing;
pub mod identity;
mod inbound;
mod ip_limits;
mod peer;
pub mod spr;
mod transport;

use std::path::PathBuf;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use tokio::sync::{mpsc, oneshot};

use crate::format::blockexc::{Message, WireError};
use crate::Cid;

pub use dht::{BootstrapError, BootstrapPeer, DhtConfig, DhtStats, RoutingNode, RoutingTable};
pub use driver::Net;
pub use framing::FrameError;

/// Providers of a key, as [`NetHandle::find_providers`] returns them: each peer with the
/// addresses known for it (possibly none).
pub type Providers = Vec<(PeerId, Vec<Multiaddr>)>;

/// The block-exchange protocol id, as Codex registers it.
pub const BLOCKEXC_PROTOCOL: StreamProtocol = StreamProtocol::new("/codex/blockexc/1.0.0");

/// Default largest frame accepted from a peer: 4 MiB. Codex sends at most 20 blocks per delivery
/// message, about 1.3 MiB with 64 KiB blocks and their proofs, and want or presence batches of at
/// most 1024 entries (under 100 KiB). Codex itself would accept 100 MiB, but each frame being read
/// is held in memory, so the limit is kept at three times the largest real message.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 4 << 20;

/// Settings of the network component. Every default is set in [`NetConfig::new`].
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Where the secp256k1 key lives (created on first start).
    pub key_path: PathBuf,
    /// Addresses to listen on, e.g. `/ip4/127.0.0.1/tcp/0`. Default: none (dial only).
    pub listen_addrs: Vec<Multiaddr>,
    /// Most established connections at once (Codex's `--max-peers`). Default 160, as Codex.
    pub max_peers: u32,
    /// Most of them that peers may open to us; the rest stay for the connections this node
    /// dials (providers, `/connect`, bootstrap). Default 120.
    pub max_inbound_peers: u32,
    /// Most inbound connections from one IP address, pending or established. Default 8.
    pub max_inbound_per_ip: usize,
    /// Largest frame read or written. Default [`DEFAULT_MAX_FRAME_BYTES`].
    pub max_frame_bytes: usize,
    /// Bytes of frames being read or waiting in the event queue, over all streams. Default
    /// 64 MiB. At least one frame always fits.
    pub max_inflight_frame_bytes: usize,
    /// Inbound block-exchange streams a peer may have open at once. Default 4 (Codex opens one).
    pub max_inbound_streams_per_peer: usize,
    /// Messages queued per peer before [`NetHandle::send`] refuses more. Default 64.
    pub peer_queue_len: usize,
    /// Events buffered for the consumer. Default 256.
    pub event_queue_len: usize,
    /// The identify agent string. Default `codex-node/<crate version>`.
    pub agent_version: String,
    /// How long a connection with no open stream is kept. Default 10 min: Codex opens streams
    /// only when it has something to say, so a short timeout would keep dropping its peers.
    pub idle_timeout: Duration,
    /// Time allowed to read one frame once its length arrived, on top of its length at
    /// [`NetConfig::min_frame_rate`]. Default 10 s.
    pub frame_timeout: Duration,
    /// Slowest rate (bytes per second) at which a frame's body may arrive. Default 64 KiB/s:
    /// a 1.3 MiB delivery gets 30 s, a 4 MiB frame 74 s.
    pub min_frame_rate: u64,
    /// Bytes of frames being read or queued that one peer may hold, over all its streams.
    /// Default two frames ([`NetConfig::max_frame_bytes`] × 2), so that a few identities
    /// cannot take the whole [`NetConfig::max_inflight_frame_bytes`].
    pub max_peer_frame_bytes: usize,
    /// An inbound block-exchange stream on which no frame starts for this long is closed.
    /// Default 10 min, as the connection idle timeout.
    pub stream_idle_timeout: Duration,
    /// Peers to join the DHT through, as `/ip4/…/tcp/…/p2p/<peerId>` or `spr:` text with a
    /// TCP address ([`BootstrapPeer::parse`]); checked at start. Default: none, which makes
    /// this node the first of a network unless the peer store knows others.
    pub bootstrap: Vec<String>,
    /// The peer store file (e.g. `<data-dir>/peers`): DHT peers met, saved every 30 s when
    /// changed and at shutdown, loaded at start like bootstrap peers. Default: none (nothing
    /// is remembered).
    pub peer_store: Option<PathBuf>,
    /// Addresses put in our provider records and identify. Default: none, meaning the bound
    /// listen addresses (loopback ones only when there is nothing else).
    pub announce_addrs: Vec<Multiaddr>,
    /// DHT settings.
    pub dht: DhtConfig,
}

impl NetConfig {
    /// Defaults for everything but the key path.
    pub fn new(key_path: impl Into<PathBuf>) -> Self {
        NetConfig {
            key_path: key_path.into(),
            listen_addrs: Vec::new(),
            max_peers: 160,
            max_inbound_peers: 120,
            max_inbound_per_ip: 8,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_inflight_frame_bytes: 64 << 20, /* 64 MiB */
            max_inbound_streams_per_peer: 4,
            peer_queue_len: 64,
            event_queue_len: 256,
            agent_version: format!("codex-node/{}", env!("CARGO_PKG_VERSION")),
            idle_timeout: Duration::from_secs(600),
            frame_timeout: Duration::from_secs(10),
            min_frame_rate: 64 * 1024,
            max_peer_frame_bytes: 2 * DEFAULT_MAX_FRAME_BYTES,
            stream_idle_timeout: Duration::from_secs(600),
            bootstrap: Vec::new(),
            peer_store: None,
            announce_addrs: Vec::new(),
            dht: DhtConfig::default(),
        }
    }

    /// Adds a bootstrap peer (multiaddr with `/p2p/<peerId>`, or `spr:` text). Default: none.
    #[must_use]
    pub fn bootstrap_peer(mut self, text: impl Into<String>) -> Self {
        self.bootstrap.push(text.into());
        self
    }

    /// Sets the peer store file. Default: none.
    #[must_use]
    pub fn peer_store(mut self, path: impl Into<PathBuf>) -> Self {
        self.peer_store = Some(path.into());
        self
    }

    /// Adds a listen address. Default: none.
    #[must_use]
    pub fn listen_on(mut self, addr: Multiaddr) -> Self {
        self.listen_addrs.push(addr);
        self
    }

    /// Sets the connection limit, and the inbound share to three quarters of it. Default =
    /// 160.
    #[must_use]
    pub fn max_peers(mut self, n: u32) -> Self {
        self.max_peers = n;
        self.max_inbound_peers = n - n / 4;
        self
    }

    /// Sets the largest frame. Default = 4 MiB.
    #[must_use]
    pub fn max_frame_bytes(mut self, n: usize) -> Self {
        self.max_frame_bytes = n;
        self
    }
}

/// What the network reports.
#[derive(Debug)]
pub enum NetEvent {
    /// A listen address is bound.
    Listening(Multiaddr),
    /// The first connection to a peer is up.
    PeerConnected {
        /// The peer.
        peer: PeerId,
        /// Its address on that connection.
        addr: Multiaddr,
    },
    /// The peer answered identify.
    Identified {
        /// The peer.
        peer: PeerId,
        /// Its agent string ("Codex" for a Codex node).
        agent_version: String,
    },
    /// The last connection to a peer closed.
    PeerDisconnected {
        /// The peer.
        peer: PeerId,
    },
    /// A valid block-exchange message arrived.
    Message {
        /// The sender.
        peer: PeerId,
        /// The message.
        message: Message,
        /// The frame's share of the read budget, held until this event is dropped, so queued
        /// messages count against [`NetConfig::max_inflight_frame_bytes`] too.
        budget: FrameBudget,
    },
    /// A peer broke the protocol; the stream it came on is reset.
    Violation {
        /// The peer.
        peer: PeerId,
        /// What it did.
        violation: Violation,
    },
    /// A message could not be written; it is dropped and the next send opens a new stream.
    SendFailed {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: SendFailure,
    },
}

/// Bytes of the read budget held by one received frame; dropping it gives them back. Keep it
/// while the message's blocks are held in memory, drop it once they are stored.
#[derive(Debug)]
pub struct FrameBudget {
    _held: Option<peer::Held>,
}

/// A protocol violation by a peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// A frame above our limit.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// Announced length.
        len: u64,
        /// Our limit.
        max: usize,
    },
    /// A length prefix that is not a varint, or a frame cut short by the end of the stream.
    #[error("broken framing")]
    Framing,
    /// A frame that took longer than the frame timeout to arrive.
    #[error("frame too slow")]
    SlowFrame,
    /// A frame that is not a valid message.
    #[error("invalid message: {0}")]
    Message(#[from] WireError),
    /// More inbound streams at once than allowed; the new one is refused.
    #[error("too many inbound streams")]
    TooManyStreams,
}

/// Why a send failed after it was queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendFailure {
    /// The peer does not speak `/codex/blockexc/1.0.0`.
    Unsupported,
    /// Opening the stream failed or timed out.
    OpenStream(std::io::ErrorKind),
    /// Writing to the stream failed.
    Write(std::io::ErrorKind),
    /// The message encodes to more than the frame limit.
    TooLarge(usize),
}

/// Errors of the network component's API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// The identity key file is unusable.
    #[error("identity: {0}")]
    Identity(String),
    /// The transport could not be built or a listen address could not be bound.
    #[error("cannot listen: {0}")]
    Listen(String),
    /// Dialling failed (no address worked, handshake refused, limit reached).
    #[error("dial failed: {0}")]
    Dial(String),
    /// There is no connection to the peer.
    #[error("not connected to {0}")]
    NotConnected(PeerId),
    /// The peer's send queue is full; try again after the queue drained.
    #[error("send queue to {0} is full")]
    QueueFull(PeerId),
    /// A bootstrap peer text is unusable.
    #[error("{0}")]
    Bootstrap(String),
    /// Too many lookups (or first announcements) are running; try again once some ended.
    #[error("{0} DHT lookups are running already")]
    TooManyLookups(usize),
    /// We already provide as many keys as [`DhtConfig::max_provided_keys`] allows.
    #[error("already providing the maximum of {0} keys")]
    TooManyProvidedKeys(usize),
    /// The network task has stopped.
    #[error("the network has stopped")]
    Stopped,
}

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
}

/// A cheap, cloneable handle on the running network component.
#[derive(Clone)]
pub struct NetHandle {
    commands: mpsc::Sender<Command>,
    key: Keypair,
    /// Inbound connections refused by the per-IP cap.
    refused: std::sync::Arc<std::sync::atomic::AtomicU64>,
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
    /// write failures come back as [`NetEvent::SendFailed`].
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
    /// that first announcement finished, or after [`DhtConfig::lookup_timeout`]; either way the
    /// key is announced again every [`DhtConfig::provider_republish_interval`] until
    /// [`NetHandle::stop_providing`]. Providing a key again is harmless.
    ///
    /// # Errors
    /// [`NetError::TooManyProvidedKeys`], [`NetError::TooManyLookups`] (the key is then not
    /// provided), [`NetError::Stopped`].
    pub async fn provide(&self, key: Cid) -> Result<(), NetError> {
        self.ask(|reply| Command::Provide { key, reply }).await?
    }

    /// Stops answering for and re-announcing `key`. Peers that stored our record keep handing
    /// it out until it expires ([`DhtConfig::provider_record_ttl`]).
    ///
    /// # Errors
    /// [`NetError::Stopped`].
    pub async fn stop_providing(&self, key: Cid) -> Result<(), NetError> {
        self.ask(|reply| Command::StopProviding { key, reply })
            .await
    }

    /// Looks up providers of `key` in the DHT, taking at most [`DhtConfig::lookup_timeout`]
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
