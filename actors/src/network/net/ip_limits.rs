//! A cap on inbound connections per remote IP address. Identities are free to make, addresses
//! are not: without this, one host with a few dozen identities takes every inbound slot, and
//! honest peers find the node full. Outbound connections are not counted (this node chose
//! them), nor are peers on the bypass list (bootstrap peers, peers the user connected to).

use std::{
    collections::HashMap,
    convert::Infallible,
    net::IpAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    task::{Context, Poll},
};

use libp2p::{
    core::{multiaddr::Protocol, transport::PortUse, ConnectedPoint, Endpoint},
    swarm::{
        behaviour::{ConnectionEstablished, ListenFailure},
        dummy, ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour,
        THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
    },
    Multiaddr, PeerId,
};

/// Why an inbound connection was refused.
#[derive(Debug, thiserror::Error)]
#[error("{0} inbound connections from this address already")]
pub(crate) struct TooManyFromAddress(usize);

/// The behaviour: counts inbound connections, pending and established, per IP.
pub(crate) struct IpLimits {
    max_per_ip: usize,
    /// Inbound connections by IP, and the IP of each.
    per_ip: HashMap<IpAddr, usize>,
    of: HashMap<ConnectionId, IpAddr>,
    /// Inbound connections refused so far (shared with the handle, for metrics).
    refused: Arc<AtomicU64>,
}

/// The IP of a `/ip4/…` or `/ip6/…` address.
pub(crate) fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

impl IpLimits {
    pub(crate) fn new(max_per_ip: usize, refused: Arc<AtomicU64>) -> Self {
        Self {
            max_per_ip: max_per_ip.max(1),
            per_ip: HashMap::new(),
            of: HashMap::new(),
            refused,
        }
    }

    fn forget(&mut self, connection: ConnectionId) {
        if let Some(ip) = self.of.remove(&connection) {
            if let Some(n) = self.per_ip.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_ip.remove(&ip);
                }
            }
        }
    }
}

impl NetworkBehaviour for IpLimits {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection: ConnectionId,
        _: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let Some(ip) = ip_of(remote) else {
            return Ok(());
        };
        let n = self.per_ip.entry(ip).or_default();
        if *n >= self.max_per_ip {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(ConnectionDenied::new(TooManyFromAddress(*n)));
        }
        *n += 1;
        self.of.insert(connection, ip);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. })
            | FromSwarm::ListenFailure(ListenFailure { connection_id, .. }) => {
                self.forget(connection_id);
            }
            // A connection refused by another behaviour after the pending check never gets
            // here; it is forgotten through the closed or failed event above.
            FromSwarm::ConnectionEstablished(ConnectionEstablished {
                connection_id,
                endpoint: ConnectedPoint::Dialer { .. },
                ..
            }) => {
                self.forget(connection_id);
            }
            _ => {}
        }
    }

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
