//! The driver task: owns the swarm, answers the handle's commands, turns swarm events into
//! [`NetEvent`]s, starts a writer task per connected peer, and drives the DHT ([`Dht`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{DialError, SwarmEvent};
use libp2p::{identify, Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::network::net::dht::{self, addrs, Dht};
use crate::network::net::dials::Dials;
use crate::network::net::inbound::Inbound;
use crate::network::net::nat::Nat;
use crate::network::net::peer;
use crate::network::net::peer::Outgoing;
use crate::network::net::reachability;
use crate::network::net::reader::{self, ReadCtx};
use crate::network::net::transport::{self, Behaviour, BehaviourEvent};
use crate::network::net::{
    identity, Command, NetConfig, NetError, NetEvent, NetHandle, BLOCKEXC_PROTOCOL,
};

/// Commands queued from handles before senders wait.
const COMMAND_QUEUE: usize = 64;
/// Time allowed for the listen addresses to be bound at start.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Period of the DHT's timers; also the precision of lookup deadlines.
const DHT_TICK: Duration = Duration::from_secs(1);

/// The network component. Start it with [`Net::start`]; then talk to it through the
/// [`NetHandle`] and read its [`NetEvent`]s.
pub struct Net {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    /// Lifecycle events waiting for room in the event channel. While it is full the swarm is not
    /// polled, so this stays short and nothing is dropped.
    pending: VecDeque<NetEvent>,
    /// Each connected peer's send queue (its writer task holds the other end).
    writers: HashMap<PeerId, mpsc::Sender<Outgoing>>,
    /// Handles waiting for a dial to a peer to finish.
    dials: Dials,
    control: libp2p_stream::Control,
    ctx: Arc<ReadCtx>,
    peer_queue_len: usize,
    /// Lookups, announcements, routing-table refresh and the peer store.
    dht: Dht,
    /// Announce every new listen address (no `announce_addrs` configured).
    auto_announce: bool,
    /// Reachability, relay reservations and the connections' kinds and bytes.
    nat: Nat,
}

impl Net {
    /// Loads (or creates) the identity, builds the swarm, binds every listen address and spawns
    /// the driver on the current tokio runtime (an actix System or Arbiter is one).
    ///
    /// # Errors
    /// [`NetError::Identity`] for an unusable key file, [`NetError::Listen`] when an address
    /// cannot be bound.
    pub async fn start(
        config: NetConfig,
    ) -> Result<(NetHandle, mpsc::Receiver<NetEvent>), NetError> {
        let key = identity::load_or_create(&config.key_path)?;
        // Bootstrap texts are checked before anything binds, so a typo fails the start cleanly.
        let mut dht = Dht::new(
            config.dht.clone(),
            key.clone(),
            &config.bootstrap,
            config.peer_store.clone(),
        )?;
        let refused = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (inbound, incoming) = Inbound::new();
        let (mut swarm, unclaimed) =
            transport::build(key.clone(), &config, refused.clone(), inbound)?;
        let control = swarm.behaviour().stream.new_control();
        let mut pending = VecDeque::new();
        for addr in &config.listen_addrs {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| NetError::Listen(format!("{addr}: {e}")))?;
        }
        // Wait until each listener has its address, so callers can hand it out at once.
        let wait = async {
            let mut bound = 0;
            while bound < config.listen_addrs.len() {
                match swarm.select_next_some().await {
                    SwarmEvent::NewListenAddr { address, .. } => {
                        bound += 1;
                        pending.push_back(NetEvent::Listening(address));
                    }
                    SwarmEvent::ListenerClosed { reason: Err(e), .. }
                    | SwarmEvent::ListenerError { error: e, .. } => {
                        return Err(NetError::Listen(e.to_string()))
                    }
                    _ => {}
                }
            }
            Ok(())
        };
        tokio::time::timeout(LISTEN_TIMEOUT, wait)
            .await
            .map_err(|_| NetError::Listen("timed out binding listen addresses".into()))??;

        // Provider records and identify carry the external addresses.
        let auto_announce = config.announce_addrs.is_empty();
        let bound: Vec<_> = swarm.listeners().cloned().collect();
        let announce = if auto_announce {
            dht::announce_from_listen(&bound)
        } else {
            config.announce_addrs.clone()
        };
        // Addresses the user vouches for stay announced whatever AutoNAT finds.
        let mut pinned = config.announce_addrs.clone();
        if let crate::network::net::NatMode::ExtIp(ip) = config.nat.mode {
            pinned.extend(reachability::with_ip(ip, &bound));
        }
        let announce: Vec<_> = announce.into_iter().chain(pinned.clone()).collect();
        for addr in swarm.listeners().chain(&announce) {
            dht.own_address(addr);
        }
        for addr in announce {
            swarm.add_external_address(addr);
        }
        dht.join(&mut swarm.behaviour_mut().kad);

        let (events_tx, events_rx) = mpsc::channel(config.event_queue_len.max(1));
        // One frame must always fit the budget, or its reader would wait forever; semaphores
        // count in u32 per acquire.
        let budget = config
            .max_inflight_frame_bytes
            .max(config.max_frame_bytes)
            .min(u32::MAX as usize);
        let ctx = Arc::new(ReadCtx {
            events: events_tx,
            max_frame: config.max_frame_bytes.min(budget),
            budget: Arc::new(Semaphore::new(budget)),
            // At least one whole frame per peer, or its reader would wait forever.
            peer_budgets: reader::PeerBudgets::new(
                config
                    .max_peer_frame_bytes
                    .max(config.max_frame_bytes)
                    .min(budget),
            ),
            frame_timeout: config.frame_timeout,
            min_rate: config.min_frame_rate,
            idle_timeout: config.stream_idle_timeout,
            frames: Default::default(),
        });
        tokio::spawn(peer::accept_loop(
            incoming,
            ctx.clone(),
            config.max_inbound_streams_per_peer.max(1),
        ));
        let (commands_tx, commands) = mpsc::channel(COMMAND_QUEUE);
        let net = Net {
            swarm,
            commands,
            pending,
            writers: HashMap::new(),
            dials: Dials::default(),
            control,
            ctx,
            peer_queue_len: config.peer_queue_len.max(1),
            dht,
            auto_announce,
            nat: Nat::new(
                config.nat.max_reservations,
                pinned,
                config.nat.relay_service.is_some(),
                unclaimed,
            ),
        };
        tokio::spawn(net.run());
        let handle = NetHandle {
            commands: commands_tx,
            key,
            refused,
        };
        Ok((handle, events_rx))
    }

    async fn run(mut self) {
        /// Lifecycle events held back before the swarm stops being polled.
        const MAX_PENDING: usize = 64;
        let events = self.ctx.events.clone();
        let mut tick = tokio::time::interval(DHT_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stopped_by = None;
        loop {
            tokio::select! {
                permit = events.reserve(), if !self.pending.is_empty() => {
                    let Ok(permit) = permit else { break }; // the consumer is gone
                    if let Some(e) = self.pending.pop_front() {
                        permit.send(e);
                    }
                }
                command = self.commands.recv() => match command {
                    None => break,
                    Some(Command::Shutdown { reply }) => {
                        stopped_by = Some(reply);
                        break;
                    }
                    Some(c) => self.command(c),
                },
                _ = tick.tick() => {
                    self.dht.tick(&mut self.swarm.behaviour_mut().kad, Instant::now());
                    self.expire_identifying(Instant::now());
                    self.nat.tick(&mut self.swarm, Instant::now());
                }
                event = self.swarm.select_next_some(), if self.pending.len() < MAX_PENDING => {
                    self.swarm_event(event);
                }
                _ = events.closed() => break,
            }
        }
        // Dropping the swarm closes every connection; dropping the writers' queues ends them.
        self.writers.clear();
        self.dht.save_on_exit().await;
        if let Some(reply) = stopped_by {
            let _ = reply.send(());
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Dial { peer, addrs, reply } => self.dial(peer, addrs, reply),
            Command::Send {
                peer,
                message,
                reply,
                written,
            } => {
                let sent = match self.writers.get(&peer) {
                    None => Err(NetError::NotConnected(peer)),
                    Some(q) => q.try_send((message, written)).map_err(|e| match e {
                        mpsc::error::TrySendError::Full(_) => NetError::QueueFull(peer),
                        mpsc::error::TrySendError::Closed(_) => NetError::NotConnected(peer),
                    }),
                };
                let _ = reply.send(sent);
            }
            Command::Disconnect { peer, reply } => {
                let _ = reply.send(self.swarm.disconnect_peer_id(peer).is_ok());
            }
            Command::ListenAddrs { reply } => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            // Handled by the loop, which must stop.
            Command::Shutdown { reply } => {
                let _ = reply.send(());
            }
            Command::Provide { key, reply } => {
                let key = dht::record_key(&key);
                self.dht
                    .provide(&mut self.swarm.behaviour_mut().kad, key, reply);
            }
            Command::StopProviding { key, reply } => {
                let key = dht::record_key(&key);
                self.dht
                    .stop_providing(&mut self.swarm.behaviour_mut().kad, &key);
                let _ = reply.send(());
            }
            Command::FindProviders { key, reply } => {
                let key = dht::record_key(&key);
                self.dht
                    .find_providers(&mut self.swarm.behaviour_mut().kad, key, reply);
            }
            Command::RoutingTable { reply } => {
                let announced: Vec<_> = self.swarm.external_addresses().cloned().collect();
                let table = self
                    .dht
                    .routing_table(&mut self.swarm.behaviour_mut().kad, announced);
                let _ = reply.send(table);
            }
            Command::DhtStats { reply } => {
                let _ = reply.send(self.dht.stats(&mut self.swarm.behaviour_mut().kad));
            }
            Command::ConnectedPeers { reply } => {
                let _ = reply.send(self.swarm.connected_peers().count());
            }
            Command::NatInfo { reply } => {
                let _ = reply.send(self.nat.info());
            }
            Command::AnnounceAddrs { reply } => {
                let mut addrs: Vec<_> = self.swarm.external_addresses().cloned().collect();
                if addrs.is_empty() {
                    addrs = self.swarm.listeners().cloned().collect();
                }
                let _ = reply.send(addrs);
            }
        }
    }

    fn dial(
        &mut self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        reply: oneshot::Sender<Result<(), NetError>>,
    ) {
        if self.swarm.is_connected(&peer) {
            let _ = reply.send(Ok(()));
            return;
        }
        // A peer whose relayed connection hit the relay's limit is not dialled through a relay
        // again for a while: a fetch from it fails instead of cycling through circuits.
        let mut addrs = addrs;
        if let Some(why) = self.nat.relay_backoff(&peer, Instant::now()) {
            let relayed = addrs.iter().filter(|a| reachability::is_relayed(a)).count();
            if relayed > 0 && relayed == addrs.len() {
                let _ = reply.send(Err(NetError::Dial(why.to_string())));
                return;
            }
            addrs.retain(|a| !reachability::is_relayed(a));
        }
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        match self.swarm.dial(opts) {
            // A dial already under way answers this caller too.
            Ok(()) | Err(DialError::DialPeerConditionFalse(_)) => {
                self.dials.wait(peer, reply);
            }
            Err(e) => {
                let _ = reply.send(Err(NetError::Dial(e.to_string())));
            }
        }
    }

    /// Peers that kept the connection but never identified in time count as connected (a
    /// peer without identify can still exchange blocks).
    fn expire_identifying(&mut self, now: Instant) {
        for peer in self.dials.late(now) {
            let result = if self.swarm.is_connected(&peer) {
                Ok(())
            } else {
                Err(NetError::Dial("the peer closed the connection".into()))
            };
            self.dials.finish(peer, &result);
        }
    }

    fn swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        // Set when the connection that closed was ended by a relay at its limit.
        let mut relay_limit = None;
        match &event {
            SwarmEvent::Dialing { .. } => self.dht.on_dial(),
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                self.dht.on_dial_failed(*peer_id, error, Instant::now())
            }
            SwarmEvent::ConnectionClosed { connection_id, .. } => {
                relay_limit = self.nat.on_closed(*connection_id);
            }
            SwarmEvent::ListenerClosed { listener_id, .. } => {
                self.nat.on_listener_closed(*listener_id)
            }
            // Provider records carry our addresses: announce again with the new ones.
            SwarmEvent::ExternalAddrConfirmed { .. } | SwarmEvent::ExternalAddrExpired { .. } => {
                self.dht.republish_soon();
                // So do Codex's DHT records, which the exchange re-signs.
                let addrs = self.swarm.external_addresses().cloned().collect();
                self.pending.push_back(NetEvent::AddressesChanged(addrs));
            }
            _ => {}
        }
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                self.dht.own_address(&address);
                // A listener on 0.0.0.0 reports each new interface; loopback stays private.
                if self.auto_announce
                    && !addrs::is_loopback(&address)
                    && addrs::tcp_dialable(&address, None).is_some()
                {
                    self.swarm.add_external_address(address.clone());
                }
                self.pending.push_back(NetEvent::Listening(address));
            }
            SwarmEvent::ExpiredListenAddr { address, .. } if self.auto_announce => {
                self.swarm.remove_external_address(&address);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => {
                self.dht.on_event(&mut self.swarm.behaviour_mut().kad, e);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(e)) => {
                self.nat.on_autonat(&mut self.swarm, e);
            }
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(e)) => self.nat.on_relay_client(e),
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(e)) => {
                self.nat.on_dcutr(&mut self.swarm, e)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Upnp(e)) => self.nat.on_upnp(e),
            // Silence (a ping that timed out, or a stream that could not even be negotiated)
            // means the path is gone; a peer that does not speak ping keeps its connection.
            SwarmEvent::Behaviour(BehaviourEvent::Ping(libp2p::ping::Event {
                peer,
                connection,
                result: Err(failure),
            })) if !matches!(failure, libp2p::ping::Failure::Unsupported) => {
                tracing::debug!(%peer, %failure, "ping failed twice: closing the connection");
                self.swarm.close_connection(connection);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Relay(e)) => {
                tracing::debug!(event = ?e, "relay service");
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                self.nat
                    .on_established(&mut self.swarm, peer_id, connection_id, &endpoint);
                self.dials.connected(peer_id);
                if num_established.get() == 1 {
                    let (tx, rx) = mpsc::channel(self.peer_queue_len);
                    self.writers.insert(peer_id, tx);
                    let control = self.control.clone();
                    tokio::spawn(peer::write_loop(peer_id, rx, control, self.ctx.clone()));
                    self.pending.push_back(NetEvent::PeerConnected {
                        peer: peer_id,
                        addr: endpoint.get_remote_address().clone(),
                    });
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.writers.remove(&peer_id);
                let closed = "the peer closed the connection at once (it may be full)";
                self.dials
                    .finish(peer_id, &Err(NetError::Dial(closed.into())));
                self.pending.push_back(NetEvent::PeerDisconnected {
                    peer: peer_id,
                    relay_limit,
                });
            }
            // Unless another connection is up already (both sides dialled at once).
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } if !self.swarm.is_connected(&peer) => {
                self.dials
                    .finish(peer, &Err(NetError::Dial(error.to_string())));
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                let result = if info.protocols.contains(&BLOCKEXC_PROTOCOL) {
                    Ok(())
                } else {
                    Err(NetError::Dial(format!(
                        "the peer does not speak {BLOCKEXC_PROTOCOL}"
                    )))
                };
                if self.dials.is_identifying(&peer_id) {
                    self.dials.finish(peer_id, &result);
                }
                self.nat.on_identify(peer_id, &info);
                self.dht
                    .on_identify(&mut self.swarm.behaviour_mut().kad, peer_id, &info);
                self.pending.push_back(NetEvent::Identified {
                    peer: peer_id,
                    agent_version: info.agent_version,
                });
            }
            _ => {}
        }
    }
}
