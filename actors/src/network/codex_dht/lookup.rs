//! The operations of [`CodexDht`] made of many requests: the iterative lookup, the sweep of a
//! sparse table, and providing and finding providers on the nodes a lookup finds.
//!
//! They run in the caller's task, not in the service task, for the reason `handle.rs` gives.

use std::collections::HashSet;
use std::ops::RangeInclusive;

use futures::stream::{FuturesUnordered, StreamExt};

use super::error::DhtError;
use super::handle::{peer_of, CodexDht};
use super::message::Body;
use super::node_id::{lookup_distances, NodeId};
use super::record::Spr;
use super::routing::K;
use super::service::Command;

/// The log distances a sweep asks each node for: the 16 greatest. A node's id lies at one of
/// them from any other node's with probability 1 − 2⁻¹⁶.
const SWEEP_DISTANCES: RangeInclusive<u16> = 241..=256;
/// Most nodes one sweep asks.
const SWEEP_MAX_ASKED: usize = 32;

impl CodexDht {
    /// Iterative lookup: the up to k = 16 nodes closest to `target` that we could find,
    /// closest first, asking α at a time with three distances per FINDNODE. Every node found
    /// goes into the routing table.
    ///
    /// # Errors
    /// [`DhtError::Unavailable`] if the service stopped; nodes that fail are skipped.
    pub async fn lookup(&self, target: NodeId) -> Result<Vec<Spr>, DhtError> {
        let local = self.node_id();
        let mut closest: Vec<Spr> = self
            .call(|reply| Command::Closest { target, reply })
            .await?
            .into_iter()
            .map(|e| e.record)
            .collect();
        let mut asked: HashSet<NodeId> = HashSet::from([local]);
        let mut seen: HashSet<NodeId> = closest.iter().map(Spr::node_id).collect();
        seen.insert(local);
        let mut in_flight = FuturesUnordered::new();
        loop {
            for node in &closest {
                if in_flight.len() >= self.alpha() {
                    break;
                }
                if asked.insert(node.node_id()) {
                    let node = node.clone();
                    let distances = lookup_distances(&target, &node.node_id());
                    in_flight.push(async move { self.find_node(&node, distances).await });
                }
            }
            let Some(result) = in_flight.next().await else {
                break;
            };
            let Ok(found) = result else { continue };
            for record in self.learn(found, &mut seen).await? {
                let at = closest.partition_point(|c| {
                    c.node_id().distance(&target) < record.node_id().distance(&target)
                });
                closest.insert(at, record);
                closest.truncate(K);
            }
        }
        Ok(closest)
    }

    /// For a table that is still sparse: asks every node it holds, and every node they name in
    /// turn (32 at most), for the nodes at the 16 greatest log distances from it (241 to 256),
    /// where all but one in 65,536 of the nodes it knows lie: in a small network, every node
    /// it has verified (Codex answers with 16 at most). Every node found goes into the routing
    /// table. Returns the table's size.
    ///
    /// Why: a lookup asks each node for three distances, those nearest its target's. In a
    /// small network, a node whose distance from the node we joined through is none of those
    /// stays unknown until a random target happens to point at it; and Codex answers only with
    /// nodes it has heard back from, which its revalidation does 5-10 s after they arrive, so
    /// the lookups made when joining can miss even a node that joined first.
    ///
    /// # Errors
    /// [`DhtError::Unavailable`] if the service stopped; nodes that fail are skipped.
    pub async fn sweep(&self) -> Result<usize, DhtError> {
        let distances: Vec<u16> = SWEEP_DISTANCES.rev().collect();
        let mut queue: Vec<Spr> = self
            .routing_table()
            .await?
            .into_iter()
            .map(|e| e.record)
            .collect();
        let mut known: HashSet<NodeId> = queue.iter().map(Spr::node_id).collect();
        known.insert(self.node_id());
        let mut asked = 0;
        let mut in_flight = FuturesUnordered::new();
        loop {
            while in_flight.len() < self.alpha() && asked < SWEEP_MAX_ASKED {
                let Some(node) = queue.pop() else { break };
                asked += 1;
                let distances = distances.clone();
                in_flight.push(async move { self.find_node(&node, distances).await });
            }
            let Some(result) = in_flight.next().await else {
                break;
            };
            let Ok(found) = result else { continue };
            queue.extend(self.learn(found, &mut known).await?);
        }
        Ok(self.routing_table().await?.len())
    }

    /// The records of `found` not in `known` yet: each goes into `known` and the routing table.
    async fn learn(
        &self,
        found: Vec<Spr>,
        known: &mut HashSet<NodeId>,
    ) -> Result<Vec<Spr>, DhtError> {
        let mut new = Vec::new();
        for record in found {
            if !known.insert(record.node_id()) {
                continue;
            }
            self.commands
                .send(Command::AddNode {
                    record: record.clone(),
                    bootstrap: false,
                })
                .await
                .map_err(|_| DhtError::Unavailable)?;
            new.push(record);
        }
        Ok(new)
    }

    /// ADD_PROVIDER: announces `record` as a provider of `key` to the k nodes closest to it,
    /// without waiting for them (the message has no answer), as codex-dht does; keeps it here
    /// when no node is found. Returns how many nodes it was sent to.
    ///
    /// # Errors
    /// [`DhtError::Unavailable`] if the service stopped.
    pub async fn add_provider(&self, key: NodeId, record: Spr) -> Result<usize, DhtError> {
        let nodes = self.lookup(key).await?;
        if nodes.is_empty() {
            self.commands
                .send(Command::StoreProvider { key, record })
                .await
                .map_err(|_| DhtError::Unavailable)?;
            return Ok(0);
        }
        let mut sent = 0;
        for node in &nodes {
            let Ok(peer) = peer_of(node) else { continue };
            let body = Body::AddProvider {
                key,
                record: record.clone(),
            };
            self.commands
                .send(Command::Send { peer, body })
                .await
                .map_err(|_| DhtError::Unavailable)?;
            sent += 1;
        }
        Ok(sent)
    }

    /// [`CodexDht::add_provider`] with our provider record.
    ///
    /// # Errors
    /// As [`CodexDht::add_provider`].
    pub async fn provide(&self, key: NodeId) -> Result<usize, DhtError> {
        self.add_provider(key, self.provider_record()).await
    }

    /// The providers of `key`: those held here, and those the nodes closest to `key` hold
    /// (GET_PROVIDERS to each, in parallel). One record per peer, the newest.
    ///
    /// # Errors
    /// [`DhtError::Unavailable`] if the service stopped; nodes that fail are skipped.
    pub async fn get_providers(&self, key: NodeId) -> Result<Vec<Spr>, DhtError> {
        let mut found = self
            .call(|reply| Command::LocalProviders { key, reply })
            .await?;
        let nodes = self.lookup(key).await?;
        let mut asks: FuturesUnordered<_> = nodes
            .iter()
            .map(|n| self.get_providers_from(n, key))
            .collect();
        while let Some(result) = asks.next().await {
            if let Ok(records) = result {
                found.extend(records);
            }
        }
        found.sort_by_key(|r| std::cmp::Reverse(r.seq()));
        let mut peers = HashSet::new();
        found.retain(|r| peers.insert(r.peer_id()));
        Ok(found)
    }

    /// GET_PROVIDERS to one node.
    ///
    /// # Errors
    /// As [`CodexDht::ping`].
    pub async fn get_providers_from(&self, node: &Spr, key: NodeId) -> Result<Vec<Spr>, DhtError> {
        match self.request(node, Body::GetProviders { key }).await? {
            Body::Providers { records, .. } => Ok(records),
            _ => Err(DhtError::UnexpectedResponse),
        }
    }
}
