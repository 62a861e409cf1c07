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
//! Other peers' records are checked and bounded, since anyone may send them: the key must be a
//! sha2-256 multihash (nothing else is ever looked up), a record keeps at most [`MAX_RECORD_ADDRS`]
//! addresses, one provider holds at most `max_per_provider` records, and one key takes at most
//! [`MAX_PER_HOST_PER_KEY`] providers that announce the same IP address, so identities made by
//! the dozen on one host cannot fill a new CID's slots before its honest providers.
//!
//! [`sweep`]: ProviderStore::sweep

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Instant;

use libp2p::kad::store::{Error, RecordStore, Result};
use libp2p::kad::{ProviderRecord, Record, RecordKey};
use libp2p::{Multiaddr, PeerId};

use crate::network::net::ip_limits::ip_of;

/// Addresses kept per foreign record (its first ones).
pub(crate) const MAX_RECORD_ADDRS: usize = 8;
/// Providers of one key that may share an IP address (or have none).
pub(crate) const MAX_PER_HOST_PER_KEY: usize = 2;

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
    /// Records kept for one other provider, over all keys.
    pub max_per_provider: usize,
}

/// Provider records in memory; see the module doc.
pub(crate) struct ProviderStore {
    local: PeerId,
    limits: StoreLimits,
    own: HashMap<RecordKey, ProviderRecord>,
    foreign: HashMap<RecordKey, Vec<ProviderRecord>>,
    foreign_count: usize,
    /// Foreign records held per provider.
    per_provider: HashMap<PeerId, usize>,
    /// Foreign records refused (bad key, over a quota), for the counters.
    refused: u64,
}

/// The host a record announces: the IP of its first address.
fn host_of(addrs: &[Multiaddr]) -> Option<std::net::IpAddr> {
    addrs.first().and_then(ip_of)
}

/// True for a key that is exactly one sha2-256 multihash, the only kind a Codex CID has.
fn is_multihash_key(key: &RecordKey) -> bool {
    let bytes = key.as_ref();
    cid::multihash::Multihash::<64>::from_bytes(bytes)
        .is_ok_and(|m| m.code() == 0x12 && m.size() == 32 && m.encoded_len() == bytes.len())
}

impl ProviderStore {
    pub(crate) fn new(local: PeerId, limits: StoreLimits) -> Self {
        ProviderStore {
            local,
            limits,
            own: HashMap::new(),
            foreign: HashMap::new(),
            foreign_count: 0,
            per_provider: HashMap::new(),
            refused: 0,
        }
    }

    /// Foreign records refused so far.
    pub(crate) fn refused(&self) -> u64 {
        self.refused
    }

    fn count_down(&mut self, provider: &PeerId, n: usize) {
        if let Some(c) = self.per_provider.get_mut(provider) {
            *c = c.saturating_sub(n);
            if *c == 0 {
                self.per_provider.remove(provider);
            }
        }
    }

    /// Drops other peers' expired records.
    pub(crate) fn sweep(&mut self, now: Instant) {
        let mut count = 0;
        let mut per_provider: HashMap<PeerId, usize> = HashMap::new();
        self.foreign.retain(|_, records| {
            records.retain(|r| !r.is_expired(now));
            count += records.len();
            for r in records.iter() {
                *per_provider.entry(r.provider).or_default() += 1;
            }
            !records.is_empty()
        });
        self.foreign_count = count;
        self.per_provider = per_provider;
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
        if !is_multihash_key(&record.key) {
            self.refused += 1;
            return Err(Error::MaxRecords);
        }
        let mut record = record;
        record.addresses.truncate(MAX_RECORD_ADDRS);
        if let Some(records) = self.foreign.get_mut(&record.key) {
            if let Some(old) = records.iter_mut().find(|r| r.provider == record.provider) {
                *old = record; // a re-announcement renews the expiry and addresses
                return Ok(());
            }
            let host = host_of(&record.addresses);
            let same_host = records
                .iter()
                .filter(|r| host_of(&r.addresses) == host)
                .count();
            if records.len() >= self.limits.max_per_key || same_host >= MAX_PER_HOST_PER_KEY {
                self.refused += 1;
                return Ok(()); // full: ignored, as libp2p's own store does
            }
        }
        let held = self
            .per_provider
            .get(&record.provider)
            .copied()
            .unwrap_or(0);
        if held >= self.limits.max_per_provider {
            self.refused += 1;
            return Err(Error::MaxProvidedKeys);
        }
        if self.foreign_count >= self.limits.max_foreign_records {
            self.sweep(Instant::now());
            if self.foreign_count >= self.limits.max_foreign_records {
                self.refused += 1;
                return Err(Error::MaxProvidedKeys);
            }
        }
        *self.per_provider.entry(record.provider).or_default() += 1;
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
            let gone = before - records.len();
            self.foreign_count -= gone;
            if records.is_empty() {
                self.foreign.remove(key);
            }
            self.count_down(provider, gone);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A key (a CID's multihash) made from `name`.
    fn key(name: &[u8]) -> RecordKey {
        use crate::format::cid::{cid_from_digest, sha256, MANIFEST_CODEC};
        RecordKey::new(
            &cid_from_digest(MANIFEST_CODEC, &sha256(name))
                .hash()
                .to_bytes(),
        )
    }

    fn record(name: &[u8], provider: PeerId, ttl: Option<Duration>) -> ProviderRecord {
        ProviderRecord {
            key: key(name),
            provider,
            expires: ttl.map(|t| Instant::now() + t),
            addresses: vec![],
        }
    }

    const LIMITS: StoreLimits = StoreLimits {
        max_own_keys: 2,
        max_foreign_records: 3,
        max_per_key: 2,
        max_per_provider: 2,
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
        assert!(s.provides(&key(b"a")));
        assert_eq!(s.provided().count(), 2);
        s.remove_provider(&key(b"a"), &me);
        assert_eq!(s.provided().count(), 1);
        assert!(s.providers(&key(b"a")).is_empty());
    }

    #[test]
    fn expired_foreign_records_make_room_and_per_key_cap_holds() {
        let me = PeerId::random();
        let mut s = ProviderStore::new(me, LIMITS);
        let key = key(b"k");
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

#[cfg(test)]
mod hostile {
    use super::*;
    use crate::format::cid::{cid_from_digest, sha256, MANIFEST_CODEC};

    fn limits() -> StoreLimits {
        StoreLimits {
            max_own_keys: 16,
            max_foreign_records: 1000,
            max_per_key: 20,
            max_per_provider: 4,
        }
    }

    fn addr(ip: &str, port: u16) -> Multiaddr {
        format!("/ip4/{ip}/tcp/{port}").parse().expect("an address")
    }

    fn record(n: u32, provider: PeerId, addresses: Vec<Multiaddr>) -> ProviderRecord {
        let cid = cid_from_digest(MANIFEST_CODEC, &sha256(&n.to_be_bytes()));
        ProviderRecord {
            key: RecordKey::new(&cid.hash().to_bytes()),
            provider,
            expires: None,
            addresses,
        }
    }

    #[test]
    fn one_provider_cannot_fill_the_store() {
        let mut s = ProviderStore::new(PeerId::random(), limits());
        let flooder = PeerId::random();
        for n in 0..100 {
            let _ = s.add_provider(record(n, flooder, vec![addr("10.0.0.1", 1)]));
        }
        assert_eq!(s.foreign_records(), 4, "its quota");
        assert_eq!(s.refused(), 96);
        // Another provider still gets in.
        assert!(s
            .add_provider(record(7, PeerId::random(), vec![addr("10.0.0.2", 1)]))
            .is_ok());
        assert_eq!(s.foreign_records(), 5);
    }

    #[test]
    fn keys_that_are_no_multihash_are_refused_and_addresses_capped() {
        let mut s = ProviderStore::new(PeerId::random(), limits());
        let junk = ProviderRecord {
            key: RecordKey::new(&vec![7u8; 1000]),
            provider: PeerId::random(),
            expires: None,
            addresses: vec![],
        };
        assert!(s.add_provider(junk).is_err());
        let many: Vec<Multiaddr> = (0..100).map(|p| addr("10.0.0.3", p)).collect();
        let r = record(1, PeerId::random(), many);
        let key = r.key.clone();
        s.add_provider(r).expect("a multihash key");
        assert_eq!(s.providers(&key)[0].addresses.len(), MAX_RECORD_ADDRS);
    }

    #[test]
    fn identities_on_one_host_cannot_take_a_keys_slots() {
        let mut s = ProviderStore::new(PeerId::random(), limits());
        for _ in 0..20 {
            let _ = s.add_provider(record(9, PeerId::random(), vec![addr("10.0.0.66", 4)]));
        }
        let honest = PeerId::random();
        s.add_provider(record(9, honest, vec![addr("10.0.0.5", 4)]))
            .expect("room is left");
        let key = record(9, honest, vec![]).key;
        let providers: Vec<PeerId> = s.providers(&key).iter().map(|r| r.provider).collect();
        assert_eq!(providers.len(), MAX_PER_HOST_PER_KEY + 1);
        assert!(providers.contains(&honest));
    }
}
