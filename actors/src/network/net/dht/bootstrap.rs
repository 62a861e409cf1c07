//! Bootstrap peers as an operator writes them: a multiaddr ending in `/p2p/<peerId>`, or a
//! Codex `spr:` text that carries a TCP address.
//!
//! Codex's own bootstrap lists hold the SPR of its discv5 DHT, whose only address is the UDP
//! discovery port (`/ip4/…/udp/8090`). Kademlia cannot use it, and dialling the port over TCP
//! gets nothing, so such a record is refused here with an error that says so instead of
//! failing later as an unreachable peer. The node hands such records to Codex's DHT before
//! they get here (`codex_join`), when it runs one.

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

use crate::network::net::dht::addrs;
use crate::network::net::spr::{self, SprError};

/// A peer to join the network through, parsed from its text form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapPeer {
    /// The peer.
    pub peer: PeerId,
    /// Its TCP addresses, without the `/p2p/` suffix.
    pub addrs: Vec<Multiaddr>,
}

/// Why a bootstrap text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootstrapError {
    /// Neither a multiaddr nor `spr:` text.
    #[error("{0:?} is neither a multiaddr nor an spr: record")]
    Unreadable(String),
    /// A multiaddr without the peer id at its end.
    #[error("{0} does not end in /p2p/<peerId>; the peer id is needed to authenticate the peer")]
    NoPeerId(Multiaddr),
    /// A multiaddr this node cannot dial (not `/ip4|ip6/…/tcp/…`).
    #[error("{0} is not a TCP address this node can dial (expected /ip4|ip6/<ip>/tcp/<port>/p2p/<peerId>)")]
    NotTcp(Multiaddr),
    /// The SPR is malformed or its signature does not verify.
    #[error("bad spr: record: {0}")]
    Spr(#[from] SprError),
    /// The SPR lists only UDP addresses: a Codex discv5 DHT record.
    #[error(
        "the spr: record of {peer} only carries UDP addresses ({addrs}): that is a Codex discv5 \
         discovery address, which this node cannot use; give the peer's TCP address instead, \
         as /ip4/<ip>/tcp/<port>/p2p/{peer}"
    )]
    OnlyUdp {
        /// The record's peer.
        peer: PeerId,
        /// Its addresses, joined by spaces.
        addrs: String,
    },
    /// The SPR lists no address this node can dial.
    #[error("the spr: record of {0} carries no TCP address this node can dial")]
    NoTcpAddress(PeerId),
}

impl BootstrapPeer {
    /// Parses `text`: `/ip4/…/tcp/…/p2p/<peerId>` or `spr:…`.
    ///
    /// # Errors
    /// [`BootstrapError`] says what is wrong.
    pub fn parse(text: &str) -> Result<Self, BootstrapError> {
        let text = text.trim();
        if text.starts_with(spr::PREFIX) {
            return Self::from_spr(text);
        }
        let addr: Multiaddr = text
            .parse()
            .map_err(|_| BootstrapError::Unreadable(text.chars().take(120).collect()))?;
        let peer =
            addrs::trailing_peer(&addr).ok_or_else(|| BootstrapError::NoPeerId(addr.clone()))?;
        let tcp = addrs::tcp_dialable(&addr, Some(peer)).ok_or(BootstrapError::NotTcp(addr))?;
        Ok(BootstrapPeer {
            peer,
            addrs: vec![tcp],
        })
    }

    fn from_spr(text: &str) -> Result<Self, BootstrapError> {
        let (peer, all) = spr::decode(text)?;
        // The user gave this record: any scope is theirs to choose.
        let tcp = addrs::usable(all.iter().cloned(), peer, addrs::Scope::Loopback);
        if !tcp.is_empty() {
            return Ok(BootstrapPeer { peer, addrs: tcp });
        }
        let udp_only = !all.is_empty()
            && all
                .iter()
                .all(|a| a.iter().any(|p| matches!(p, Protocol::Udp(_))));
        if udp_only {
            let addrs = all
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ");
            return Err(BootstrapError::OnlyUdp { peer, addrs });
        }
        Err(BootstrapError::NoTcpAddress(peer))
    }

    /// Parses every text, stopping at the first bad one.
    ///
    /// # Errors
    /// The first text's error, prefixed with the text's position.
    pub fn parse_all(texts: &[String]) -> Result<Vec<Self>, String> {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| Self::parse(t).map_err(|e| format!("bootstrap peer #{}: {e}", i + 1)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::identity::Keypair;

    #[test]
    fn a_multiaddr_needs_tcp_and_a_peer_id() {
        let peer = PeerId::random();
        let text = format!("/ip4/127.0.0.1/tcp/8070/p2p/{peer}");
        let parsed = BootstrapPeer::parse(&format!("  {text}\n")).expect("parses");
        assert_eq!(parsed.peer, peer);
        assert_eq!(
            parsed.addrs,
            vec!["/ip4/127.0.0.1/tcp/8070".parse().expect("addr")]
        );
        assert!(matches!(
            BootstrapPeer::parse("/ip4/127.0.0.1/tcp/8070"),
            Err(BootstrapError::NoPeerId(_))
        ));
        assert!(matches!(
            BootstrapPeer::parse(&format!("/ip4/127.0.0.1/udp/8090/p2p/{peer}")),
            Err(BootstrapError::NotTcp(_))
        ));
        assert!(matches!(
            BootstrapPeer::parse("hello"),
            Err(BootstrapError::Unreadable(_))
        ));
    }

    #[test]
    fn an_spr_with_tcp_is_accepted_and_a_discv5_one_refused() {
        let key = Keypair::generate_secp256k1();
        let peer = key.public().to_peer_id();
        let tcp: Multiaddr = "/ip4/10.1.2.3/tcp/8070".parse().expect("addr");
        let udp: Multiaddr = "/ip4/10.1.2.3/udp/8090".parse().expect("addr");
        let text = spr::encode(&key, vec![udp.clone(), tcp.clone()]).expect("signs");
        assert_eq!(
            BootstrapPeer::parse(&text),
            Ok(BootstrapPeer {
                peer,
                addrs: vec![tcp]
            })
        );
        let text = spr::encode(&key, vec![udp]).expect("signs");
        let err = BootstrapPeer::parse(&text).expect_err("udp only");
        assert!(matches!(err, BootstrapError::OnlyUdp { .. }), "{err:?}");
        assert!(err.to_string().contains("discv5"), "{err}");
        let empty = spr::encode(&key, vec![]).expect("signs");
        assert_eq!(
            BootstrapPeer::parse(&empty),
            Err(BootstrapError::NoTcpAddress(peer))
        );
        assert!(matches!(
            BootstrapPeer::parse("spr:AAAA"),
            Err(BootstrapError::Spr(_))
        ));
    }

    #[test]
    fn parse_all_names_the_bad_entry() {
        let peer = PeerId::random();
        let texts = vec![
            format!("/ip4/127.0.0.1/tcp/1/p2p/{peer}"),
            "junk".to_string(),
        ];
        let err = BootstrapPeer::parse_all(&texts).expect_err("second is bad");
        assert!(err.starts_with("bootstrap peer #2:"), "{err}");
    }
}
