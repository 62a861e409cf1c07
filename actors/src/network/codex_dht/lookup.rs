//! The operations of [`CodexDht`] made of many requests: the iterative lookup, and providing
//! and finding providers on the nodes it finds.
//!
//! They run in the caller's task, not in the service task, for the reason `handle.rs` gives.

use std::collections::HashSet;

use futures::stream::{FuturesUnordered, StreamExt};

use super::error::DhtError;
use super::handle::{peer_of, CodexDht};
use super::message::Body;
use super::node_id::{lookup_distances, NodeId};
use super::record::Spr;
use super::routing::K;
use super::service::Command;

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
            for record in found {
                if !seen.insert(record.node_id()) {
                    continue;
                }
                self.commands
                    .send(Command::AddNode {
                        record: record.clone(),
                        bootstrap: false,
                    })
                    .await
                    .map_err(|_| DhtError::Unavailable)?;
                let at = closest.partition_point(|c| {
                    c.node_id().distance(&target) < record.node_id().distance(&target)
                });
                closest.insert(at, record);
                closest.truncate(K);
            }
        }
        Ok(closest)
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
