//! The UDP task: one tokio task owns the socket, the codec (sessions), the routing table, the
//! provider store and the requests in flight. The [`CodexDht`](super::CodexDht) handle talks
//! to it over a bounded channel; nothing is shared.
//!
//! For each datagram, in order: the source's rate limit, unmasking and opening
//! ([`Codec::open`]), then the message. Requests from others (PING, FINDNODE, FINDNODE_FAST,
//! TALKREQ, GET_PROVIDERS, ADD_PROVIDER) are answered here; responses complete the request
//! they match by sender and request id. Anything malformed, replayed, unsolicited or of an
//! unknown type is dropped and counted in [`DhtStats`]; nothing a peer sends can panic the
//! task.
//!
//! A request expires after the request timeout; a FINDNODE whose answer came in part (some of
//! its NODES messages) completes with what came, as codex-dht does. A node that lets requests
//! expire is dropped from the routing table after a few in a row.
//!
//! At shutdown (or when every handle is dropped) the task ends; requests in flight fail with
//! [`DhtError::Unavailable`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use super::codec::{Codec, Inbound, Peer};
use super::error::DhtError;
use super::message::{Body, Message, RequestId};
use super::node_id::NodeId;
use super::packet::MAX_PACKET;
use super::providers::ProviderStore;
use super::rate_limit::RateLimiter;
use super::record::Spr;
use super::routing::{Entry, RoutingTable, K};
use super::stats::DhtStats;

/// NODES messages one FINDNODE answer may span: Codex sends 3 records each, 16 at most.
pub const MAX_NODES_MESSAGES: u32 = 8;
/// Records one FINDNODE answer may carry in all (codex-dht `FindNodeResultLimit`).
pub const MAX_NODES_RECORDS: usize = K;
/// Records per NODES message we send (codex-dht `MaxNodesPerMessage`).
const NODES_PER_MESSAGE: usize = 3;
/// Records answering FINDNODE_FAST (codex-dht `FindNodeFastResultLimit`).
const FIND_NODE_FAST_RESULTS: usize = 6;

/// What the handle asks of the task.
pub(crate) enum Command {
    /// Send a request and report its answer.
    Request {
        peer: Peer,
        body: Body,
        reply: oneshot::Sender<Result<Body, DhtError>>,
    },
    /// Send a message that gets no answer (ADD_PROVIDER).
    Send { peer: Peer, body: Body },
    /// Put a record in the routing table.
    AddNode { record: Spr, bootstrap: bool },
    /// Nodes nearest a target.
    Closest {
        target: NodeId,
        reply: oneshot::Sender<Vec<Entry>>,
    },
    /// Providers held here.
    LocalProviders {
        key: NodeId,
        reply: oneshot::Sender<Vec<Spr>>,
    },
    /// Keep a provider record here.
    StoreProvider { key: NodeId, record: Spr },
    /// The routing table.
    Table { reply: oneshot::Sender<Vec<Entry>> },
    /// The counters.
    Stats { reply: oneshot::Sender<DhtStats> },
    /// Announce this record from now on (our addresses changed).
    SetRecord { record: Spr },
    /// Stop.
    Shutdown { reply: oneshot::Sender<()> },
}

struct Pending {
    node: NodeId,
    expects: u8,
    deadline: Instant,
    reply: oneshot::Sender<Result<Body, DhtError>>,
    records: Vec<Spr>,
    received: u32,
}

/// The task's state.
pub(crate) struct Service {
    pub(crate) socket: UdpSocket,
    pub(crate) codec: Codec,
    pub(crate) routing: RoutingTable,
    pub(crate) providers: ProviderStore,
    pub(crate) limiter: RateLimiter,
    pub(crate) request_timeout: Duration,
    pub(crate) max_in_flight: usize,
    pending: HashMap<(NodeId, RequestId), Pending>,
    stats: DhtStats,
}

/// The response type a request expects.
fn response_kind(body: &Body) -> Option<u8> {
    match body {
        Body::Ping { .. } => Some(0x02),
        Body::FindNode { .. } | Body::FindNodeFast { .. } => Some(0x04),
        Body::TalkReq { .. } => Some(0x06),
        Body::GetProviders { .. } => Some(0x0d),
        _ => None,
    }
}

impl Service {
    pub(crate) fn new(
        socket: UdpSocket,
        codec: Codec,
        routing: RoutingTable,
        providers: ProviderStore,
        limiter: RateLimiter,
        request_timeout: Duration,
        max_in_flight: usize,
    ) -> Self {
        Service {
            socket,
            codec,
            routing,
            providers,
            limiter,
            request_timeout,
            max_in_flight,
            pending: HashMap::new(),
            stats: DhtStats::default(),
        }
    }

    /// Runs until shutdown or until every handle is gone.
    pub(crate) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        // One byte more than accepted, so that an oversized datagram is seen as such.
        let mut buf = vec![0u8; MAX_PACKET + 1];
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut last_sweep = Instant::now();
        loop {
            tokio::select! {
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((n, from)) => {
                        let datagram = buf[..n].to_vec();
                        self.on_datagram(from, &datagram).await;
                    }
                    // ICMP errors surface here on some systems; the socket itself is fine.
                    Err(e) => tracing::debug!("codex dht: recv: {e}"),
                },
                command = commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => {
                        let _ = reply.send(());
                        break;
                    }
                    Some(command) => self.on_command(command).await,
                    None => break,
                },
                _ = tick.tick() => {
                    let now = Instant::now();
                    self.expire(now);
                    self.codec.sweep(now);
                    if now.duration_since(last_sweep) > Duration::from_secs(60) {
                        self.providers.sweep(now);
                        last_sweep = now;
                    }
                }
            }
        }
    }

    async fn send_all(&mut self, to: SocketAddr, datagrams: Vec<Vec<u8>>) {
        for d in datagrams {
            match self.socket.send_to(&d, to).await {
                Ok(_) => self.stats.packets_out += 1,
                Err(e) => tracing::debug!("codex dht: send to {to}: {e}"),
            }
        }
    }

    async fn on_datagram(&mut self, from: SocketAddr, datagram: &[u8]) {
        let now = Instant::now();
        self.stats.packets_in += 1;
        if !self.limiter.allow(from.ip(), now) {
            self.stats.rate_limited += 1;
            return;
        }
        match self.codec.open(from, datagram, now) {
            Ok(Inbound::Message {
                src,
                message,
                record,
            }) => {
                if let Some(record) = record {
                    self.stats.handshakes_in += 1;
                    // Like codex-dht: only a record that names the address it came from.
                    if record.udp_addr().map(SocketAddr::V4) == Some(from) {
                        self.routing.insert(record, true, false);
                    }
                }
                if message.body.is_response() {
                    self.on_response(src, message);
                } else {
                    self.on_request(src, from, message, now).await;
                }
            }
            Ok(Inbound::Undecryptable { src, nonce }) => {
                let known = self
                    .routing
                    .get(&src)
                    .filter(|e| SocketAddr::V4(e.addr) == from)
                    .map(|e| e.record.clone());
                if let Some(d) = self.codec.whoareyou(src, from, nonce, known.as_ref(), now) {
                    self.stats.whoareyou_sent += 1;
                    self.send_all(from, vec![d]).await;
                }
            }
            Ok(Inbound::Send(datagrams)) => {
                self.stats.handshakes_out += 1;
                self.send_all(from, datagrams).await;
            }
            Err(e) => {
                tracing::trace!("codex dht: dropped packet from {from}: {e}");
                self.stats.count_drop(&e);
            }
        }
    }

    async fn on_request(&mut self, src: NodeId, from: SocketAddr, message: Message, now: Instant) {
        let peer = Peer {
            id: src,
            addr: from,
            public_key: self
                .routing
                .get(&src)
                .map(|e| e.record.public_key().clone()),
        };
        let local = self.codec.record().clone();
        let replies: Vec<Body> = match message.body {
            Body::Ping { .. } => {
                self.stats.pings_in += 1;
                vec![Body::Pong {
                    spr_seq: local.seq(),
                    ip: from.ip(),
                    port: from.port(),
                }]
            }
            Body::FindNode { distances } => {
                self.stats.find_nodes_in += 1;
                let records = if distances.contains(&0) {
                    vec![local]
                } else if distances.iter().any(|d| *d > 256) {
                    Vec::new()
                } else {
                    // Like codex-dht, only nodes that answered us are handed out.
                    self.routing
                        .at_distances(&distances, MAX_NODES_RECORDS, true)
                        .into_iter()
                        .map(|e| e.record)
                        .collect()
                };
                nodes_messages(records)
            }
            Body::FindNodeFast { target } => {
                self.stats.find_node_fasts_in += 1;
                let records = self
                    .routing
                    .closest(&target, FIND_NODE_FAST_RESULTS, true)
                    .into_iter()
                    .map(|e| e.record)
                    .collect();
                nodes_messages(records)
            }
            Body::TalkReq { .. } => {
                self.stats.talk_reqs_in += 1;
                // No talk protocols: an empty answer, as the spec asks for unknown ones.
                vec![Body::TalkResp {
                    response: Vec::new(),
                }]
            }
            Body::GetProviders { key } => {
                self.stats.get_providers_in += 1;
                vec![Body::Providers {
                    total: 1,
                    records: self.providers.get(&key, now),
                }]
            }
            Body::AddProvider { key, record } => {
                self.stats.add_providers_in += 1;
                if self.providers.add(key, record, now).is_err() {
                    self.stats.providers_refused += 1;
                }
                Vec::new()
            }
            // Responses never get here (see on_datagram).
            Body::Pong { .. }
            | Body::Nodes { .. }
            | Body::TalkResp { .. }
            | Body::Providers { .. } => Vec::new(),
        };
        for body in replies {
            let plain = Message {
                request_id: message.request_id,
                body,
            }
            .encode();
            let datagrams = self.codec.seal(&peer, plain, now);
            self.send_all(from, datagrams).await;
        }
    }

    fn on_response(&mut self, src: NodeId, message: Message) {
        let key = (src, message.request_id);
        let Some(pending) = self.pending.get_mut(&key) else {
            self.stats.unsolicited += 1;
            return;
        };
        if pending.expects != message.body.kind() {
            if let Some(p) = self.pending.remove(&key) {
                let _ = p.reply.send(Err(DhtError::UnexpectedResponse));
            }
            return;
        }
        self.routing.answered(&src);
        let body = match message.body {
            Body::Nodes { total, records } => {
                pending.received += 1;
                pending.records.extend(records);
                if total > MAX_NODES_MESSAGES || pending.records.len() > MAX_NODES_RECORDS {
                    self.stats.oversized += 1;
                    if let Some(p) = self.pending.remove(&key) {
                        let _ = p.reply.send(Err(DhtError::Oversized));
                    }
                    return;
                }
                if pending.received < total {
                    return;
                }
                Body::Nodes {
                    total,
                    records: std::mem::take(&mut pending.records),
                }
            }
            other => other,
        };
        if let Some(p) = self.pending.remove(&key) {
            let _ = p.reply.send(Ok(body));
        }
    }

    fn expire(&mut self, now: Instant) {
        let expired: Vec<(NodeId, RequestId)> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        for key in expired {
            let Some(p) = self.pending.remove(&key) else {
                continue;
            };
            if p.received > 0 {
                // Part of a NODES answer: use it (codex-dht does the same).
                let _ = p.reply.send(Ok(Body::Nodes {
                    total: p.received,
                    records: p.records,
                }));
            } else {
                self.stats.timeouts += 1;
                self.routing.failed(&p.node);
                let _ = p.reply.send(Err(DhtError::Timeout));
            }
        }
    }

    async fn on_command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Request { peer, body, reply } => {
                let Some(expects) = response_kind(&body) else {
                    let _ = reply.send(Err(DhtError::UnexpectedResponse));
                    return;
                };
                if self.pending.len() >= self.max_in_flight {
                    let _ = reply.send(Err(DhtError::Busy));
                    return;
                }
                let request_id = RequestId::random();
                self.pending.insert(
                    (peer.id, request_id),
                    Pending {
                        node: peer.id,
                        expects,
                        deadline: now + self.request_timeout,
                        reply,
                        records: Vec::new(),
                        received: 0,
                    },
                );
                self.stats.requests_out += 1;
                let datagrams = self
                    .codec
                    .seal(&peer, Message { request_id, body }.encode(), now);
                self.send_all(peer.addr, datagrams).await;
            }
            Command::Send { peer, body } => {
                let datagrams = self.codec.seal(
                    &peer,
                    Message {
                        request_id: RequestId::random(),
                        body,
                    }
                    .encode(),
                    now,
                );
                self.send_all(peer.addr, datagrams).await;
            }
            Command::AddNode { record, bootstrap } => {
                self.routing.insert(record, false, bootstrap);
            }
            Command::Closest { target, reply } => {
                let _ = reply.send(self.routing.closest(&target, K, false));
            }
            Command::LocalProviders { key, reply } => {
                let _ = reply.send(self.providers.get(&key, now));
            }
            Command::StoreProvider { key, record } => {
                if self.providers.add(key, record, now).is_err() {
                    self.stats.providers_refused += 1;
                }
            }
            Command::Table { reply } => {
                let _ = reply.send(self.routing.entries());
            }
            Command::SetRecord { record } => self.codec.set_record(record),
            Command::Stats { reply } => {
                let mut stats = self.stats.clone();
                stats.routing_nodes = self.routing.len();
                stats.sessions = self.codec.session_count();
                stats.providers = self.providers.len();
                let _ = reply.send(stats);
            }
            // Handled in run.
            Command::Shutdown { reply } => {
                let _ = reply.send(());
            }
        }
    }
}

/// NODES messages for `records`, 3 records each; one empty message when there are none.
fn nodes_messages(records: Vec<Spr>) -> Vec<Body> {
    if records.is_empty() {
        return vec![Body::Nodes { total: 1, records }];
    }
    let chunks: Vec<Vec<Spr>> = records
        .chunks(NODES_PER_MESSAGE)
        .map(<[Spr]>::to_vec)
        .collect();
    let total = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
    chunks
        .into_iter()
        .map(|records| Body::Nodes { total, records })
        .collect()
}
