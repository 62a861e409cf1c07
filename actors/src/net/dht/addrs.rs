//! Which peer addresses the DHT keeps: only ones this node can dial.
//!
//! The transport is plain TCP over IP (no DNS resolver, no QUIC, no relay), so an address is
//! kept only in the form `/ip4|ip6/<ip>/tcp/<port>`, with any `/p2p/<peer>` suffix removed (the
//! peer id travels beside it). Everything else a peer may list in identify or a record (UDP
//! discovery ports, circuits, websockets) would only make dials fail later.

use std::net::IpAddr;

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

/// Most addresses kept per peer. A node has a handful of interfaces; a peer listing more is
/// either misconfigured or trying to fill our memory.
pub(crate) const MAX_ADDRS_PER_PEER: usize = 8;

/// `addr` as `/ip4|ip6/<ip>/tcp/<port>`, or `None` when it is anything else. A trailing
/// `/p2p/<id>` is dropped when it names `peer` (or when `peer` is not known yet); one naming
/// another peer makes the address unusable for `peer`.
pub(crate) fn tcp_dialable(addr: &Multiaddr, peer: Option<PeerId>) -> Option<Multiaddr> {
    let mut parts = addr.iter();
    let ip = match parts.next()? {
        p @ (Protocol::Ip4(_) | Protocol::Ip6(_)) => p,
        _ => return None,
    };
    let Protocol::Tcp(port) = parts.next()? else {
        return None;
    };
    match parts.next() {
        None => {}
        Some(Protocol::P2p(id)) if peer.is_none_or(|p| p == id) => {}
        Some(_) => return None,
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Multiaddr::empty().with(ip).with(Protocol::Tcp(port)))
}

/// The peer id at the end of `addr`, if it ends in `/p2p/<id>`.
pub(crate) fn trailing_peer(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last()? {
        Protocol::P2p(id) => Some(id),
        _ => None,
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
fn is_unspecified(addr: &Multiaddr) -> bool {
    addr.ip_addr().is_some_and(|ip: IpAddr| ip.is_unspecified())
}

/// The addresses a peer told us about, cut down to the ones worth dialling: dialable TCP, not
/// unspecified, at most [`MAX_ADDRS_PER_PEER`], no duplicates. Loopback addresses are kept only
/// when `same_host` (the peer reached us over loopback): from a remote peer they would make us
/// dial ourselves.
pub(crate) fn usable(
    addrs: impl IntoIterator<Item = Multiaddr>,
    peer: PeerId,
    same_host: bool,
) -> Vec<Multiaddr> {
    let mut out: Vec<Multiaddr> = Vec::new();
    for addr in addrs {
        let Some(a) = tcp_dialable(&addr, Some(peer)) else {
            continue;
        };
        if is_unspecified(&a) || (is_loopback(&a) && !same_host) || out.contains(&a) {
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
        ];
        assert_eq!(
            usable(listed.clone(), peer, false),
            vec![ma("/ip4/10.0.0.1/tcp/1")]
        );
        assert_eq!(
            usable(listed, peer, true),
            vec![ma("/ip4/127.0.0.1/tcp/1"), ma("/ip4/10.0.0.1/tcp/1")]
        );
        let many = (0..20u16).map(|p| ma(&format!("/ip4/10.0.0.1/tcp/{p}")));
        assert_eq!(usable(many, peer, false).len(), MAX_ADDRS_PER_PEER);
    }
}
