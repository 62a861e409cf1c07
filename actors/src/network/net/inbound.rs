//! Inbound block-exchange streams, handed to the acceptor without loss.
//!
//! libp2p-stream's `accept` hands streams over a channel with room for one: a second stream
//! arriving before the acceptor took the first is dropped (reset), an honest peer's included,
//! whenever the acceptor's task is a moment late. So inbound `/codex/blockexc/1.0.0` streams
//! come through this behaviour instead, over a channel with room for a burst
//! ([`QUEUE`]); the acceptor then sheds by policy (streams per peer). Outbound streams still
//! open through libp2p-stream's `Control`.

use std::{
    convert::Infallible,
    task::{Context, Poll},
};

use libp2p::{
    core::{transport::PortUse, upgrade::DeniedUpgrade, upgrade::ReadyUpgrade, Endpoint},
    swarm::{
        handler::{ConnectionEvent, FullyNegotiatedInbound},
        ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
        NetworkBehaviour, Stream, SubstreamProtocol, THandler, THandlerInEvent, THandlerOutEvent,
        ToSwarm,
    },
    Multiaddr, PeerId,
};
use tokio::sync::mpsc;

use crate::network::net::BLOCKEXC_PROTOCOL;

/// Inbound streams waiting for the acceptor, over all peers. Beyond it (the acceptor stalled
/// while hundreds arrived) a stream is refused and counted.
pub(crate) const QUEUE: usize = 256;

/// A new inbound stream and the peer it comes from.
pub(crate) type NewStream = (PeerId, Stream);

/// The behaviour: gives every connection a handler that listens for block exchange.
pub(crate) struct Inbound {
    tx: mpsc::Sender<NewStream>,
}

impl Inbound {
    /// The behaviour and the receiving end of its streams.
    pub(crate) fn new() -> (Self, mpsc::Receiver<NewStream>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Self { tx }, rx)
    }

    fn handler(&self, peer: PeerId) -> Handler {
        Handler {
            peer,
            tx: self.tx.clone(),
        }
    }
}

impl NetworkBehaviour for Inbound {
    type ConnectionHandler = Handler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer))
    }

    fn on_swarm_event(&mut self, _: FromSwarm) {}

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        e: THandlerOutEvent<Self>,
    ) {
        match e {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

/// One connection's listener for block-exchange streams.
pub(crate) struct Handler {
    peer: PeerId,
    tx: mpsc::Sender<NewStream>,
}

impl ConnectionHandler for Handler {
    type FromBehaviour = Infallible;
    type ToBehaviour = Infallible;
    type InboundProtocol = ReadyUpgrade<libp2p::StreamProtocol>;
    type OutboundProtocol = DeniedUpgrade;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol> {
        SubstreamProtocol::new(ReadyUpgrade::new(BLOCKEXC_PROTOCOL), ())
    }

    fn poll(
        &mut self,
        _: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, (), Self::ToBehaviour>> {
        Poll::Pending
    }

    fn on_behaviour_event(&mut self, e: Self::FromBehaviour) {
        match e {}
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<Self::InboundProtocol, Self::OutboundProtocol>,
    ) {
        if let ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
            protocol: stream,
            ..
        }) = event
        {
            if self.tx.try_send((self.peer, stream)).is_err() {
                // Dropping the stream resets it; the peer opens another when it next writes.
                tracing::warn!(peer = %self.peer, "{QUEUE} inbound streams wait already; one refused");
            }
        }
    }
}
