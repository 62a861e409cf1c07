//! The provider store: which peers said they have the data of a key.
//!
//! Codex keeps providers 24 hours, at most 20 per key (codex-dht `MaxProvidersPerEntry`), in
//! LevelDB. This store is in memory and bounded in every direction, because anyone can send
//! ADD_PROVIDER for any key and keys cannot be checked (they are hashes of CIDs nobody may
//! have asked for yet):
//! - at most [`ProviderLimits::per_key`] providers per key, first come first kept (a flood of
//!   fake providers cannot push out the records already there), a provider's newer record
//!   replacing its older one;
//! - at most [`ProviderLimits::keys`] keys and [`ProviderLimits::records`] records in all;
//! - at most [`ProviderLimits::per_provider`] keys per providing peer, so one peer cannot
//!   fill the store alone;
//! - records expire after [`ProviderLimits::ttl`]; expired ones are swept when a bound is hit
//!   and on [`ProviderStore::sweep`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;

use super::node_id::NodeId;
use super::record::Spr;

/// Bounds of a [`ProviderStore`].
#[derive(Debug, Clone, Copy)]
pub struct ProviderLimits {
    /// Providers per key. Codex: 20.
    pub per_key: usize,
    /// Keys in all.
    pub keys: usize,
    /// Records in all.
    pub records: usize,
    /// Keys one peer may provide here.
    pub per_provider: usize,
    /// How long a record is kept. Codex: 24 h.
    pub ttl: Duration,
}

impl Default for ProviderLimits {
    fn default() -> Self {
        ProviderLimits {
            per_key: 20,
            keys: 65_536,
            records: 262_144,
            per_provider: 16_384,
            ttl: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// Why a provider record was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The key already has its share of providers.
    KeyFull,
    /// The store holds as many keys or records as allowed.
    StoreFull,
    /// The providing peer is over its quota.
    ProviderQuota,
}

struct Held {
    record: Spr,
    stored: Instant,
}

/// Provider records in memory; see the module doc.
pub struct ProviderStore {
    limits: ProviderLimits,
    by_key: HashMap<NodeId, Vec<Held>>,
    per_provider: HashMap<PeerId, usize>,
    records: usize,
}

impl ProviderStore {
    /// An empty store.
    pub fn new(limits: ProviderLimits) -> Self {
        ProviderStore {
            limits,
            by_key: HashMap::new(),
            per_provider: HashMap::new(),
            records: 0,
        }
    }

    /// Stores `record` as a provider of `key`.
    ///
    /// # Errors
    /// [`Refusal`] says which bound stopped it.
    pub fn add(&mut self, key: NodeId, record: Spr, now: Instant) -> Result<(), Refusal> {
        let peer = record.peer_id();
        if let Some(held) = self
            .by_key
            .get_mut(&key)
            .and_then(|v| v.iter_mut().find(|h| h.record.peer_id() == peer))
        {
            if record.seq() >= held.record.seq() {
                held.record = record;
            }
            held.stored = now;
            return Ok(());
        }
        let over = |s: &Self| {
            s.records >= s.limits.records
                || (!s.by_key.contains_key(&key) && s.by_key.len() >= s.limits.keys)
                || s.by_key
                    .get(&key)
                    .is_some_and(|v| v.len() >= s.limits.per_key)
                || s.per_provider.get(&peer).copied().unwrap_or(0) >= s.limits.per_provider
        };
        if over(self) {
            self.sweep(now);
        }
        if self
            .by_key
            .get(&key)
            .is_some_and(|v| v.len() >= self.limits.per_key)
        {
            return Err(Refusal::KeyFull);
        }
        if self.per_provider.get(&peer).copied().unwrap_or(0) >= self.limits.per_provider {
            return Err(Refusal::ProviderQuota);
        }
        if over(self) {
            return Err(Refusal::StoreFull);
        }
        self.by_key.entry(key).or_default().push(Held {
            record,
            stored: now,
        });
        *self.per_provider.entry(peer).or_insert(0) += 1;
        self.records += 1;
        Ok(())
    }

    /// The live providers of `key`.
    pub fn get(&self, key: &NodeId, now: Instant) -> Vec<Spr> {
        self.by_key
            .get(key)
            .map(|v| {
                v.iter()
                    .filter(|h| now.duration_since(h.stored) < self.limits.ttl)
                    .map(|h| h.record.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Drops expired records.
    pub fn sweep(&mut self, now: Instant) {
        let ttl = self.limits.ttl;
        let per_provider = &mut self.per_provider;
        let mut removed = 0;
        self.by_key.retain(|_, v| {
            v.retain(|h| {
                let live = now.duration_since(h.stored) < ttl;
                if !live {
                    removed += 1;
                    if let Some(n) = per_provider.get_mut(&h.record.peer_id()) {
                        *n = n.saturating_sub(1);
                    }
                }
                live
            });
            !v.is_empty()
        });
        per_provider.retain(|_, n| *n > 0);
        self.records -= removed;
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.records
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::identity::Keypair;

    fn record() -> Spr {
        let addr = "/ip4/127.0.0.1/tcp/4001".parse().unwrap();
        Spr::create(&Keypair::generate_secp256k1(), vec![addr]).unwrap()
    }

    #[test]
    fn keeps_twenty_per_key_first_come() {
        let now = Instant::now();
        let mut s = ProviderStore::new(ProviderLimits::default());
        let key = NodeId::keccak(b"k");
        let records: Vec<Spr> = (0..21).map(|_| record()).collect();
        for r in &records[..20] {
            s.add(key, r.clone(), now).unwrap();
        }
        assert_eq!(s.add(key, records[20].clone(), now), Err(Refusal::KeyFull));
        // A known provider may refresh.
        assert_eq!(s.add(key, records[0].clone(), now), Ok(()));
        assert_eq!(s.get(&key, now).len(), 20);
        assert_eq!(s.len(), 20);
    }

    #[test]
    fn records_expire_and_free_their_room() {
        let now = Instant::now();
        let limits = ProviderLimits {
            per_key: 1,
            ttl: Duration::from_secs(10),
            ..ProviderLimits::default()
        };
        let mut s = ProviderStore::new(limits);
        let key = NodeId::keccak(b"k");
        s.add(key, record(), now).unwrap();
        let later = now + Duration::from_secs(11);
        assert!(s.get(&key, later).is_empty());
        s.add(key, record(), later).unwrap();
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn one_provider_cannot_fill_the_store() {
        let now = Instant::now();
        let limits = ProviderLimits {
            per_provider: 3,
            keys: 5,
            ..ProviderLimits::default()
        };
        let mut s = ProviderStore::new(limits);
        let r = record();
        for i in 0..3u8 {
            s.add(NodeId::keccak(&[i]), r.clone(), now).unwrap();
        }
        assert_eq!(
            s.add(NodeId::keccak(&[9]), r, now),
            Err(Refusal::ProviderQuota)
        );
        for i in 10..12u8 {
            s.add(NodeId::keccak(&[i]), record(), now).unwrap();
        }
        assert_eq!(
            s.add(NodeId::keccak(&[20]), record(), now),
            Err(Refusal::StoreFull)
        );
    }
}
