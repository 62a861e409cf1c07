//! Errors of Codex's DHT, one enum per layer so that callers branch on what they can act on.
//!
//! Decoding errors ([`PacketError`], [`MessageError`], [`RecordError`]) are what the service
//! counts when it drops a datagram; [`DhtError`] is what the handle's async methods return.

use std::io;

/// Why a datagram is not a well-formed discv5 packet, or could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Shorter than the smallest packet (a WHOAREYOU, 63 bytes).
    #[error("packet too short")]
    TooShort,
    /// Longer than the receive bound.
    #[error("packet too long")]
    TooLong,
    /// The unmasked header does not start with "discv5": not for us, or masked for another id.
    #[error("not a discv5 packet (protocol id)")]
    ProtocolId,
    /// A protocol version other than 1.
    #[error("unsupported protocol version {0}")]
    Version(u16),
    /// A flag other than 0 (message), 1 (WHOAREYOU) or 2 (handshake).
    #[error("unknown packet flag {0}")]
    Flag(u8),
    /// The header's authdata size does not fit the packet or the flag.
    #[error("bad authdata for this packet kind")]
    AuthData,
    /// A WHOAREYOU with bytes after its header, or a message shorter than a GCM tag.
    #[error("bad message length for this packet kind")]
    MessageLength,
    /// AES-GCM authentication failed: wrong keys, or a forged or corrupted packet.
    #[error("message does not decrypt")]
    Decrypt,
    /// An ordinary message whose nonce this session already accepted: a replayed packet.
    #[error("replayed packet")]
    Replay,
    /// A WHOAREYOU that answers no packet we sent (timed out, unsolicited or replayed).
    #[error("WHOAREYOU without a request")]
    UnsolicitedWhoareyou,
    /// A handshake that answers no WHOAREYOU we sent (timed out, unsolicited or replayed).
    #[error("handshake without a pending challenge")]
    NoChallenge,
    /// The handshake's ephemeral key is not a libp2p secp256k1 public key.
    #[error("bad ephemeral key")]
    EphemeralKey,
    /// The handshake's id-signature does not verify.
    #[error("bad id-signature")]
    IdSignature,
    /// A handshake from a node whose key we do not know and that sent no record.
    #[error("handshake without a record from an unknown node")]
    MissingRecord,
    /// The record in a handshake belongs to another node id.
    #[error("handshake record does not match the source id")]
    RecordMismatch,
    /// The record in a handshake is not a valid SPR.
    #[error("bad record in handshake: {0}")]
    Record(#[from] RecordError),
    /// The decrypted message is malformed.
    #[error("bad message: {0}")]
    Message(#[from] MessageError),
}

/// Why a decrypted message body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// No bytes at all.
    #[error("empty message")]
    Empty,
    /// A message type byte this node does not know (or the topic messages, never finished).
    #[error("unknown message type {0:#04x}")]
    UnknownType(u8),
    /// Missing or longer than 8 bytes.
    #[error("bad request id")]
    RequestId,
    /// The protobuf itself is malformed.
    #[error("protobuf: {0}")]
    Protobuf(&'static str),
    /// A field Codex requires is missing or has the wrong size.
    #[error("missing or malformed field: {0}")]
    Field(&'static str),
    /// More records, distances or bytes than this node accepts.
    #[error("oversized: {0}")]
    Oversized(&'static str),
    /// A record inside the message does not verify.
    #[error("bad record: {0}")]
    Record(#[from] RecordError),
}

/// Why a signed peer record was refused or could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// No `spr:` prefix, too long, or not base64url.
    #[error("not SPR text")]
    Text,
    /// Longer than the record bound.
    #[error("record too large")]
    TooLarge,
    /// The bytes are not a signed envelope.
    #[error("not a signed envelope")]
    Envelope,
    /// Wrong domain or payload type, a bad signature, or a payload that is not a peer record.
    #[error("not a valid signed peer record: {0}")]
    Invalid(String),
    /// Signed by a key other than secp256k1, which Codex cannot use for discv5.
    #[error("record key is not secp256k1")]
    KeyType,
    /// Our key could not sign.
    #[error("signing failed: {0}")]
    Signing(String),
}

/// What the service's operations return.
#[derive(Debug, thiserror::Error)]
pub enum DhtError {
    /// The UDP socket could not be bound or read.
    #[error("UDP socket: {0}")]
    Io(#[from] io::Error),
    /// The service task has stopped (shut down, or its socket failed).
    #[error("the DHT service is not running")]
    Unavailable,
    /// The peer did not answer within the request timeout.
    #[error("request timed out")]
    Timeout,
    /// The peer answered with the wrong message type.
    #[error("unexpected response")]
    UnexpectedResponse,
    /// A record given to us (bootstrap, our own) is unusable.
    #[error("record: {0}")]
    Record(#[from] RecordError),
    /// The record has no UDP address to send to.
    #[error("record has no IPv4 UDP address")]
    NoUdpAddress,
    /// The answer is over our bounds (too many NODES messages or records) and was dropped.
    #[error("oversized response")]
    Oversized,
    /// Too many requests in flight: the caller should slow down.
    #[error("too many requests in flight")]
    Busy,
    /// Configuration refused at start.
    #[error("bad configuration: {0}")]
    Config(&'static str),
}
