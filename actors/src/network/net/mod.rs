//! The libp2p side of block exchange: a network component that speaks `/codex/blockexc/1.0.0`
//! with Codex nodes and with other nodes like this one.
//!
//! # Stack
//! TCP (nodelay) + Noise + a muxer choice of yamux or mplex (Codex speaks only `/mplex/6.7.0`),
//! a secp256k1 identity kept on disk ([`identity`]), identify without a signed peer record (nim
//! drops connections whose record it cannot verify, and rust-libp2p's identify would sign one
//! with a legacy domain), a connection limit, and raw streams for block exchange.
//!
//! # Behind NAT
//! Circuit relay v2 (client always, server with [`NatConfig::relay_service`]), DCUtR hole
//! punching, AutoNAT and UPnP ([`NatConfig::mode`]): a private node reserves slots on relays
//! among its peers and announces its relayed addresses; see [`nat`] for the whole story and
//! [`NetHandle::nat_info`] for what it found. Every connection's bytes are counted
//! (stream payload, per connection).
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

mod config;
pub mod dht;
mod dials;
mod driver;
mod error;
mod events;
mod frame_buffers;
pub mod framing;
mod handle;
pub mod identity;
mod inbound;
mod ip_limits;
mod muxer;
pub mod nat;
mod peer;
mod reachability;
mod reader;
pub mod spr;
mod traffic;
mod transport;

use libp2p::{Multiaddr, PeerId, StreamProtocol};

pub use config::{NatConfig, NatMode, NetConfig, RelayLimits, DEFAULT_MAX_FRAME_BYTES};
pub use dht::{BootstrapError, BootstrapPeer, DhtConfig, DhtStats, RoutingNode, RoutingTable};
pub use driver::Net;
pub use error::NetError;
pub use events::{FrameBudget, NetEvent, SendFailure, Violation};
pub use framing::FrameError;
pub(crate) use handle::Command;
pub use handle::NetHandle;
pub use nat::RELAY_LIMIT_BACKOFF;
pub use reachability::{NatInfo, PeerTraffic, Reachability, RelayReservation};

/// Providers of a key, as [`NetHandle::find_providers`] returns them: each peer with the
/// addresses known for it (possibly none).
pub type Providers = Vec<(PeerId, Vec<Multiaddr>)>;

/// The block-exchange protocol id, as Codex registers it.
pub const BLOCKEXC_PROTOCOL: StreamProtocol = StreamProtocol::new("/codex/blockexc/1.0.0");
