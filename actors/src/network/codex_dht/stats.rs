//! What the service counts: traffic, and every packet it dropped, by reason.

use super::error::{MessageError, PacketError};

/// Counters of what the service saw; a snapshot from [`CodexDht::stats`](super::CodexDht::stats).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DhtStats {
    /// Datagrams received.
    pub packets_in: u64,
    /// Datagrams sent.
    pub packets_out: u64,
    /// Dropped by the per-source rate limit.
    pub rate_limited: u64,
    /// Dropped as malformed: bad framing, bad message encoding or bad records.
    pub malformed: u64,
    /// Dropped because a message type is unknown.
    pub unknown_type: u64,
    /// Dropped as replays (ordinary packets seen before, handshakes without a challenge).
    pub replayed: u64,
    /// Dropped: a WHOAREYOU or response that answers nothing we sent.
    pub unsolicited: u64,
    /// Responses over our bounds.
    pub oversized: u64,
    /// Handshakes that failed: bad signature, key or record, or not decrypting.
    pub handshake_failures: u64,
    /// Handshakes others completed with us.
    pub handshakes_in: u64,
    /// Handshakes we completed (answering a WHOAREYOU).
    pub handshakes_out: u64,
    /// WHOAREYOU challenges sent.
    pub whoareyou_sent: u64,
    /// Requests received, by kind: PING, FINDNODE, FINDNODE_FAST, TALKREQ, GET_PROVIDERS,
    /// ADD_PROVIDER.
    pub pings_in: u64,
    /// FINDNODE requests received.
    pub find_nodes_in: u64,
    /// FINDNODE_FAST requests received.
    pub find_node_fasts_in: u64,
    /// TALKREQ requests received.
    pub talk_reqs_in: u64,
    /// GET_PROVIDERS requests received.
    pub get_providers_in: u64,
    /// ADD_PROVIDER messages received.
    pub add_providers_in: u64,
    /// ADD_PROVIDER records not stored (a bound was hit).
    pub providers_refused: u64,
    /// Requests we sent.
    pub requests_out: u64,
    /// Requests that got no answer in time.
    pub timeouts: u64,
    /// Nodes in the routing table now.
    pub routing_nodes: usize,
    /// Sessions now.
    pub sessions: usize,
    /// Provider records held now.
    pub providers: usize,
}

impl DhtStats {
    /// Counts a dropped packet under its reason.
    pub(crate) fn count_drop(&mut self, e: &PacketError) {
        let s = self;
        match e {
            PacketError::Message(MessageError::UnknownType(_)) => s.unknown_type += 1,
            PacketError::Message(MessageError::Oversized(_)) => s.oversized += 1,
            PacketError::Replay | PacketError::NoChallenge => s.replayed += 1,
            PacketError::UnsolicitedWhoareyou => s.unsolicited += 1,
            PacketError::EphemeralKey
            | PacketError::IdSignature
            | PacketError::MissingRecord
            | PacketError::RecordMismatch
            | PacketError::Record(_)
            | PacketError::Decrypt => s.handshake_failures += 1,
            PacketError::TooShort
            | PacketError::TooLong
            | PacketError::ProtocolId
            | PacketError::Version(_)
            | PacketError::Flag(_)
            | PacketError::AuthData
            | PacketError::MessageLength
            | PacketError::Message(_) => s.malformed += 1,
        }
    }
}
