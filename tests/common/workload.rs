//! Seeded test content and the ledger of what a node acknowledged.
//!
//! A [`FileSpec`] is a seed; the file's bytes, block CIDs, manifest CID and manifest size all
//! follow from it, so a checker can tell exactly what a node must hold. Files draw some of their
//! 64 KiB blocks from a small shared [`POOL`] (so datasets share blocks) and end in a block of
//! their own (so two seeds never give the same dataset).
//!
//! The [`Ledger`] records, per manifest CID, what the node last promised: a 200 upload keeps the
//! dataset until its expiry, a 204 delete removes it, and a request that got no answer (the node
//! was killed) leaves it [`State::Unknown`].

use std::collections::HashMap;

use codex_actors::{
    format::{
        cid::{block_cid, cid_from_digest, sha256, ROOT_CODEC},
        merkle,
    },
    Cid, Manifest,
};

/// Codex's block size.
pub const BLOCK: usize = 64 * 1024;
/// Distinct shared blocks.
pub const POOL: u64 = 24;
/// Most blocks of one file.
pub const MAX_BLOCKS: u64 = 70;

/// xorshift64*: a seeded generator, so a run can be repeated from its seed.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// `len` pseudo-random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// One file of the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileSpec {
    pub seed: u64,
}

/// What a node must answer for a [`FileSpec`].
#[derive(Debug, Clone)]
pub struct Expected {
    /// Manifest CID text.
    pub cid: String,
    /// File length in bytes.
    pub len: u64,
    /// CID of each padded block, in file order (shared blocks may repeat).
    pub blocks: Vec<Cid>,
    /// Size of the encoded manifest (what the manifest block takes of the quota).
    pub manifest_bytes: u64,
}

impl FileSpec {
    /// The file: `1..=MAX_BLOCKS` blocks; full blocks are shared (from the pool) or unique, the
    /// last one is unique and 1 to 65,536 bytes long.
    pub fn bytes(&self) -> Vec<u8> {
        let mut rng = Rng::new(self.seed);
        let blocks = 1 + rng.below(MAX_BLOCKS);
        let mut out = Vec::with_capacity(blocks as usize * BLOCK);
        for _ in 1..blocks {
            if rng.below(2) == 0 {
                out.extend(pool_block(rng.below(POOL)));
            } else {
                out.extend(Rng::new(rng.next()).bytes(BLOCK));
            }
        }
        let tail = 1 + rng.below(BLOCK as u64) as usize;
        out.extend(Rng::new(rng.next()).bytes(tail));
        out
    }

    pub fn expected(&self) -> Expected {
        expected_for(&self.bytes())
    }
}

/// Shared block `i` of the pool.
pub fn pool_block(i: u64) -> Vec<u8> {
    Rng::new(0xB10C_0000 + i).bytes(BLOCK)
}

/// Manifest CID, blocks and manifest size of uploading `data` without filename or MIME type.
pub fn expected_for(data: &[u8]) -> Expected {
    let padded: Vec<Vec<u8>> = data
        .chunks(BLOCK)
        .map(|c| {
            let mut b = c.to_vec();
            b.resize(BLOCK, 0);
            b
        })
        .collect();
    let digests: Vec<_> = padded.iter().map(|b| sha256(b)).collect();
    let root = merkle::root(&digests).unwrap_or_default();
    let manifest = Manifest::new(
        cid_from_digest(ROOT_CODEC, &root),
        data.len() as u64,
        BLOCK as u32,
        None,
        None,
    );
    Expected {
        cid: codex_actors::cid_text(&manifest.cid()),
        len: data.len() as u64,
        blocks: padded.iter().map(|b| block_cid(b)).collect(),
        manifest_bytes: manifest.encode().len() as u64,
    }
}

/// What the node promised about one dataset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum State {
    /// Upload answered 200: the dataset must exist while the clock is before `until` (unix
    /// seconds: request start + TTL, raised by later acknowledged uploads of the same content).
    Stored { until: f64 },
    /// Delete answered 204, or the dataset was seen absent after a restart: it must stay absent
    /// until an upload of the same content is acknowledged.
    Gone,
    /// A request got no answer: the dataset may exist or not, but if it does it must be intact.
    Unknown,
}

/// One dataset of the workload.
#[derive(Debug, Clone)]
pub struct Entry {
    pub spec: FileSpec,
    /// The client that owns it: all requests on one dataset come from one client, in order.
    pub owner: usize,
    pub expected: Expected,
    pub state: State,
    /// What happened to it, for failure reports ("cut 3, +1.25 s: upload → 200").
    pub history: Vec<String>,
}

/// Every dataset of the run, by manifest CID.
#[derive(Debug, Default)]
pub struct Ledger {
    pub entries: HashMap<String, Entry>,
    /// Answers that no cut explains (e.g. a 500), reported as failures.
    pub anomalies: Vec<String>,
    /// Uploads answered 200 and deletes answered 204 so far.
    pub uploads_acked: u64,
    pub deletes_acked: u64,
}

impl Ledger {
    /// The CIDs owned by client `owner`, sorted (a stable order for seeded picks).
    pub fn owned_by(&self, owner: usize) -> Vec<String> {
        let mut mine: Vec<(&String, u64)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.owner == owner)
            .map(|(cid, e)| (cid, e.spec.seed))
            .collect();
        mine.sort_by_key(|(cid, _)| (*cid).clone());
        mine.into_iter().map(|(cid, _)| cid.clone()).collect()
    }

    /// Counts of (stored, gone, unknown) entries.
    pub fn tally(&self) -> (usize, usize, usize) {
        let mut t = (0, 0, 0);
        for e in self.entries.values() {
            match e.state {
                State::Stored { .. } => t.0 += 1,
                State::Gone => t.1 += 1,
                State::Unknown => t.2 += 1,
            }
        }
        t
    }
}

/// Seconds since the Unix epoch, with fractions.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
