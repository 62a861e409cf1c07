//! [`CodexDht`]: the cheap-to-clone handle of the DHT service, its one-request operations and
//! bootstrap; the iterative lookup and the provider operations built on it are `lookup.rs`.
//!
//! Operations of several requests run in the caller's task, not in the service task: the task
//! only sends requests and matches answers, so one slow lookup never holds up packets for
//! others.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, PoisonError, RwLock};

use tokio::sync::{mpsc, oneshot};

use super::codec::{Codec, CodecLimits, Peer};
use super::config::DhtConfig;
use super::error::DhtError;
use super::message::Body;
use super::node_id::NodeId;
use super::providers::ProviderStore;
use super::rate_limit::RateLimiter;
use super::record::{plausible_ip, udp_multiaddr, Spr};
use super::routing::{Entry, RoutingTable};
use super::service::{Command, Service, MAX_NODES_RECORDS};
use super::stats::DhtStats;

/// Commands queued to the service task; senders wait when it is full.
const COMMAND_QUEUE: usize = 256;

/// What PONG told us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pong {
    /// The peer's record sequence number: a higher one than we hold means its record changed.
    pub spr_seq: u64,
    /// Our address as the peer saw it.
    pub observed: SocketAddr,
}

struct Local {
    /// Our records; they change when the node's reachable addresses do ([`CodexDht::readdress`]).
    records: RwLock<Records>,
    /// What signs them.
    keypair: libp2p::identity::Keypair,
    /// Addresses our DHT record carries besides the UDP one.
    extra_record_addrs: Vec<libp2p::Multiaddr>,
    /// Our node id: it comes from the key, so it stays whatever the records say.
    node_id: NodeId,
    addr: SocketAddr,
    alpha: usize,
}

/// Our two records: the DHT one (UDP address; `/spr`, handshakes, PONG's sequence number) and
/// the one provider announcements carry (the addresses a fetching peer dials).
#[derive(Clone)]
struct Records {
    record: Spr,
    provider_record: Spr,
}

impl Local {
    fn records(&self) -> std::sync::RwLockReadGuard<'_, Records> {
        self.records.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Handle of a running Codex DHT service. Cloning is cheap; the service stops on
/// [`CodexDht::shutdown`] or when the last clone is dropped.
#[derive(Clone)]
pub struct CodexDht {
    pub(super) commands: mpsc::Sender<Command>,
    local: Arc<Local>,
}

impl std::fmt::Debug for CodexDht {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodexDht")
            .field("addr", &self.local.addr)
            .field("node_id", &self.node_id())
            .finish()
    }
}

impl CodexDht {
    /// Binds the UDP socket, makes our record and spawns the service task on the current
    /// tokio runtime (an actix `System` is one).
    ///
    /// # Errors
    /// [`DhtError::Io`] if the socket cannot be bound; [`DhtError::Record`] or
    /// [`DhtError::Config`] for a key that is not secp256k1.
    pub async fn start(config: DhtConfig) -> Result<Self, DhtError> {
        let socket = tokio::net::UdpSocket::bind(config.bind).await?;
        let addr = socket.local_addr()?;
        let ip = config
            .announce_ip
            .or(match addr.ip() {
                IpAddr::V4(v4) if !v4.is_unspecified() => Some(v4),
                _ => None,
            })
            .unwrap_or(Ipv4Addr::LOCALHOST);
        let record = dht_record(&config.keypair, ip, addr.port(), &config.extra_record_addrs)?;
        let node_id = record.node_id();
        let provider_record = if config.provider_addrs.is_empty() {
            record.clone()
        } else {
            Spr::create(&config.keypair, config.provider_addrs.clone())?
        };
        let limits = CodecLimits {
            sessions: config.max_sessions,
            challenges: config.max_sessions,
            sent: config.max_in_flight.saturating_mul(2),
            handshake_timeout: config.handshake_timeout,
        };
        let codec = Codec::new(config.keypair.clone(), record.clone(), limits)
            .map_err(|_| DhtError::Config("the key must be secp256k1"))?;
        let service = Service::new(
            socket,
            codec,
            RoutingTable::new(record.node_id(), config.ip_limits),
            ProviderStore::new(config.providers),
            RateLimiter::new(config.rate),
            config.request_timeout,
            config.max_in_flight,
        );
        let (commands, rx) = mpsc::channel(COMMAND_QUEUE);
        tokio::spawn(service.run(rx));
        Ok(CodexDht {
            commands,
            local: Arc::new(Local {
                records: RwLock::new(Records {
                    record,
                    provider_record,
                }),
                keypair: config.keypair,
                extra_record_addrs: config.extra_record_addrs,
                node_id,
                addr,
                alpha: config.alpha.max(1),
            }),
        })
    }

    /// Our DHT record: what `/spr` shows and what others bootstrap from.
    pub fn local_record(&self) -> Spr {
        self.local.records().record.clone()
    }

    /// The record [`CodexDht::provide`] announces.
    pub fn provider_record(&self) -> Spr {
        self.local.records().provider_record.clone()
    }

    /// Our node id (it never changes: it comes from the key).
    pub fn node_id(&self) -> NodeId {
        self.local.node_id
    }

    /// Follows a change of the node's reachable addresses: our DHT record takes `udp_ip` (with
    /// the bound port) when given, and provider announcements carry `provider_addrs` when not
    /// empty. Both are signed anew with a higher sequence number, so nodes that PING us fetch
    /// the new record, and a provider record announced again replaces the old one where it is
    /// kept. Returns whether anything changed; the caller announces its keys again.
    ///
    /// # Errors
    /// [`DhtError::Record`] if a record cannot be made of these addresses;
    /// [`DhtError::Unavailable`] once the service stopped.
    pub async fn readdress(
        &self,
        udp_ip: Option<Ipv4Addr>,
        provider_addrs: Vec<libp2p::Multiaddr>,
    ) -> Result<bool, DhtError> {
        let old = self.local.records().clone();
        let old_ip = old.record.udp_addr().map(|a| *a.ip());
        let new_ip = udp_ip.filter(|ip| Some(*ip) != old_ip);
        let new_provider = (!provider_addrs.is_empty()
            && provider_addrs != old.provider_record.addrs())
        .then_some(provider_addrs);
        if new_ip.is_none() && new_provider.is_none() {
            return Ok(false);
        }
        let key = &self.local.keypair;
        let mut made = old.clone();
        for _ in 0..3 {
            if let Some(ip) = new_ip {
                let port = self.local.addr.port();
                made.record = dht_record(key, ip, port, &self.local.extra_record_addrs)?;
            }
            if let Some(addrs) = &new_provider {
                made.provider_record = Spr::create(key, addrs.clone())?;
            }
            // Sequence numbers are whole seconds: a record signed within the second of the one
            // it replaces would not look newer to the nodes that hold that one.
            let newer = (new_ip.is_none() || made.record.seq() > old.record.seq())
                && (new_provider.is_none()
                    || made.provider_record.seq() > old.provider_record.seq());
            if newer {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        *self
            .local
            .records
            .write()
            .unwrap_or_else(PoisonError::into_inner) = made.clone();
        let fresh = new_ip.map(|_| made.record);
        if let Some(record) = fresh {
            self.commands
                .send(Command::SetRecord { record })
                .await
                .map_err(|_| DhtError::Unavailable)?;
        }
        Ok(true)
    }

    /// Requests a lookup keeps in flight at once (α).
    pub(super) fn alpha(&self) -> usize {
        self.local.alpha
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local.addr
    }

    pub(super) async fn call<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, DhtError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(command(tx))
            .await
            .map_err(|_| DhtError::Unavailable)?;
        rx.await.map_err(|_| DhtError::Unavailable)
    }

    pub(super) async fn request(&self, to: &Spr, body: Body) -> Result<Body, DhtError> {
        let peer = peer_of(to)?;
        self.call(|reply| Command::Request { peer, body, reply })
            .await?
    }

    /// Joins through `record`: puts it in the routing table (never dropped), pings it, then
    /// looks up our own id so that the nodes near us learn of us. Returns the number of nodes
    /// in the routing table after that.
    ///
    /// # Errors
    /// [`DhtError::NoUdpAddress`] for a record without an IPv4 UDP address; the ping's error
    /// if the node does not answer.
    pub async fn bootstrap(&self, record: Spr) -> Result<usize, DhtError> {
        peer_of(&record)?;
        self.commands
            .send(Command::AddNode {
                record: record.clone(),
                bootstrap: true,
            })
            .await
            .map_err(|_| DhtError::Unavailable)?;
        self.revalidate(&record).await?;
        self.lookup(self.node_id()).await?;
        Ok(self.call(|reply| Command::Table { reply }).await?.len())
    }

    /// PINGs `node`; when its PONG shows a newer record than ours of it, fetches that record
    /// (FINDNODE at distance 0) into the routing table, as codex-dht's revalidation does.
    async fn revalidate(&self, node: &Spr) -> Result<(), DhtError> {
        let pong = self.ping(node).await?;
        if pong.spr_seq > node.seq() {
            let newer = self.find_node(node, vec![0]).await?;
            for record in newer.into_iter().filter(|r| r.peer_id() == node.peer_id()) {
                self.commands
                    .send(Command::AddNode {
                        record,
                        bootstrap: false,
                    })
                    .await
                    .map_err(|_| DhtError::Unavailable)?;
            }
        }
        Ok(())
    }

    /// One round of upkeep, for the embedder to call every few minutes (Codex looks up a
    /// random id every 5 minutes and revalidates a node every 5–10 s): revalidates the node
    /// heard from least recently, then looks up a random id to find new nodes. Returns the
    /// number of nodes in the routing table after that.
    ///
    /// # Errors
    /// [`DhtError::Unavailable`] if the service stopped; a node that does not answer only
    /// counts a failure against it.
    pub async fn refresh(&self) -> Result<usize, DhtError> {
        let table = self.routing_table().await?;
        if let Some(stalest) = table.iter().min_by_key(|e| e.last_seen) {
            // A failure is recorded in the table by the service; nothing more to do here.
            let _ = self.revalidate(&stalest.record).await;
        }
        self.lookup(NodeId(rand::random())).await?;
        Ok(self.routing_table().await?.len())
    }

    /// PING.
    ///
    /// # Errors
    /// [`DhtError::Timeout`] without an answer; [`DhtError::UnexpectedResponse`] for a wrong
    /// one.
    pub async fn ping(&self, node: &Spr) -> Result<Pong, DhtError> {
        let spr_seq = self.local.records().record.seq();
        match self.request(node, Body::Ping { spr_seq }).await? {
            Body::Pong { spr_seq, ip, port } => Ok(Pong {
                spr_seq,
                observed: SocketAddr::new(ip, port),
            }),
            _ => Err(DhtError::UnexpectedResponse),
        }
    }

    /// FINDNODE: the records `node` holds at these log distances from itself. Records that are
    /// not at a requested distance, lack a plausible UDP address, or repeat are left out (as
    /// codex-dht's `verifyNodesRecords`).
    ///
    /// # Errors
    /// As [`CodexDht::ping`]; [`DhtError::Oversized`] for an answer over the bounds.
    pub async fn find_node(&self, node: &Spr, distances: Vec<u16>) -> Result<Vec<Spr>, DhtError> {
        let sender_ip = node
            .udp_addr()
            .map(|a| *a.ip())
            .ok_or(DhtError::NoUdpAddress)?;
        let body = self
            .request(
                node,
                Body::FindNode {
                    distances: distances.clone(),
                },
            )
            .await?;
        let Body::Nodes { records, .. } = body else {
            return Err(DhtError::UnexpectedResponse);
        };
        let mut seen = HashSet::new();
        Ok(records
            .into_iter()
            .filter(|r| {
                let at_distance = distances.contains(&r.node_id().log_distance(&node.node_id()));
                let addr_ok = r
                    .udp_addr()
                    .is_some_and(|a| plausible_ip(sender_ip, *a.ip()));
                at_distance && addr_ok && seen.insert(r.node_id())
            })
            .take(MAX_NODES_RECORDS)
            .collect())
    }

    /// The routing table, nearest buckets first.
    ///
    /// # Errors
    /// [`DhtError::Unavailable`] if the service stopped.
    pub async fn routing_table(&self) -> Result<Vec<Entry>, DhtError> {
        self.call(|reply| Command::Table { reply }).await
    }

    /// Counters of what the service saw.
    ///
    /// # Errors
    /// [`DhtError::Unavailable`] if the service stopped.
    pub async fn stats(&self) -> Result<DhtStats, DhtError> {
        self.call(|reply| Command::Stats { reply }).await
    }

    /// Stops the service; requests in flight fail with [`DhtError::Unavailable`].
    ///
    /// # Errors
    /// [`DhtError::Unavailable`] if it had stopped already.
    pub async fn shutdown(&self) -> Result<(), DhtError> {
        self.call(|reply| Command::Shutdown { reply }).await
    }
}

pub(super) fn peer_of(record: &Spr) -> Result<Peer, DhtError> {
    let addr = record.udp_addr().ok_or(DhtError::NoUdpAddress)?;
    Ok(Peer {
        id: record.node_id(),
        addr: SocketAddr::V4(addr),
        public_key: Some(record.public_key().clone()),
    })
}

/// Our DHT record: the UDP address `ip:port`, then `extra`.
fn dht_record(
    key: &libp2p::identity::Keypair,
    ip: Ipv4Addr,
    port: u16,
    extra: &[libp2p::Multiaddr],
) -> Result<Spr, DhtError> {
    let mut addrs = vec![udp_multiaddr(SocketAddrV4::new(ip, port))];
    addrs.extend(extra.iter().cloned());
    Ok(Spr::create(key, addrs)?)
}
