//! What the network reports about reachability ([`NatInfo`]), and the address helpers for
//! relayed addresses.

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

/// Whether peers can reach this node, as AutoNAT last found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reachability {
    /// Not probed yet, or no peer could probe.
    Unknown,
    /// A peer dialled us back at an address of ours.
    Public,
    /// Peers could not dial us back: behind NAT or a firewall.
    Private,
}

impl Reachability {
    /// `"unknown"`, `"public"` or `"private"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reachability::Unknown => "unknown",
            Reachability::Public => "public",
            Reachability::Private => "private",
        }
    }
}

/// A reservation on a relay, asked for or held.
#[derive(Debug, Clone)]
pub struct RelayReservation {
    /// The relay.
    pub relay: PeerId,
    /// The `/p2p-circuit` address peers reach us at through it.
    pub addr: Multiaddr,
    /// The relay accepted it (else it is still being asked for).
    pub accepted: bool,
}

/// One connected peer: how it is connected and what went each way.
#[derive(Debug, Clone)]
pub struct PeerTraffic {
    /// The peer.
    pub peer: PeerId,
    /// Direct connections open now.
    pub direct: usize,
    /// Relayed connections open now.
    pub relayed: usize,
    /// Bytes sent over its open connections (stream payload).
    pub bytes_sent: u64,
    /// Bytes received over its open connections.
    pub bytes_received: u64,
    /// Of those, sent through a relay.
    pub relayed_bytes_sent: u64,
    /// Of those, received through a relay.
    pub relayed_bytes_received: u64,
}

/// Everything `/debug/info` shows about reachability and relays.
#[derive(Debug, Clone)]
pub struct NatInfo {
    /// AutoNAT's verdict.
    pub reachability: Reachability,
    /// The address AutoNAT confirmed, when public.
    pub public_address: Option<Multiaddr>,
    /// This node relays for others (`--relay-service`).
    pub relay_service: bool,
    /// Our reservations on relays.
    pub reservations: Vec<RelayReservation>,
    /// Connected peers.
    pub peers: Vec<PeerTraffic>,
    /// Hole punches (DCUtR) that gave a direct connection.
    pub hole_punches_succeeded: u64,
    /// Hole punches that failed.
    pub hole_punches_failed: u64,
    /// Peers whose relayed connection ended at a relay limit, with the reason, while their
    /// back-off lasts.
    pub relay_limits_reached: Vec<(PeerId, String)>,
    /// Port mappings the router made for us (UPnP).
    pub mapped_addresses: Vec<Multiaddr>,
}

/// The relay of a `/p2p-circuit` address (the peer id just before `/p2p-circuit`).
pub(crate) fn relay_of(addr: &Multiaddr) -> Option<PeerId> {
    let mut last = None;
    for p in addr.iter() {
        match p {
            Protocol::P2p(id) => last = Some(id),
            Protocol::P2pCircuit => return last,
            _ => {}
        }
    }
    None
}

/// True for an address through a relay.
pub(crate) fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// The TCP ports of `bound` at `ip` (`--nat extip:IP`: the router forwards them by hand).
pub(crate) fn with_ip(ip: std::net::IpAddr, bound: &[Multiaddr]) -> Vec<Multiaddr> {
    let mut out: Vec<Multiaddr> = Vec::new();
    for addr in bound {
        let Some(port) = addr.iter().find_map(|p| match p {
            Protocol::Tcp(port) => Some(port),
            _ => None,
        }) else {
            continue;
        };
        let a = Multiaddr::from(ip).with(Protocol::Tcp(port));
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ma(s: &str) -> Multiaddr {
        s.parse().expect("multiaddr")
    }

    #[test]
    fn a_circuit_names_its_relay() {
        let (relay, peer) = (PeerId::random(), PeerId::random());
        let circuit = ma(&format!(
            "/ip4/198.18.0.11/tcp/8070/p2p/{relay}/p2p-circuit/p2p/{peer}"
        ));
        assert_eq!(relay_of(&circuit), Some(relay));
        assert!(is_relayed(&circuit));
        let direct = ma(&format!("/ip4/198.18.0.11/tcp/8070/p2p/{relay}"));
        assert_eq!(relay_of(&direct), None);
        assert!(!is_relayed(&direct));
    }

    #[test]
    fn extip_takes_the_listen_ports() {
        let bound = [
            ma("/ip4/127.0.0.1/tcp/8070"),
            ma("/ip4/192.168.1.2/tcp/8070"),
            ma("/ip4/192.168.1.2/tcp/9000"),
        ];
        let ip = "203.0.113.7".parse().expect("ip");
        assert_eq!(
            with_ip(ip, &bound),
            vec![
                ma("/ip4/203.0.113.7/tcp/8070"),
                ma("/ip4/203.0.113.7/tcp/9000")
            ]
        );
    }
}
