//! Which peer addresses the DHT keeps: only ones this node can dial.
//!
//! The transport is plain TCP over IP (no DNS resolver, no QUIC) plus circuit relay v2, so an
//! address is kept only in the form `/ip4|ip6/<ip>/tcp/<port>` or, through a relay,
//! `/ip4|ip6/<ip>/tcp/<port>/p2p/<relay>/p2p-circuit`, with any `/p2p/<peer>` suffix removed (the
//! peer id travels beside it); the scope of a relayed address is its relay's. Everything else a peer may list in identify or a record (UDP
//! discovery ports, circuits, websockets) would only make dials fail later.

use std::net::IpAddr;

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

/// Most addresses kept per peer. A node has a handful of interfaces; a peer listing more is
/// either misconfigured or trying to fill our memory.
pub(crate) const MAX_ADDRS_PER_PEER: usize = 8;

/// `addr` as `/ip4|ip6/<ip>/tcp/<port>`, or as a relayed address
/// `/ip4|ip6/<ip>/tcp/<port>/p2p/<relay>/p2p-circuit`, or `None` when it is anything else. A
/// trailing `/p2p/<id>` is dropped when it names `peer` (or when `peer` is not known yet); one
/// naming another peer makes the address unusable for `peer`.
pub(crate) fn tcp_dialable(addr: &Multiaddr, peer: Option<PeerId>) -> Option<Multiaddr> {
    let mut parts = addr.iter();
    let ip = match parts.next()? {
        p @ (Protocol::Ip4(_) | Protocol::Ip6(_)) => p,
        _ => return None,
    };
    let Protocol::Tcp(port) = parts.next()? else {
        return None;
    };
    let direct = Multiaddr::empty().with(ip).with(Protocol::Tcp(port));
    let names_peer = |id: PeerId| peer.is_none_or(|p| p == id);
    let Some(next) = parts.next() else {
        return Some(direct);
    };
    let Protocol::P2p(id) = next else {
        return None;
    };
    match parts.next() {
        None if names_peer(id) => Some(direct),
        // Through relay `id` (a peer is never its own relay), to the peer named after it.
        Some(Protocol::P2pCircuit) if peer != Some(id) => {
            match parts.next() {
                None => {}
                Some(Protocol::P2p(dst)) if names_peer(dst) => {}
                Some(_) => return None,
            }
            if parts.next().is_some() {
                return None;
            }
            Some(direct.with(Protocol::P2p(id)).with(Protocol::P2pCircuit))
        }
        _ => None,
    }
}

/// The peer id at the end of `addr`, if it ends in `/p2p/<id>`.
pub(crate) fn trailing_peer(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last()? {
        Protocol::P2p(id) => Some(id),
        _ => None,
    }
}

/// How far an address reaches: this host, a private network, or the internet. Ordered: a
/// node dials addresses of its own scope or wider, so a stranger cannot make a node on the
/// internet dial into its owner's LAN or its own loopback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Scope {
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// RFC 1918, link-local, shared (100.64/10), IPv6 unique-local and link-local.
    Private,
    /// Everything else.
    Public,
}

/// The scope of `addr`'s IP (public when it has none).
pub(crate) fn scope_of(addr: &Multiaddr) -> Scope {
    match addr.iter().next() {
        Some(Protocol::Ip4(ip)) if ip.is_loopback() => Scope::Loopback,
        Some(Protocol::Ip4(ip))
            if ip.is_private()
                || ip.is_link_local()
                || (ip.octets()[0] == 100 && (ip.octets()[1] & 0xc0) == 64) =>
        {
            Scope::Private
        }
        Some(Protocol::Ip6(ip)) if ip.is_loopback() => Scope::Loopback,
        Some(Protocol::Ip6(ip))
            if (ip.segments()[0] & 0xfe00) == 0xfc00 || (ip.segments()[0] & 0xffc0) == 0xfe80 =>
        {
            Scope::Private
        }
        _ => Scope::Public,
    }
}

/// True for addresses on the loopback interface.
pub(crate) fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}

/// True for `0.0.0.0` / `::`, which name no peer.
pub(crate) fn is_unspecified(addr: &Multiaddr) -> bool {
    addr.ip_addr().is_some_and(|ip: IpAddr| ip.is_unspecified())
}

/// The addresses a peer told us about, cut down to the ones worth dialling: dialable TCP, not
/// unspecified, of scope `min_scope` or wider, at most [`MAX_ADDRS_PER_PEER`], no duplicates.
/// Callers pass [`Scope::Loopback`] for addresses the user gave, and otherwise the narrowest
/// scope of the node's own addresses: from a remote peer, loopback or private addresses would
/// make the node dial itself or its owner's network.
pub(crate) fn usable(
    addrs: impl IntoIterator<Item = Multiaddr>,
    peer: PeerId,
    min_scope: Scope,
) -> Vec<Multiaddr> {
    let mut out: Vec<Multiaddr> = Vec::new();
    for addr in addrs {
        let Some(a) = tcp_dialable(&addr, Some(peer)) else {
            continue;
        };
        if is_unspecified(&a) || scope_of(&a) < min_scope || out.contains(&a) {
            continue;
        }
        out.push(a);
        if out.len() == MAX_ADDRS_PER_PEER {
            break;
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
    fn only_ip_tcp_addresses_are_dialable() {
        let peer = PeerId::random();
        let plain = ma("/ip4/10.0.0.1/tcp/8070");
        assert_eq!(tcp_dialable(&plain, None), Some(plain.clone()));
        let with_id = ma(&format!("/ip4/10.0.0.1/tcp/8070/p2p/{peer}"));
        assert_eq!(tcp_dialable(&with_id, Some(peer)), Some(plain.clone()));
        assert_eq!(tcp_dialable(&with_id, Some(PeerId::random())), None);
        assert!(tcp_dialable(&ma("/ip6/::1/tcp/1"), None).is_some());
        for bad in [
            "/ip4/10.0.0.1/udp/8090",
            "/dns4/example.com/tcp/1",
            "/ip4/10.0.0.1/tcp/1/ws",
            "/ip4/10.0.0.1/udp/1/quic-v1",
        ] {
            assert_eq!(tcp_dialable(&ma(bad), None), None, "{bad}");
        }
        let relay = PeerId::random();
        let circuit = ma(&format!(
            "/ip4/198.18.0.11/tcp/8070/p2p/{relay}/p2p-circuit"
        ));
        let to_peer = ma(&format!("{circuit}/p2p/{peer}"));
        assert_eq!(tcp_dialable(&to_peer, Some(peer)), Some(circuit.clone()));
        assert_eq!(tcp_dialable(&circuit, Some(peer)), Some(circuit.clone()));
        assert_eq!(tcp_dialable(&to_peer, Some(PeerId::random())), None);
        // A peer is not its own relay.
        assert_eq!(tcp_dialable(&circuit, Some(relay)), None);
        assert_eq!(scope_of(&circuit), Scope::Public);
        assert_eq!(trailing_peer(&with_id), Some(peer));
        assert_eq!(trailing_peer(&plain), None);
    }

    #[test]
    fn usable_drops_loopback_from_remote_peers_and_caps_the_list() {
        let peer = PeerId::random();
        let listed = vec![
            ma("/ip4/127.0.0.1/tcp/1"),
            ma("/ip4/0.0.0.0/tcp/1"),
            ma("/ip4/10.0.0.1/tcp/1"),
            ma("/ip4/10.0.0.1/tcp/1"),
            ma("/ip4/10.0.0.1/udp/1"),
            ma("/ip4/8.8.4.4/tcp/1"),
        ];
        assert_eq!(
            usable(listed.clone(), peer, Scope::Private),
            vec![ma("/ip4/10.0.0.1/tcp/1"), ma("/ip4/8.8.4.4/tcp/1")]
        );
        assert_eq!(
            usable(listed.clone(), peer, Scope::Loopback),
            vec![
                ma("/ip4/127.0.0.1/tcp/1"),
                ma("/ip4/10.0.0.1/tcp/1"),
                ma("/ip4/8.8.4.4/tcp/1")
            ]
        );
        // A node on the internet dials no stranger's private or loopback address.
        assert_eq!(
            usable(listed, peer, Scope::Public),
            vec![ma("/ip4/8.8.4.4/tcp/1")]
        );
        let many = (0..20u16).map(|p| ma(&format!("/ip4/10.0.0.1/tcp/{p}")));
        assert_eq!(usable(many, peer, Scope::Private).len(), MAX_ADDRS_PER_PEER);
        for (a, scope) in [
            ("/ip4/192.168.1.2/tcp/1", Scope::Private),
            ("/ip4/100.64.0.1/tcp/1", Scope::Private),
            ("/ip4/169.254.0.1/tcp/1", Scope::Private),
            ("/ip6/fd00::1/tcp/1", Scope::Private),
            ("/ip6/::1/tcp/1", Scope::Loopback),
            ("/ip6/2001:db8::1/tcp/1", Scope::Public),
        ] {
            assert_eq!(scope_of(&ma(a)), scope, "{a}");
        }
    }
}
