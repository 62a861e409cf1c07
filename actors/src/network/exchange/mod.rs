//! The block-exchange actor: Codex's `/codex/blockexc/1.0.0` engine. It owns the network
//! component ([`crate::network::net`], the libp2p swarm) and runs on an arbiter (thread) of its own,
//! talking to the store's actors only by messages.
//!
//! As a downloader (`wants.rs`), it keeps the blocks that fetches asked for ([`Want`]) pending,
//! learns who has them (wantHave → presences, sent to every peer when it connects and again
//! while nobody has a block), asks one peer per block (wantBlock, least loaded first, a bounded
//! number in flight per peer), gives up on a peer that stays silent, and retries a bounded
//! number of times. A delivery passes the checks of Codex's engine in Codex's order, but with
//! the proof's result really checked (Codex only checks that verifying did not fail): the data
//! hashes to its CID (checked while decoding, in the network layer), the address is pending,
//! it was asked of this peer, and a leaf's proof leads from the block to the tree root. Only
//! then does it reach the fetch that wanted it (`receive.rs`); a failing block is never stored,
//! and a peer that sends one is disconnected.
//!
//! As a responder (`serve.rs`), it answers wantHave with Have presences for what this node holds
//! (never DontHave unless asked: Codex reads every presence as Have), and serves wantBlock lists
//! in messages of at most 20 blocks, with Merkle proofs for leaves; what it lacks is served
//! once stored ([`Resolve`], Codex's `resolveBlocks`).
//!
//! Shutdown: it stops with its arbiter; dropping the network handle stops the swarm.

mod deadlines;
mod discovery;
mod peer;
mod receive;
mod serve;
mod wants;

use std::{collections::HashMap, time::Duration};

use actix::{
    Actor, ActorContext, AsyncContext, Context, Handler, Message, MessageResult, StreamHandler,
};
use bytes::Bytes;
use cid::Cid;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::mpsc;

pub use self::peer::PeerStats;
use self::{peer::Peer, wants::Pending};
use crate::{
    format::{
        blockexc::{BlockAddress, Message as Wire},
        merkle::CodexProof,
    },
    network::net::{NetEvent, NetHandle, SendFailure},
    repo::Repo,
};

/// Limits and timings of the exchange. Every default is set in [`ExchangeConfig::default`].
#[derive(Debug, Clone)]
pub struct ExchangeConfig {
    /// Blocks asked of one peer and not yet received. Default 512 (32 MiB of 64 KiB blocks).
    /// Shared out among the peers that hold wanted blocks (half of it while one alone is known),
    /// so that several seeders share a download. A lone holder may so be asked for 256 blocks:
    /// five of our 48-block deliveries, enough that one is read, one written, one in transit
    /// and one decoded while the next is already asked. At 256, a lone seeder got 128 and found
    /// its want list empty about a hundred times per GiB (`benches/README.md`).
    pub max_requests_per_peer: usize,
    /// Most blocks asked of one peer at once when its measured delivery rate × latency calls
    /// for more than its share above (a long, fast link). Default 1024. Requests hold no memory
    /// here: what arrives is bounded by the fetch windows and the frame budgets.
    pub request_window_max: usize,
    /// A peer with requests outstanding that delivers nothing for this long loses them (they go
    /// to other peers) and its presences are forgotten. Default 30 s (Codex: 1 min).
    pub peer_timeout: Duration,
    /// How often wants nobody is known to have are asked of every peer again (wantHave).
    /// Default 2 s (Codex's retry interval).
    pub refresh_interval: Duration,
    /// Refreshes and peer timeouts a want survives before it fails. Default 60 (about two
    /// minutes with nobody holding the block; Codex tries 3000 times).
    pub retries: u32,
    /// Blocks a peer may ask of us at once (its wantBlock list); more are ignored and counted.
    /// Default 4096.
    pub max_peer_wants: usize,
    /// Peers served at once (a serve task reads up to `MAX_DELIVERY_BLOCKS` blocks and
    /// sends them). Default 10, as Codex's task runners.
    pub serve_tasks: usize,
    /// A block asked of a peer that has not arrived this long after the peer last delivered
    /// something we asked (or after we asked it, when it was idle) is asked of another holder,
    /// and counts against the peer. Default 10 s: shorter than the 20 s a manifest is waited
    /// for, long enough for a 256-block window over a 20 Mbit/s link.
    pub request_timeout: Duration,
}

impl Default for ExchangeConfig {
    fn default() -> Self {
        Self {
            max_requests_per_peer: 512,
            request_window_max: 1024,
            peer_timeout: Duration::from_secs(30),
            refresh_interval: Duration::from_secs(2),
            retries: 60,
            max_peer_wants: 4096,
            serve_tasks: 10,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Most blocks in one delivery message (Codex's limit: about 1.3 MiB with 64 KiB blocks).
pub const MAX_DELIVERY_BLOCKS: usize = 20;
/// Most blocks in one delivery message to a peer that identifies as one of our own nodes
/// ([`OWN_AGENT_PREFIX`]): every version of ours decodes up to
/// [`crate::format::blockexc::MAX_MESSAGE_BLOCKS`] (64) in frames of up to 4 MiB, and 48 blocks
/// of 64 KiB with their proofs stay near 3.1 MiB. Fewer, larger messages mean fewer reads,
/// proof lookups, frames and wake-ups per GiB on both sides (see benches/README.md). Codex
/// nodes keep getting [`MAX_DELIVERY_BLOCKS`].
pub const OWN_DELIVERY_BLOCKS: usize = 48;
/// The start of the identify agent our nodes send (`codex-node/<version>`).
pub const OWN_AGENT_PREFIX: &str = "codex-node/";
/// Most entries in one want-list or presence message (Codex's `MaxWantListBatchSize`).
pub const MAX_LIST_ENTRIES: usize = 1024;

/// What the exchange hands to a fetch for one wanted address.
#[derive(Debug)]
pub enum Delivery {
    /// A block that passed every check.
    Block {
        /// The address it was wanted under.
        address: BlockAddress,
        /// Its CID.
        cid: Cid,
        /// Its bytes (they hash to `cid`).
        data: Bytes,
        /// Its Merkle proof, for a leaf (verified against the tree).
        proof: Option<CodexProof>,
    },
    /// The want failed: no peer delivered it within the retries.
    Failed {
        /// The address.
        address: BlockAddress,
        /// Set when a holder was lost because a relay ended its circuit at a limit: why.
        relay_limit: Option<String>,
    },
}

/// Fetch these addresses from peers; each outcome goes to `sink` (which must have room for
/// one item per address: the exchange never blocks on it).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Want {
    /// The addresses.
    pub addresses: Vec<BlockAddress>,
    /// Where deliveries go.
    pub sink: mpsc::Sender<Delivery>,
}

/// Stop fetching these addresses (for this sink: others wanting them still get them).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Unwant {
    /// The addresses.
    pub addresses: Vec<BlockAddress>,
    /// The sink that wanted them.
    pub sink: mpsc::Sender<Delivery>,
}

/// These blocks are now stored here: serve the peers waiting for them.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub enum Resolve {
    /// Standalone or leaf addresses.
    Addresses(Vec<BlockAddress>),
    /// Every leaf of this tree (a dataset committed or completed).
    Tree(Cid),
}

/// A dataset is here (committed by an upload, found at start-up, or being fetched): serve the
/// peers waiting for its blocks, and announce it in the DHT.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct DatasetStored {
    /// The manifest CID.
    pub manifest: Cid,
    /// Its tree CID.
    pub tree: Cid,
}

/// A dataset was removed here (deleted or expired): stop announcing it.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct DatasetRemoved {
    /// The manifest CID.
    pub manifest: Cid,
}

/// Connect to a peer at these addresses. Replies once connected.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), crate::network::net::NetError>")]
pub struct Connect {
    /// The peer.
    pub peer: PeerId,
    /// Where it listens.
    pub addrs: Vec<Multiaddr>,
}

/// Counters of the exchange, for metrics and `/debug/info`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExchangeStats {
    /// Peers connected now.
    pub peers: u64,
    /// Blocks sent to peers.
    pub blocks_sent: u64,
    /// Blocks received that passed every check.
    pub blocks_received: u64,
    /// Deliveries dropped as duplicates (a block that arrived from two peers).
    pub duplicate_blocks: u64,
    /// Deliveries refused: unrequested, wrong proof, or a stream the network layer closed for a
    /// protocol violation (oversized frame, garbage, bad enum, data not matching its CID).
    pub bad_blocks: u64,
    /// Protocol violations reported by the network layer.
    pub violations: u64,
    /// Wants given to another peer after a timeout or a disconnect.
    pub retries: u64,
    /// Peers that stopped answering requests.
    pub peer_timeouts: u64,
    /// Wants that failed for good.
    pub failed_wants: u64,
    /// Want-have lists and want-block lists sent.
    pub want_lists_sent: u64,
    /// Want lists received.
    pub want_lists_received: u64,
    /// Want entries from peers ignored because the peer was over its limits (block wants or
    /// want-haves queued), a sign of a flood.
    pub shed_entries: u64,
    /// Requests a peer did not answer within [`ExchangeConfig::request_timeout`].
    pub request_timeouts: u64,
    /// Inbound connections refused because their IP address had too many already.
    pub refused_connections: u64,
    /// Peers disconnected because they did not read what we sent them in time.
    pub slow_peers: u64,
    /// Peers whose Have presences proved false often enough that they are no longer asked.
    pub distrusted_peers: u64,
    /// Blocks wanted now.
    pub pending: u64,
    /// The most blocks wanted at once since the start: the fetch windows at work.
    pub most_pending: u64,
    /// Blocks sent to and received from each connected peer.
    pub per_peer: Vec<PeerStats>,
}

/// Read the exchange's counters.
#[derive(Debug, Message)]
#[rtype(result = "ExchangeStats")]
pub struct GetStats;

/// The block-exchange actor; see the module docs.
pub struct BlockExchange {
    /// The network component (commands); its events arrive as this actor's stream.
    net: NetHandle,
    /// The store's actors, to answer peers.
    repo: Repo,
    config: ExchangeConfig,
    /// Connected peers.
    peers: HashMap<PeerId, Peer>,
    /// Blocks wanted by local fetches.
    pending: HashMap<BlockAddress, Pending>,
    /// Serve tasks reading blocks ([`ExchangeConfig::serve_tasks`] at most).
    serving: usize,
    /// Blocks in delivery messages being written.
    writing: usize,
    /// Presence lookups running.
    have_lookups: usize,
    /// wantBlock entries gathered while handling one event, sent at its end.
    outbox: HashMap<PeerId, Vec<BlockAddress>>,
    /// What this node announces in the DHT, and the lookups for what it wants.
    discovery: discovery::Discovery,
    /// Codex's DHT, announced in and searched beside our Kademlia when it runs.
    codex_dht: Option<crate::network::codex_dht::CodexDht>,
    stats: ExchangeStats,
    /// Warnings about misbehaving peers are logged at most this often, so a flood shows in
    /// the log without filling it.
    warn_limit: WarnLimit,
    /// Average time from asking a peer for a block to receiving it, over recent deliveries.
    latency: Option<Duration>,
}

/// Lets a warning through at most once per [`WarnLimit::EVERY`]; counts what it held back.
#[derive(Debug, Default)]
pub(crate) struct WarnLimit {
    last: Option<std::time::Instant>,
    held_back: u64,
}

impl WarnLimit {
    const EVERY: Duration = Duration::from_secs(5);

    /// True when a warning may be logged now.
    pub(crate) fn allow(&mut self) -> bool {
        let now = std::time::Instant::now();
        if self
            .last
            .is_some_and(|at| now.duration_since(at) < Self::EVERY)
        {
            self.held_back += 1;
            return false;
        }
        if self.held_back > 0 {
            tracing::warn!(
                held_back = self.held_back,
                "more peer misbehaviour than the log shows"
            );
            self.held_back = 0;
        }
        self.last = Some(now);
        true
    }
}

impl BlockExchange {
    /// An exchange over a started network component.
    pub(crate) fn new(net: NetHandle, repo: Repo, config: ExchangeConfig) -> Self {
        Self {
            net,
            repo,
            config,
            peers: HashMap::new(),
            pending: HashMap::new(),
            serving: 0,
            writing: 0,
            have_lookups: 0,
            outbox: HashMap::new(),
            discovery: discovery::Discovery::default(),
            codex_dht: None,
            stats: ExchangeStats::default(),
            warn_limit: WarnLimit::default(),
            latency: None,
        }
    }

    /// Also announces in and searches Codex's DHT, when it runs.
    #[must_use]
    pub(crate) fn with_codex_dht(
        mut self,
        dht: Option<crate::network::codex_dht::CodexDht>,
    ) -> Self {
        self.codex_dht = dht;
        self
    }

    /// Sends `message` to `peer` in the background; a failure is only logged (the peer's
    /// disconnect, or the next timeout, takes care of what it meant).
    fn send(&self, ctx: &mut Context<Self>, peer: PeerId, message: Wire) {
        let net = self.net.clone();
        ctx.spawn(actix::fut::wrap_future(async move {
            if let Err(e) = net.send(peer, message).await {
                tracing::debug!(%peer, error = %e, "block-exchange send failed");
            }
        }));
    }

    fn on_message(&mut self, peer: PeerId, message: Wire, ctx: &mut Context<Self>) {
        if !message.wantlist.entries.is_empty() {
            self.stats.want_lists_received += 1;
            self.on_wantlist(peer, message.wantlist, ctx);
        }
        for presence in message.presences {
            self.on_presence(peer, presence);
        }
        let delivered = !message.deliveries.is_empty();
        for delivery in message.deliveries {
            self.on_delivery(peer, delivery, ctx);
        }
        if delivered {
            self.refill(ctx); // the peer has room again
        } else {
            self.flush_requests(ctx);
        }
    }
}

impl Actor for BlockExchange {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        ctx.run_interval(Duration::from_millis(500), |act, ctx| act.tick(ctx));
        ctx.run_interval(discovery::CODEX_REANNOUNCE_INTERVAL, |act, ctx| {
            act.reannounce_codex(ctx)
        });
        ctx.run_interval(Duration::from_secs(1), |act, ctx| {
            act.check_codex_joined(ctx)
        });
    }
}

impl StreamHandler<NetEvent> for BlockExchange {
    fn handle(&mut self, event: NetEvent, ctx: &mut Self::Context) {
        match event {
            NetEvent::Listening(addr) => tracing::info!(%addr, "block exchange listening"),
            NetEvent::AddressesChanged(addrs) => self.readdress_codex(addrs, ctx),
            NetEvent::PeerConnected { peer, addr } => {
                tracing::info!(%peer, %addr, "peer connected");
                self.peers.entry(peer).or_insert_with(Peer::new);
                self.stats.peers = self.peers.len() as u64;
                self.send_wantlist(peer, ctx);
            }
            NetEvent::Identified {
                peer,
                agent_version,
            } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.agent = Some(agent_version);
                }
            }
            NetEvent::PeerDisconnected { peer, relay_limit } => {
                tracing::info!(%peer, "peer disconnected");
                self.drop_peer(peer, relay_limit.as_deref());
                self.stats.peers = self.peers.len() as u64;
                self.refill(ctx);
            }
            NetEvent::Message { peer, message, .. } => self.on_message(peer, message, ctx),
            NetEvent::Violation { peer, violation } => self.on_violation(peer, &violation, ctx),
            NetEvent::SendFailed {
                peer,
                reason: SendFailure::Write(std::io::ErrorKind::TimedOut),
            } => {
                // It does not read what it asked for: it would hold a serving slot again.
                self.stats.slow_peers += 1;
                self.disconnect(peer, "does not read what it asked for", ctx);
            }
            NetEvent::SendFailed { peer, reason } => {
                tracing::debug!(%peer, ?reason, "could not send to peer");
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        // The network stopped: nothing more can be fetched or served.
        tracing::info!("network stopped");
        ctx.stop();
    }
}

impl Handler<Want> for BlockExchange {
    type Result = ();
    fn handle(&mut self, msg: Want, ctx: &mut Self::Context) {
        self.want(msg.addresses, msg.sink, ctx);
    }
}

impl Handler<Unwant> for BlockExchange {
    type Result = ();
    fn handle(&mut self, msg: Unwant, ctx: &mut Self::Context) {
        self.unwant(&msg.addresses, &msg.sink, ctx);
    }
}

impl Handler<Resolve> for BlockExchange {
    type Result = ();
    fn handle(&mut self, msg: Resolve, ctx: &mut Self::Context) {
        self.resolve(msg, ctx);
    }
}

impl Handler<DatasetStored> for BlockExchange {
    type Result = ();
    fn handle(&mut self, msg: DatasetStored, ctx: &mut Self::Context) {
        self.provide(msg.manifest, msg.tree, ctx);
        self.resolve(Resolve::Tree(msg.tree), ctx);
        self.resolve(
            Resolve::Addresses(vec![BlockAddress::Cid(msg.manifest)]),
            ctx,
        );
    }
}

impl Handler<DatasetRemoved> for BlockExchange {
    type Result = ();
    fn handle(&mut self, msg: DatasetRemoved, ctx: &mut Self::Context) {
        self.unprovide(msg.manifest, ctx);
    }
}

impl Handler<Connect> for BlockExchange {
    type Result = actix::ResponseFuture<Result<(), crate::network::net::NetError>>;
    fn handle(&mut self, msg: Connect, _: &mut Self::Context) -> Self::Result {
        let net = self.net.clone();
        Box::pin(async move { net.dial(msg.peer, msg.addrs).await })
    }
}

impl Handler<GetStats> for BlockExchange {
    type Result = MessageResult<GetStats>;
    fn handle(&mut self, _: GetStats, _: &mut Self::Context) -> Self::Result {
        let mut stats = self.stats.clone();
        stats.pending = self.pending.len() as u64;
        stats.refused_connections = self.net.refused_connections();
        stats.per_peer = self.peer_stats();
        MessageResult(stats)
    }
}
