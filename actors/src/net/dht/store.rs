//! The Kademlia record store: provider records only, in memory, bounded.
//!
//! libp2p-kad's `MemoryStore` keeps our own provider records and other peers' in one map capped
//! by key count, and drops others' expired records only when someone asks for that key. A node
//! that receives announcements for many keys nobody looks up would fill that map with dead
//! records and then refuse to provide its own data. So this store keeps the two apart:
//! - our keys, capped at `max_own_keys` (providing more fails loudly);
//! - records other peers announced, capped at `max_foreign_records` in total and
//!   `max_per_key` per key; expired ones are swept when the cap is hit and on [`sweep`].
//!
//! Value records (`PUT_VALUE`) are not used by Codex-style content routing and are refused.
//!
//! [`sweep`]: ProviderStore::sweep

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Instant;

use libp2p::kad::store::{Error, RecordStore, Result};
use libp2p::kad::{ProviderRecord, Record, RecordKey};
use libp2p::PeerId;

/// Bounds of a [`ProviderStore`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct StoreLimits {
    /// Keys this node provides.
    pub max_own_keys: usize,
    /// Provider records held for other peers, over all keys.
    pub max_foreign_records: usize,
    /// Providers kept per key (the first ones win, so a flood of fake providers cannot push
    /// out the records already there).
    pub max_per_key: usize,
}

/// Provider records in memory; see the module doc.
pub(crate) struct ProviderStore {
    local: PeerId,
    limits: StoreLimits,
    own: HashMap<RecordKey, ProviderRecord>,
    foreign: HashMap<RecordKey, Vec<ProviderRecord>>,
    foreign_count: usize,
}

impl ProviderStore {
    pub(crate) fn new(local: PeerId, limits: StoreLimits) -> Self {
        ProviderStore {
            local,
            limits,
            own: HashMap::new(),
            foreign: HashMap::new(),
            foreign_count: 0,
        }
    }

    /// Drops other peers' expired records.
    pub(crate) fn sweep(&mut self, now: Instant) {
        let mut count = 0;
        self.foreign.retain(|_, records| {
            records.retain(|r| !r.is_expired(now));
            count += records.len();
            !records.is_empty()
        });
        self.foreign_count = count;
    }

    /// The keys we provide.
    pub(crate) fn own_keys(&self) -> impl Iterator<Item = RecordKey> + '_ {
        self.own.keys().cloned()
    }

    /// Whether we provide `key`.
    pub(crate) fn provides(&self, key: &RecordKey) -> bool {
        self.own.contains_key(key)
    }

    /// Number of records held for other peers.
    pub(crate) fn foreign_records(&self) -> usize {
        self.foreign_count
    }
}

impl RecordStore for ProviderStore {
    type RecordsIter<'a> = std::iter::Empty<Cow<'a, Record>>;
    type ProvidedIter<'a> = std::iter::Map<
        std::collections::hash_map::Values<'a, RecordKey, ProviderRecord>,
        fn(&'a ProviderRecord) -> Cow<'a, ProviderRecord>,
    >;

    fn get(&self, _: &RecordKey) -> Option<Cow<'_, Record>> {
        None
    }

    fn put(&mut self, _: Record) -> Result<()> {
        Err(Error::MaxRecords)
    }

    fn remove(&mut self, _: &RecordKey) {}

    fn records(&self) -> Self::RecordsIter<'_> {
        std::iter::empty()
    }

    fn add_provider(&mut self, record: ProviderRecord) -> Result<()> {
        if record.provider == self.local {
            if !self.own.contains_key(&record.key) && self.own.len() >= self.limits.max_own_keys {
                return Err(Error::MaxProvidedKeys);
            }
            self.own.insert(record.key.clone(), record);
            return Ok(());
        }
        if let Some(records) = self.foreign.get_mut(&record.key) {
            if let Some(old) = records.iter_mut().find(|r| r.provider == record.provider) {
                *old = record; // a re-announcement renews the expiry and addresses
                return Ok(());
            }
            if records.len() >= self.limits.max_per_key {
                return Ok(()); // full: ignored, as libp2p's own store does
            }
        }
        if self.foreign_count >= self.limits.max_foreign_records {
            self.sweep(Instant::now());
            if self.foreign_count >= self.limits.max_foreign_records {
                return Err(Error::MaxProvidedKeys);
            }
        }
        self.foreign
            .entry(record.key.clone())
            .or_default()
            .push(record);
        self.foreign_count += 1;
        Ok(())
    }

    fn providers(&self, key: &RecordKey) -> Vec<ProviderRecord> {
        let own = self.own.get(key).cloned();
        let foreign = self.foreign.get(key).into_iter().flatten().cloned();
        own.into_iter().chain(foreign).collect()
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        self.own.values().map(Cow::Borrowed)
    }

    fn remove_provider(&mut self, key: &RecordKey, provider: &PeerId) {
        if *provider == self.local {
            self.own.remove(key);
            return;
        }
        if let Some(records) = self.foreign.get_mut(key) {
            let before = records.len();
            records.retain(|r| r.provider != *provider);
            self.foreign_count -= before - records.len();
            if records.is_empty() {
                self.foreign.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn record(key: &[u8], provider: PeerId, ttl: Option<Duration>) -> ProviderRecord {
        ProviderRecord {
            key: RecordKey::new(&key),
            provider,
            expires: ttl.map(|t| Instant::now() + t),
            addresses: vec![],
        }
    }

    const LIMITS: StoreLimits = StoreLimits {
        max_own_keys: 2,
        max_foreign_records: 3,
        max_per_key: 2,
    };

    #[test]
    fn own_keys_are_capped_and_kept_apart_from_foreign_ones() {
        let me = PeerId::random();
        let mut s = ProviderStore::new(me, LIMITS);
        s.add_provider(record(b"a", me, None)).expect("first");
        s.add_provider(record(b"b", me, None)).expect("second");
        s.add_provider(record(b"a", me, None))
            .expect("again is an update");
        assert!(matches!(
            s.add_provider(record(b"c", me, None)),
            Err(Error::MaxProvidedKeys)
        ));
        // Foreign records fill their own budget, never ours.
        for k in [b"x", b"y", b"z"] {
            s.add_provider(record(k, PeerId::random(), None))
                .expect("foreign");
        }
        assert!(s
            .add_provider(record(b"w", PeerId::random(), None))
            .is_err());
        assert_eq!((s.own_keys().count(), s.foreign_records()), (2, 3));
        assert!(s.provides(&RecordKey::new(b"a")));
        assert_eq!(s.provided().count(), 2);
        s.remove_provider(&RecordKey::new(b"a"), &me);
        assert_eq!(s.provided().count(), 1);
        assert!(s.providers(&RecordKey::new(b"a")).is_empty());
    }

    #[test]
    fn expired_foreign_records_make_room_and_per_key_cap_holds() {
        let me = PeerId::random();
        let mut s = ProviderStore::new(me, LIMITS);
        let key = RecordKey::new(b"k");
        let (p1, p2) = (PeerId::random(), PeerId::random());
        s.add_provider(record(b"k", p1, Some(Duration::ZERO)))
            .expect("p1");
        s.add_provider(record(b"k", p2, None)).expect("p2");
        s.add_provider(record(b"k", PeerId::random(), None))
            .expect("ignored");
        assert_eq!(s.providers(&key).len(), 2);
        s.add_provider(record(b"j", PeerId::random(), None))
            .expect("third record");
        // Full: the expired p1 record is swept to make room.
        s.add_provider(record(b"i", PeerId::random(), None))
            .expect("after sweep");
        let left: Vec<_> = s.providers(&key).into_iter().map(|r| r.provider).collect();
        assert_eq!(left, vec![p2]);
        s.remove_provider(&key, &p2);
        assert_eq!(s.foreign_records(), 2);
        assert!(s.put(Record::new(key, vec![1])).is_err());
        assert_eq!(s.records().count(), 0);
    }
}
