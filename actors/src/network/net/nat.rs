//! Reachability and relays: what AutoNAT says about this node, the relay reservations a node
//! behind NAT holds, the addresses it announces because of them, and the connections it has,
//! direct or relayed, with their bytes.
//!
//! # How a node behind NAT becomes reachable
//! AutoNAT (v1: rust-libp2p's v2 only tests single addresses and gives no overall verdict) asks
//! connected peers to dial us back at the addresses identify saw us at. A node that none of them
//! can reach is **private**: it reserves a slot on up to
//! [`NatConfig::max_reservations`](crate::network::net::NatConfig::max_reservations) relays
//! among its peers (peers whose identify lists the circuit relay v2 hop protocol), and announces
//! the `/p2p-circuit` addresses the relays give it instead of its public one. A peer that
//! dials such an address gets a relayed connection, and DCUtR tries to punch a hole for a direct
//! one; once a direct connection is up, the relayed ones to that peer are closed so that bulk
//! data goes direct. A **public** node announces the address AutoNAT confirmed and drops its
//! reservations.
//!
//! # Relay limits
//! A relay ends a circuit that reached its byte or time limit (it tells both ends the limits
//! when the circuit opens). A relayed connection that ended at its limit is remembered: the
//! peer is not dialled through a relay again for [`RELAY_LIMIT_BACKOFF`], so a fetch from it
//! fails once its wants run out of retries instead of cycling through circuits, and the reason
//! is logged and shown in `/debug/info`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::core::transport::ListenerId;
use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::{autonat, dcutr, identify, relay, Multiaddr, PeerId, Swarm};

use crate::network::net::dht::addrs;
use crate::network::net::reachability::{
    is_relayed, relay_of, NatInfo, PeerTraffic, Reachability, RelayReservation,
};
use crate::network::net::traffic::{self, Traffic, Unclaimed};
use crate::network::net::transport::Behaviour;

/// A peer whose relayed connection ended at the relay's limit is not dialled through a relay
/// again for this long.
pub const RELAY_LIMIT_BACKOFF: Duration = Duration::from_secs(10 * 60);
/// A relay that refused or dropped our reservation is asked again after this long.
const RESERVATION_RETRY: Duration = Duration::from_secs(30);
/// Relays remembered as candidates for reservations.
const MAX_RELAY_CANDIDATES: usize = 16;
/// Circuit limits waiting for their connection, at most (see [`Nat::tick`]).
const MAX_PENDING_LIMITS: usize = 256;
/// Share of a circuit's announced byte (or time) limit past which its end counts as the limit
/// being reached: we count stream payload, the relay counts Noise and muxer framing too.
const LIMIT_SHARE: f64 = 0.9;

/// An open connection.
struct Conn {
    peer: PeerId,
    /// The relay it goes through, if relayed.
    relay: Option<PeerId>,
    traffic: Arc<Traffic>,
    opened: Instant,
    /// The relay's limits on this circuit, if it announced any.
    limit: Option<CircuitLimit>,
}

/// What a relay said a circuit may carry (rust-libp2p does not export its own type).
#[derive(Debug, Clone, Copy)]
struct CircuitLimit {
    bytes: Option<u64>,
    duration: Option<Duration>,
}

/// A reservation being asked for or held.
struct Reservation {
    relay: PeerId,
    addr: Multiaddr,
    accepted: bool,
}

/// The driver's reachability and relay state.
pub(crate) struct Nat {
    /// Most relays to hold reservations on.
    max_reservations: usize,
    /// Addresses announced whatever AutoNAT says (`--announce-addrs`, `--nat extip:`).
    pinned: Vec<Multiaddr>,
    reachability: Reachability,
    public_address: Option<Multiaddr>,
    relay_service: bool,
    /// Peers that offer relaying, with an address to reach them at.
    relays: HashMap<PeerId, Multiaddr>,
    /// Reservations by the listener that holds them.
    reservations: HashMap<ListenerId, Reservation>,
    /// Relays that refused or dropped a reservation, and when.
    refused: HashMap<PeerId, Instant>,
    conns: HashMap<ConnectionId, Conn>,
    unclaimed: Unclaimed,
    /// Limits a relay announced for a circuit, until the connection they belong to is
    /// established (the event does not name the connection): keyed by the relay for circuits
    /// we dialled, by the dialling peer for circuits we accepted.
    circuit_limits: HashMap<PeerId, CircuitLimit>,
    /// Peers whose relayed connection ended at a relay limit: when, and why.
    limited: HashMap<PeerId, (Instant, String)>,
    hole_punched: u64,
    hole_punch_failed: u64,
    mapped: Vec<Multiaddr>,
}

impl Nat {
    pub(crate) fn new(
        max_reservations: usize,
        pinned: Vec<Multiaddr>,
        relay_service: bool,
        unclaimed: Unclaimed,
    ) -> Self {
        Nat {
            max_reservations,
            pinned,
            reachability: Reachability::Unknown,
            public_address: None,
            relay_service,
            relays: HashMap::new(),
            reservations: HashMap::new(),
            refused: HashMap::new(),
            conns: HashMap::new(),
            unclaimed,
            circuit_limits: HashMap::new(),
            limited: HashMap::new(),
            hole_punched: 0,
            hole_punch_failed: 0,
            mapped: Vec::new(),
        }
    }

    /// Why `peer` must not be dialled through a relay now, if it must not.
    pub(crate) fn relay_backoff(&self, peer: &PeerId, now: Instant) -> Option<&str> {
        self.limited
            .get(peer)
            .filter(|(at, _)| now.duration_since(*at) < RELAY_LIMIT_BACKOFF)
            .map(|(_, why)| why.as_str())
    }

    pub(crate) fn on_established(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        peer: PeerId,
        id: ConnectionId,
        endpoint: &ConnectedPoint,
    ) {
        let traffic = self.unclaimed.claim(peer, &traffic::remote_of(endpoint));
        // A dialled circuit's address names its relay; an accepted one's local address does.
        let relay = match endpoint {
            ConnectedPoint::Dialer { address, .. } => relay_of(address),
            ConnectedPoint::Listener { local_addr, .. } => relay_of(local_addr),
        };
        // Limits come keyed by the relay for circuits we dialled, by the dialling peer for
        // circuits we accepted.
        let limit = match (relay, endpoint) {
            (Some(r), ConnectedPoint::Dialer { .. }) => self.circuit_limits.remove(&r),
            (Some(_), ConnectedPoint::Listener { .. }) => self.circuit_limits.remove(&peer),
            (None, _) => None,
        };
        self.conns.insert(
            id,
            Conn {
                peer,
                relay,
                traffic,
                opened: Instant::now(),
                limit,
            },
        );
        if relay.is_some() {
            if let Some(why) = self.relay_backoff(&peer, Instant::now()) {
                tracing::debug!(%peer, reason = why, "closing a relayed connection: limit reached before");
                swarm.close_connection(id);
            } else {
                self.close_relayed_if_direct(swarm, peer);
            }
        } else {
            self.close_relayed_if_direct(swarm, peer);
        }
    }

    /// Bulk data must not take the relay once a direct connection is up.
    fn close_relayed_if_direct(&self, swarm: &mut Swarm<Behaviour>, peer: PeerId) {
        let mine = || self.conns.iter().filter(|(_, c)| c.peer == peer);
        if !mine().any(|(_, c)| c.relay.is_none()) {
            return;
        }
        for (id, _) in mine().filter(|(_, c)| c.relay.is_some()) {
            tracing::debug!(%peer, "direct connection up: closing the relayed one");
            swarm.close_connection(*id);
        }
    }

    /// A connection closed. Returns the reason when it was a relayed one that the relay ended
    /// at its limit, so the exchange can tell the fetches that lost their holder why.
    pub(crate) fn on_closed(&mut self, id: ConnectionId) -> Option<String> {
        let conn = self.conns.remove(&id)?;
        let (Some(relay), Some(limit)) = (conn.relay, conn.limit) else {
            return None;
        };
        let bytes = conn.traffic.sent() + conn.traffic.received();
        let reason = if let Some(max) = limit
            .bytes
            // 0 means no limit.
            .filter(|max| *max > 0 && bytes as f64 >= *max as f64 * LIMIT_SHARE)
        {
            format!("relay {relay} ended the circuit to {}: its limit of {max} bytes per circuit was reached", conn.peer)
        } else if let Some(max) = limit.duration.filter(|max| {
            !max.is_zero() && conn.opened.elapsed().as_secs_f64() >= max.as_secs_f64() * LIMIT_SHARE
        }) {
            format!(
                "relay {relay} ended the circuit to {}: its limit of {} s per circuit was reached",
                conn.peer,
                max.as_secs()
            )
        } else {
            return None;
        };
        tracing::warn!(peer = %conn.peer, %reason, "relayed connection ended at the relay's limit");
        self.limited
            .insert(conn.peer, (Instant::now(), reason.clone()));
        Some(reason)
    }

    /// A peer identified: one that offers relaying (directly connected) becomes a candidate.
    pub(crate) fn on_identify(&mut self, peer: PeerId, info: &identify::Info) {
        if !info.protocols.contains(&relay::HOP_PROTOCOL_NAME) || is_relayed(&info.observed_addr) {
            return;
        }
        let mut dialable: Vec<Multiaddr> = info
            .listen_addrs
            .iter()
            .filter_map(|a| addrs::tcp_dialable(a, Some(peer)))
            .filter(|a| !addrs::is_loopback(a) && !addrs::is_unspecified(a))
            .collect();
        dialable.sort_by_key(|a| std::cmp::Reverse(addrs::scope_of(a)));
        // Relays stay candidates after a disconnection: asking one for a reservation dials it
        // again (after a router restart, the relay is how peers find us).
        if let Some(addr) = dialable.into_iter().next() {
            if self.relays.len() < MAX_RELAY_CANDIDATES || self.relays.contains_key(&peer) {
                self.relays.insert(peer, addr);
            }
        }
    }

    pub(crate) fn on_autonat(&mut self, swarm: &mut Swarm<Behaviour>, event: autonat::Event) {
        let autonat::Event::StatusChanged { new, .. } = event else {
            return;
        };
        if let Some(old) = self.public_address.take() {
            if !self.pinned.contains(&old) {
                swarm.remove_external_address(&old);
            }
        }
        self.reachability = match new {
            autonat::NatStatus::Public(addr) => {
                // Reachable without help: announce the address peers reached, drop the relays.
                swarm.add_external_address(addr.clone());
                self.public_address = Some(addr);
                for id in self.reservations.keys() {
                    swarm.remove_listener(*id);
                }
                Reachability::Public
            }
            autonat::NatStatus::Private => Reachability::Private,
            autonat::NatStatus::Unknown => Reachability::Unknown,
        };
        tracing::info!(
            reachability = self.reachability.as_str(),
            "reachability changed"
        );
    }

    pub(crate) fn on_relay_client(&mut self, event: relay::client::Event) {
        match event {
            relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal,
                ..
            } => {
                for r in self.reservations.values_mut() {
                    if r.relay == relay_peer_id {
                        r.accepted = true;
                    }
                }
                if !renewal {
                    tracing::info!(relay = %relay_peer_id, "relay reservation accepted");
                }
            }
            relay::client::Event::OutboundCircuitEstablished {
                relay_peer_id,
                limit: Some(limit),
            } => {
                let limit = CircuitLimit {
                    bytes: limit.data_in_bytes(),
                    duration: limit.duration(),
                };
                self.circuit_limits.insert(relay_peer_id, limit);
            }
            relay::client::Event::InboundCircuitEstablished {
                src_peer_id,
                limit: Some(limit),
            } => {
                let limit = CircuitLimit {
                    bytes: limit.data_in_bytes(),
                    duration: limit.duration(),
                };
                tracing::debug!(peer = %src_peer_id, ?limit, "relayed connection from a peer");
                self.circuit_limits.insert(src_peer_id, limit);
            }
            relay::client::Event::InboundCircuitEstablished { .. } => {}
            relay::client::Event::OutboundCircuitEstablished { .. } => {}
        }
    }

    pub(crate) fn on_dcutr(&mut self, swarm: &mut Swarm<Behaviour>, event: dcutr::Event) {
        match event.result {
            Ok(_) => {
                self.hole_punched += 1;
                tracing::info!(peer = %event.remote_peer_id, "hole punched: direct connection");
                self.close_relayed_if_direct(swarm, event.remote_peer_id);
            }
            Err(e) => {
                self.hole_punch_failed += 1;
                tracing::info!(peer = %event.remote_peer_id, error = %e, "hole punch failed: staying relayed");
            }
        }
    }

    pub(crate) fn on_upnp(&mut self, event: libp2p::upnp::Event) {
        match event {
            libp2p::upnp::Event::NewExternalAddr { external_addr, .. } => {
                tracing::info!(address = %external_addr, "the router mapped a port for us (UPnP)");
                self.mapped.push(external_addr);
            }
            libp2p::upnp::Event::ExpiredExternalAddr { external_addr, .. } => {
                self.mapped.retain(|a| *a != external_addr);
            }
            libp2p::upnp::Event::GatewayNotFound => {
                tracing::info!("no UPnP gateway found: no port mapping");
            }
            libp2p::upnp::Event::NonRoutableGateway => {
                tracing::info!("the UPnP gateway is itself behind NAT: no port mapping");
            }
        }
    }

    /// A listener closed: if it held a reservation, the relay is asked again later.
    pub(crate) fn on_listener_closed(&mut self, id: ListenerId) {
        if let Some(r) = self.reservations.remove(&id) {
            // One that held is asked for again at once (its connection ended); one refused
            // after a while.
            if r.accepted {
                tracing::info!(relay = %r.relay, "relay reservation ended: asking again");
            } else {
                tracing::info!(relay = %r.relay, "relay refused the reservation");
                self.refused.insert(r.relay, Instant::now());
            }
        }
    }

    /// Asks relays for reservations while private and short of them.
    pub(crate) fn tick(&mut self, swarm: &mut Swarm<Behaviour>, now: Instant) {
        self.limited
            .retain(|_, (at, _)| now.duration_since(*at) < RELAY_LIMIT_BACKOFF);
        self.refused
            .retain(|_, at| now.duration_since(*at) < RESERVATION_RETRY);
        // Limits of circuits whose connection never came up.
        if self.circuit_limits.len() > MAX_PENDING_LIMITS {
            self.circuit_limits.clear();
        }
        if self.reachability != Reachability::Private {
            return;
        }
        let want = self.max_reservations;
        let candidates: Vec<(PeerId, Multiaddr)> = self
            .relays
            .iter()
            .filter(|(p, _)| !self.refused.contains_key(*p))
            .filter(|(p, _)| !self.reservations.values().any(|r| r.relay == **p))
            .map(|(p, a)| (*p, a.clone()))
            .collect();
        for (relay, addr) in candidates {
            if self.reservations.len() >= want {
                break;
            }
            let circuit = addr.with(Protocol::P2p(relay)).with(Protocol::P2pCircuit);
            match swarm.listen_on(circuit.clone()) {
                Ok(id) => {
                    tracing::info!(%relay, "asking the relay for a reservation");
                    self.reservations.insert(
                        id,
                        Reservation {
                            relay,
                            addr: circuit,
                            accepted: false,
                        },
                    );
                }
                Err(e) => {
                    tracing::debug!(%relay, error = %e, "cannot listen through the relay");
                    self.refused.insert(relay, now);
                }
            }
        }
    }

    pub(crate) fn info(&self) -> NatInfo {
        let mut peers: HashMap<PeerId, PeerTraffic> = HashMap::new();
        for c in self.conns.values() {
            let p = peers.entry(c.peer).or_insert_with(|| PeerTraffic {
                peer: c.peer,
                direct: 0,
                relayed: 0,
                bytes_sent: 0,
                bytes_received: 0,
                relayed_bytes_sent: 0,
                relayed_bytes_received: 0,
            });
            let (sent, received) = (c.traffic.sent(), c.traffic.received());
            p.bytes_sent += sent;
            p.bytes_received += received;
            if c.relay.is_some() {
                p.relayed += 1;
                p.relayed_bytes_sent += sent;
                p.relayed_bytes_received += received;
            } else {
                p.direct += 1;
            }
        }
        let mut peers: Vec<_> = peers.into_values().collect();
        peers.sort_by_key(|p| p.peer);
        NatInfo {
            reachability: self.reachability,
            public_address: self.public_address.clone(),
            relay_service: self.relay_service,
            reservations: self
                .reservations
                .values()
                .map(|r| RelayReservation {
                    relay: r.relay,
                    addr: r.addr.clone(),
                    accepted: r.accepted,
                })
                .collect(),
            peers,
            hole_punches_succeeded: self.hole_punched,
            hole_punches_failed: self.hole_punch_failed,
            relay_limits_reached: self
                .limited
                .iter()
                .map(|(p, (_, why))| (*p, why.clone()))
                .collect(),
            mapped_addresses: self.mapped.clone(),
        }
    }
}
