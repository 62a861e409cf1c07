//! Codex's DHT beside our Kademlia (issue 19): which bootstrap records go to which DHT, starting
//! [`CodexDht`] with the node's identity, and its upkeep.
//!
//! A Codex network is held together by its discv5 DHT over UDP: a Codex node joins with
//! `--bootstrap-node spr:…`, a record whose only address is the UDP discovery port. Such a record
//! bootstraps [`CodexDht`]; a record or multiaddr with a TCP address bootstraps our Kademlia as
//! before, and a record with both does both. The exchange announces and looks up providers in
//! both DHTs (`exchange/discovery.rs`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

use crate::network::codex_dht::{CodexDht, DhtConfig, DhtError, RoutingEntry, Spr};

/// How often the routing table gets its upkeep (Codex looks up a random id every 5 minutes).
pub(crate) const REFRESH_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// How often a bootstrap is retried while the routing table is empty: a bootstrap node that
/// starts after us, or a lost first packet, must not leave us out of the network for long.
const REJOIN_INTERVAL: Duration = Duration::from_secs(5);
/// Lookups of random ids right after joining. The join's lookup of our own id asks each node
/// for three log distances only, so in a small network it can miss most nodes; these meet the
/// rest, and so the uploaders among them send us their provider records, which a node that
/// joins through us then finds here.
const JOIN_LOOKUPS: usize = 4;
/// A table with fewer nodes than this (a bucket's worth, Codex's k) is still growing: the
/// network is small, or nodes joined after us, or our join's answers were lost. It gets a
/// sweep ([`CodexDht::sweep`], every node asked for all it knows) and a lookup of a random id
/// every [`REJOIN_INTERVAL`] for [`EAGER_PERIOD`] after joining, then after twice as long each
/// time, up to [`REFRESH_INTERVAL`]: a node that joined a few seconds before a neighbour, or
/// that the node we joined through had not yet verified, still meets it within seconds,
/// without a steady stream of requests in a network that stays small.
const SPARSE_TABLE: usize = 16;
/// How long after joining (or starting) a sparse table is swept every [`REJOIN_INTERVAL`]:
/// long enough for Codex's revalidation (every 5-10 s) to verify the nodes that arrived with
/// us, so that it names them.
const EAGER_PERIOD: Duration = Duration::from_secs(60);

/// Bootstrap texts split by the DHT they join.
#[derive(Debug, Default)]
pub(crate) struct Bootstraps {
    /// For our Kademlia: multiaddrs, and records that carry a TCP address (or that nothing
    /// else can use, so that Kademlia's start says what is wrong with them).
    pub(crate) kademlia: Vec<String>,
    /// For Codex's DHT: records with a UDP address.
    pub(crate) codex: Vec<Spr>,
}

/// Splits `texts`: an `spr:` record with a UDP address goes to Codex's DHT when it runs
/// (`codex_dht`), and to Kademlia too when it also has a TCP address.
pub(crate) fn split_bootstraps(texts: &[String], codex_dht: bool) -> Bootstraps {
    let mut split = Bootstraps::default();
    for text in texts {
        let record = codex_dht
            .then(|| Spr::from_text(text.trim()).ok())
            .flatten()
            .filter(|r| r.udp_addr().is_some());
        match record {
            Some(record) => {
                if !record.tcp_addrs().is_empty() {
                    split.kademlia.push(text.clone());
                }
                split.codex.push(record);
            }
            None => split.kademlia.push(text.clone()),
        }
    }
    split
}

/// The IPv4 address of the first address in `addrs` that names a specific one.
fn specific_ipv4(addrs: &[Multiaddr]) -> Option<Ipv4Addr> {
    addrs.iter().find_map(|a| {
        a.iter().find_map(|p| match p {
            Protocol::Ip4(ip) if !ip.is_unspecified() => Some(ip),
            _ => None,
        })
    })
}

/// `addrs` with an unspecified IPv4 address replaced by `ip`: a provider record must name an
/// address others can dial.
fn dialable(addrs: &[Multiaddr], ip: Ipv4Addr) -> Vec<Multiaddr> {
    addrs
        .iter()
        .map(|a| {
            a.iter()
                .map(|p| match p {
                    Protocol::Ip4(v4) if v4.is_unspecified() => Protocol::Ip4(ip),
                    other => other,
                })
                .collect()
        })
        .collect()
}

/// What [`start`] needs of the node.
pub(crate) struct Start {
    /// The node's libp2p identity (secp256k1).
    pub(crate) keypair: Keypair,
    /// UDP address to bind; an unspecified IP takes the first specific IPv4 listen address, so
    /// a node that listens on loopback only keeps its DHT on loopback too.
    pub(crate) bind: SocketAddr,
    /// The configured announce addresses (TCP), possibly none.
    pub(crate) announce: Vec<Multiaddr>,
    /// The bound listen addresses (TCP).
    pub(crate) listening: Vec<Multiaddr>,
    /// Records to join through.
    pub(crate) bootstrap: Vec<Spr>,
}

/// Starts Codex's DHT on the current tokio runtime and, in the background, joins through the
/// bootstrap records and keeps the routing table fresh.
///
/// # Errors
/// [`DhtError::Io`] when the UDP port cannot be bound.
pub(crate) async fn start(s: Start) -> Result<CodexDht, DhtError> {
    let mut bind = s.bind;
    if bind.ip().is_unspecified() {
        if let Some(ip) = specific_ipv4(&s.listening) {
            bind.set_ip(IpAddr::V4(ip));
        }
    }
    // What others reach us at: the announce addresses' IP first, as for our TCP addresses.
    let announce_ip = specific_ipv4(&s.announce)
        .or(match bind.ip() {
            IpAddr::V4(v4) if !v4.is_unspecified() => Some(v4),
            _ => None,
        })
        .unwrap_or(Ipv4Addr::LOCALHOST);
    let tcp = if s.announce.is_empty() {
        &s.listening
    } else {
        &s.announce
    };
    let config = DhtConfig::new(s.keypair)
        .bind(bind)
        .announce_ip(announce_ip)
        .provider_addrs(dialable(tcp, announce_ip));
    let dht = CodexDht::start(config).await?;
    tracing::info!(
        udp = %dht.local_addr(),
        spr = %dht.local_record().to_text(),
        "Codex DHT started"
    );
    tokio::spawn(upkeep(dht.clone(), s.bootstrap));
    Ok(dht)
}

/// Joins through `bootstrap`, again while the table is empty; looks up random ids at growing
/// intervals while the table is sparse ([`SPARSE_TABLE`]); and refreshes the table every
/// [`REFRESH_INTERVAL`]. Ends when the service stops.
async fn upkeep(dht: CodexDht, bootstrap: Vec<Spr>) {
    let mut last_lookup = tokio::time::Instant::now();
    let mut eager_until = last_lookup + EAGER_PERIOD;
    let mut growth = REJOIN_INTERVAL;
    loop {
        let known = match dht.routing_table().await {
            Ok(table) => table.iter().filter(|e| !e.bootstrap || e.verified).count(),
            Err(_) => return,
        };
        let due = if known == 0 {
            Duration::ZERO
        } else if known < SPARSE_TABLE {
            growth
        } else {
            REFRESH_INTERVAL
        };
        if known == 0 && !bootstrap.is_empty() {
            let mut joined = false;
            for record in &bootstrap {
                match dht.bootstrap(record.clone()).await {
                    Ok(n) => {
                        joined = true;
                        tracing::info!(nodes = n, peer = %record.peer_id(), "joined the Codex DHT");
                    }
                    Err(DhtError::Unavailable) => return,
                    Err(e) => {
                        tracing::debug!(peer = %record.peer_id(), error = %e, "Codex DHT bootstrap failed")
                    }
                }
            }
            for _ in 0..if joined { JOIN_LOOKUPS } else { 0 } {
                if let Err(DhtError::Unavailable) = dht.refresh().await {
                    return;
                }
            }
            if joined {
                if let Err(DhtError::Unavailable) = dht.sweep().await {
                    return;
                }
            }
            last_lookup = tokio::time::Instant::now();
            eager_until = last_lookup + EAGER_PERIOD;
            growth = REJOIN_INTERVAL;
        } else if known > 0 && last_lookup.elapsed() >= due {
            last_lookup = tokio::time::Instant::now();
            if last_lookup >= eager_until {
                growth = (growth * 2).min(REFRESH_INTERVAL);
            }
            let swept = if known < SPARSE_TABLE {
                dht.sweep().await.map(|_| ())
            } else {
                Ok(())
            };
            if let Err(DhtError::Unavailable) = swept {
                return;
            }
            if let Err(DhtError::Unavailable) = dht.refresh().await {
                return;
            }
        }
        tokio::time::sleep(REJOIN_INTERVAL).await;
    }
}

/// One node of Codex's DHT routing table, as Codex's `/debug/info` `table` shows it.
#[derive(Debug, Clone)]
pub struct CodexTableNode {
    /// Its node id, 64 hex digits.
    pub node_id: String,
    /// Its peer.
    pub peer_id: PeerId,
    /// Its record, as `spr:` text (Codex prints Nim's debug form of it instead).
    pub record: String,
    /// Its UDP address, `ip:port`.
    pub address: String,
    /// Whether it ever answered us.
    pub seen: bool,
}

/// Codex's DHT routing table, in the shape of Codex's `/debug/info` `table`.
#[derive(Debug, Clone)]
pub struct CodexTable {
    /// This node; its address is the bound one, as Codex shows it.
    pub local_node: CodexTableNode,
    /// Every node in the table.
    pub nodes: Vec<CodexTableNode>,
}

/// The routing table of `dht`.
///
/// # Errors
/// [`DhtError::Unavailable`] once the service stopped.
pub(crate) async fn table(dht: &CodexDht) -> Result<CodexTable, DhtError> {
    let entry = |e: &RoutingEntry| CodexTableNode {
        node_id: e.record.node_id().to_string(),
        peer_id: e.record.peer_id(),
        record: e.record.to_text(),
        address: e.addr.to_string(),
        seen: e.verified,
    };
    let local = dht.local_record();
    Ok(CodexTable {
        local_node: CodexTableNode {
            node_id: local.node_id().to_string(),
            peer_id: local.peer_id(),
            record: local.to_text(),
            address: dht.local_addr().to_string(),
            seen: false,
        },
        nodes: dht.routing_table().await?.iter().map(entry).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_go_to_the_dht_their_addresses_reach() {
        let key = Keypair::generate_secp256k1();
        let udp: Multiaddr = "/ip4/127.0.0.1/udp/8090".parse().expect("addr");
        let tcp: Multiaddr = "/ip4/127.0.0.1/tcp/8070".parse().expect("addr");
        let udp_only = Spr::create(&key, vec![udp.clone()])
            .expect("signs")
            .to_text();
        let both = Spr::create(&key, vec![udp, tcp]).expect("signs").to_text();
        let multiaddr = format!("/ip4/127.0.0.1/tcp/1/p2p/{}", key.public().to_peer_id());
        let texts = vec![udp_only.clone(), both.clone(), multiaddr.clone()];
        let split = split_bootstraps(&texts, true);
        assert_eq!(split.kademlia, vec![both.clone(), multiaddr.clone()]);
        assert_eq!(split.codex.len(), 2);
        // Without Codex's DHT every text stays with Kademlia, which refuses the UDP-only one.
        let split = split_bootstraps(&texts, false);
        assert_eq!(split.kademlia, texts);
        assert!(split.codex.is_empty());
    }

    #[test]
    fn unspecified_addresses_become_dialable() {
        let any: Multiaddr = "/ip4/0.0.0.0/tcp/8070".parse().expect("addr");
        let ip = Ipv4Addr::new(10, 0, 0, 1);
        let want: Multiaddr = "/ip4/10.0.0.1/tcp/8070".parse().expect("addr");
        assert_eq!(dialable(std::slice::from_ref(&any), ip), vec![want.clone()]);
        assert_eq!(specific_ipv4(&[any, want]), Some(ip));
    }
}
