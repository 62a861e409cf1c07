//! The routing table: the nodes we know, in 256 buckets by log distance, at most k per bucket.
//!
//! Kademlia as codex-dht runs it: XOR distance, bucket `d` holds the nodes at log distance `d`
//! (1..=256), k = 16. Codex splits buckets lazily; a fixed bucket per distance holds the same
//! nodes near us and fewer far away, which is what lookups need.
//!
//! Against flooding:
//! - first come, first kept: a full bucket takes a new node only in place of one that stopped
//!   answering (or, for a node that answered us, one that never did), so a flood of fresh
//!   records cannot push out nodes that work;
//! - per-IP quotas as in discv5 (at most 2 per bucket, 10 in the table, from one IPv4
//!   address). Loopback is exempt: on one machine every node shares 127.0.0.1, and a local
//!   attacker has easier ways to hurt us. (Codex turns its IP limits off altogether.)
//! - a node that fails [`MAX_FAILURES`] requests in a row is dropped, unless it is a
//!   bootstrap node.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant;

use super::node_id::NodeId;
use super::record::Spr;

/// Nodes per bucket (Kademlia's k, codex-dht `BUCKET_SIZE`).
pub const K: usize = 16;
/// Consecutive failed requests after which a node is dropped.
pub const MAX_FAILURES: u8 = 3;

/// One known node.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its newest record.
    pub record: Spr,
    /// Where it listens.
    pub addr: SocketAddrV4,
    /// Whether it ever answered us (or reached us from its record's address).
    pub verified: bool,
    /// Requests failed in a row.
    pub failures: u8,
    /// A bootstrap node is never dropped.
    pub bootstrap: bool,
    /// When it last answered.
    pub last_seen: Option<Instant>,
}

/// What [`RoutingTable::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// A new entry.
    Added,
    /// An existing entry, refreshed.
    Updated,
    /// Our own record.
    Local,
    /// The record has no IPv4 UDP address.
    NoAddress,
    /// The bucket is full of nodes that work.
    BucketFull,
    /// The address's IP is over its quota.
    IpLimit,
}

/// Quotas of a [`RoutingTable`].
#[derive(Debug, Clone, Copy)]
pub struct IpLimits {
    /// Nodes from one IP per bucket.
    pub per_bucket: usize,
    /// Nodes from one IP in the whole table.
    pub per_table: usize,
}

/// The routing table; see the module doc.
pub struct RoutingTable {
    local: NodeId,
    buckets: Vec<Vec<Entry>>,
    limits: IpLimits,
    ips: HashMap<Ipv4Addr, usize>,
}

impl RoutingTable {
    /// An empty table around `local`.
    pub fn new(local: NodeId, limits: IpLimits) -> Self {
        RoutingTable {
            local,
            buckets: vec![Vec::new(); 256],
            limits,
            ips: HashMap::new(),
        }
    }

    fn bucket_of(&self, id: &NodeId) -> Option<usize> {
        usize::from(self.local.log_distance(id)).checked_sub(1)
    }

    /// Adds or refreshes a node. A newer record replaces an older one; `verified` marks a node
    /// that answered us.
    pub fn insert(&mut self, record: Spr, verified: bool, bootstrap: bool) -> Insert {
        let id = record.node_id();
        let Some(b) = self.bucket_of(&id) else {
            return Insert::Local;
        };
        let Some(addr) = record.udp_addr() else {
            return Insert::NoAddress;
        };
        if let Some(i) = self.buckets[b]
            .iter()
            .position(|e| e.record.node_id() == id)
        {
            let old_ip = *self.buckets[b][i].addr.ip();
            if record.seq() >= self.buckets[b][i].record.seq() && addr != self.buckets[b][i].addr {
                if old_ip != *addr.ip() && !self.ip_allowed(b, *addr.ip()) {
                    return Insert::IpLimit;
                }
                self.release_ip(old_ip);
                self.take_ip(*addr.ip());
                self.buckets[b][i].addr = addr;
            }
            let e = &mut self.buckets[b][i];
            if record.seq() >= e.record.seq() {
                e.record = record;
            }
            e.verified |= verified;
            e.bootstrap |= bootstrap;
            return Insert::Updated;
        }
        if !self.ip_allowed(b, *addr.ip()) {
            return Insert::IpLimit;
        }
        if self.buckets[b].len() >= K {
            // Make room only by dropping a node that stopped answering, or one never heard
            // from in favour of one that answered.
            let victim = self.buckets[b]
                .iter()
                .position(|e| !e.bootstrap && (e.failures > 0 || (verified && !e.verified)));
            match victim {
                Some(i) => {
                    let old = self.buckets[b].remove(i);
                    self.release_ip(*old.addr.ip());
                }
                None => return Insert::BucketFull,
            }
        }
        self.take_ip(*addr.ip());
        self.buckets[b].push(Entry {
            record,
            addr,
            verified,
            failures: 0,
            bootstrap,
            last_seen: verified.then(Instant::now),
        });
        Insert::Added
    }

    fn ip_allowed(&self, bucket: usize, ip: Ipv4Addr) -> bool {
        if ip.is_loopback() {
            return true;
        }
        let in_bucket = self.buckets[bucket]
            .iter()
            .filter(|e| *e.addr.ip() == ip)
            .count();
        in_bucket < self.limits.per_bucket
            && self.ips.get(&ip).copied().unwrap_or(0) < self.limits.per_table
    }

    fn take_ip(&mut self, ip: Ipv4Addr) {
        *self.ips.entry(ip).or_insert(0) += 1;
    }

    fn release_ip(&mut self, ip: Ipv4Addr) {
        if let Some(n) = self.ips.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.ips.remove(&ip);
            }
        }
    }

    /// The entry for `id`.
    pub fn get(&self, id: &NodeId) -> Option<&Entry> {
        let b = self.bucket_of(id)?;
        self.buckets[b].iter().find(|e| e.record.node_id() == *id)
    }

    /// Notes an answer from `id`.
    pub fn answered(&mut self, id: &NodeId) {
        if let Some(e) = self.get_mut(id) {
            e.verified = true;
            e.failures = 0;
            e.last_seen = Some(Instant::now());
        }
    }

    /// Notes a failed request to `id`; drops it after [`MAX_FAILURES`] in a row.
    pub fn failed(&mut self, id: &NodeId) {
        let Some(b) = self.bucket_of(id) else { return };
        let Some(i) = self.buckets[b]
            .iter()
            .position(|e| e.record.node_id() == *id)
        else {
            return;
        };
        let e = &mut self.buckets[b][i];
        e.failures = e.failures.saturating_add(1);
        if e.failures >= MAX_FAILURES && !e.bootstrap {
            let old = self.buckets[b].remove(i);
            self.release_ip(*old.addr.ip());
        }
    }

    fn get_mut(&mut self, id: &NodeId) -> Option<&mut Entry> {
        let b = self.bucket_of(id)?;
        self.buckets[b]
            .iter_mut()
            .find(|e| e.record.node_id() == *id)
    }

    /// Up to `n` nodes closest to `target`, closest first.
    pub fn closest(&self, target: &NodeId, n: usize, verified_only: bool) -> Vec<Entry> {
        let mut all: Vec<&Entry> = self
            .buckets
            .iter()
            .flatten()
            .filter(|e| e.verified || !verified_only)
            .collect();
        all.sort_by_key(|e| e.record.node_id().distance(target));
        all.into_iter().take(n).cloned().collect()
    }

    /// Up to `n` nodes at the given log distances from us (FINDNODE), in the order asked.
    pub fn at_distances(&self, distances: &[u16], n: usize, verified_only: bool) -> Vec<Entry> {
        let mut out = Vec::new();
        for d in distances {
            let Some(b) = usize::from(*d).checked_sub(1).filter(|b| *b < 256) else {
                continue;
            };
            for e in &self.buckets[b] {
                if out.len() == n {
                    return out;
                }
                if e.verified || !verified_only {
                    out.push(e.clone());
                }
            }
        }
        out
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.buckets.iter().map(Vec::len).sum()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All entries, nearest buckets first.
    pub fn entries(&self) -> Vec<Entry> {
        self.buckets.iter().flatten().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::identity::Keypair;

    fn record(ip: &str, port: u16) -> Spr {
        let addr = format!("/ip4/{ip}/udp/{port}").parse().unwrap();
        Spr::create(&Keypair::generate_secp256k1(), vec![addr]).unwrap()
    }

    fn table() -> RoutingTable {
        RoutingTable::new(
            NodeId([0; 32]),
            IpLimits {
                per_bucket: 2,
                per_table: 10,
            },
        )
    }

    #[test]
    fn inserts_finds_and_sorts_by_distance() {
        let mut t = table();
        let records: Vec<Spr> = (0..40).map(|i| record("127.0.0.1", 1000 + i)).collect();
        for r in &records {
            assert!(matches!(
                t.insert(r.clone(), false, false),
                Insert::Added | Insert::BucketFull
            ));
        }
        assert_eq!(t.insert(records[0].clone(), true, false), Insert::Updated);
        assert!(t.get(&records[0].node_id()).unwrap().verified);
        let target = records[5].node_id();
        if t.get(&target).is_some() {
            assert_eq!(t.closest(&target, 1, false)[0].record.node_id(), target);
        }
        let closest = t.closest(&NodeId([0; 32]), 5, false);
        for w in closest.windows(2) {
            assert!(w[0].record.node_id().0 <= w[1].record.node_id().0);
        }
        assert_eq!(t.closest(&target, 100, true).len(), 1);
    }

    #[test]
    fn full_buckets_keep_working_nodes() {
        let mut t = table();
        // About half of all ids fall into bucket 256: fill it.
        let mut far = Vec::new();
        while far.len() <= K {
            let r = record("127.0.0.1", 2000);
            if NodeId([0; 32]).log_distance(&r.node_id()) == 256 {
                far.push(r);
            }
        }
        for r in &far[..K] {
            assert_eq!(t.insert(r.clone(), true, false), Insert::Added);
        }
        assert_eq!(t.insert(far[K].clone(), true, false), Insert::BucketFull);
        t.failed(&far[0].node_id());
        assert_eq!(t.insert(far[K].clone(), true, false), Insert::Added);
        for _ in 0..MAX_FAILURES {
            t.failed(&far[1].node_id());
        }
        assert!(t.get(&far[1].node_id()).is_none());
    }

    #[test]
    fn ip_quotas_apply_except_on_loopback() {
        let mut t = table();
        let mut added = 0;
        for i in 0..50 {
            if t.insert(record("10.0.0.1", 3000 + i), false, false) == Insert::Added {
                added += 1;
            }
        }
        assert!(added <= 10);
        assert_eq!(t.insert(record("10.0.0.2", 1), false, false), Insert::Added);
        let local = RoutingTable::new(
            NodeId([0; 32]),
            IpLimits {
                per_bucket: 2,
                per_table: 10,
            },
        );
        let mut local = local;
        let n = (0..30)
            .filter(|i| local.insert(record("127.0.0.1", 4000 + i), false, false) == Insert::Added)
            .count();
        assert!(n > 10);
    }

    #[test]
    fn at_distances_reads_the_buckets_asked_for() {
        let mut t = table();
        let records: Vec<Spr> = (0..20).map(|i| record("127.0.0.1", 5000 + i)).collect();
        for r in &records {
            t.insert(r.clone(), true, false);
        }
        let got = t.at_distances(&[256], 16, true);
        assert!(got
            .iter()
            .all(|e| NodeId([0; 32]).log_distance(&e.record.node_id()) == 256));
        assert!(t.at_distances(&[0, 300], 16, false).is_empty());
    }
}
