//! What the network component reports ([`NetEvent`]), and what a peer did wrong.

use libp2p::{Multiaddr, PeerId};

use super::reader;
use crate::format::blockexc::{Message, WireError};

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
    /// The addresses the node announces changed (AutoNAT confirmed or dropped one, a relay
    /// reservation came or went): all of them now.
    AddressesChanged(Vec<Multiaddr>),
    /// The last connection to a peer closed.
    PeerDisconnected {
        /// The peer.
        peer: PeerId,
        /// Set when that last connection was relayed and the relay ended it at its limit: the
        /// relay's limit and what it was.
        relay_limit: Option<String>,
    },
    /// A valid block-exchange message arrived.
    Message {
        /// The sender.
        peer: PeerId,
        /// The message.
        message: Message,
        /// The frame's share of the read budget, held until this event is dropped, so queued
        /// messages count against [`NetConfig::max_inflight_frame_bytes`](crate::network::net::NetConfig::max_inflight_frame_bytes) too.
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
    pub(super) _held: Option<reader::Held>,
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
