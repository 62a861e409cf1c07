//! The errors of the network component's API.

use libp2p::PeerId;

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
    /// We already provide as many keys as [`DhtConfig::max_provided_keys`](crate::network::net::DhtConfig::max_provided_keys) allows.
    #[error("already providing the maximum of {0} keys")]
    TooManyProvidedKeys(usize),
    /// The network task has stopped.
    #[error("the network has stopped")]
    Stopped,
}
