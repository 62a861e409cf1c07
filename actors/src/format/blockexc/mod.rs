//! The `/codex/blockexc/1.0.0` messages: the protobuf layout Codex really writes, and a typed,
//! validated layer on top.
//!
//! The layout is the one of nim-codex's hand-written `message.nim`, not of its stale
//! `message.proto` (which still shows bitswap's `Block{prefix,data}`). [`wire`] holds it as prost
//! structs, field for field; [`Message`] and friends are what the rest of the engine uses.
//!
//! Decoding refuses what Codex would choke on or what cannot be right: enum and bool values other
//! than 0/1 (Nim casts the integer straight into its enum and a stray value is a crash there),
//! CIDs that do not parse, leaf and non-leaf address fields mixed, a delivery whose data does not
//! hash to its CID (Codex fails the whole message for that too), malformed proofs, prices over
//! 256 bits. It tolerates Codex's default-value habits: an empty want list, `pendingBytes = 0`
//! and the empty account/payment submessages 6 and 7.
//!
//! Encoding writes only what the typed values allow, so 0/1 are the only enum values ever sent,
//! and it always writes a delivery's data field (Nim builds the block only when the field is
//! present, so an empty block must still carry it).

use std::fmt;

use bytes::Bytes;
use cid::Cid;
use prost::Message as _;

use crate::format::cid::{
    digest_of, verify as data_matches, BLOCK_CODEC, MANIFEST_CODEC, ROOT_CODEC,
};
use crate::format::merkle::{self, CodexProof, ProofError};

/// The price Codex attaches to every presence: a UInt256 of zero, as 32 big-endian bytes.
pub const ZERO_PRICE: [u8; 32] = [0; 32];

/// The raw protobuf layout, field for field as nim-codex's `message.nim` writes it. Scalars are
/// proto2 `optional` so that a value on the wire can be told from an absent one (and be
/// validated), and so that an explicit zero is sent where Codex needs one.
pub mod wire;

/// What a want asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WantType {
    /// Send the block (wire value 0).
    Block,
    /// Say whether you have it (wire value 1).
    Have,
}

/// A presence answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PresenceType {
    /// The sender has the block (wire value 0).
    Have,
    /// The sender lacks it (wire value 1). Codex reads every presence as Have, so never send this
    /// to a Codex node: it would then ask us for the block.
    DontHave,
}

/// Where a block sits: a standalone CID (manifests) or leaf `index` of the tree `tree`.
/// Ordered by tree, then leaf: requests sent in that order are read in long runs by the peer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BlockAddress {
    /// Leaf `index` of the dataset whose Merkle root is `tree` (a `codex-root` CID).
    Leaf {
        /// The tree CID.
        tree: Cid,
        /// The leaf position, from 0.
        index: u64,
    },
    /// A block named by its own CID.
    Cid(Cid),
}

/// As a person reads it: `leaf 188 of tree zDz…` or the block's CID, in Codex's text form.
impl fmt::Display for BlockAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockAddress::Leaf { tree, index } => {
                write!(
                    f,
                    "leaf {index} of tree {}",
                    crate::format::cid::cid_text(tree)
                )
            }
            BlockAddress::Cid(cid) => write!(f, "block {}", crate::format::cid::cid_text(cid)),
        }
    }
}

/// One want-list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantEntry {
    /// What is wanted.
    pub address: BlockAddress,
    /// Codex always sends 0 and ignores it.
    pub priority: i32,
    /// True to revoke an earlier want.
    pub cancel: bool,
    /// Block or presence.
    pub want_type: WantType,
    /// Whether a DontHave answer is wanted.
    pub send_dont_have: bool,
}

/// A want list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wantlist {
    /// The entries.
    pub entries: Vec<WantEntry>,
    /// Whether this is the sender's complete list.
    pub full: bool,
}

/// One delivered block. Decoding has checked that `data` hashes to `cid`; whether the block
/// answers `address` (and its proof checks out) is [`BlockDelivery::is_authentic`].
#[derive(Clone, PartialEq, Eq)]
pub struct BlockDelivery {
    /// The block's CID.
    pub cid: Cid,
    /// The block bytes.
    pub data: Bytes,
    /// The want this answers.
    pub address: BlockAddress,
    /// For a leaf address: the proof that `cid` is that leaf of the tree.
    pub proof: Option<CodexProof>,
}

/// A Have / DontHave answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockPresence {
    /// The block.
    pub address: BlockAddress,
    /// Have or DontHave.
    pub presence: PresenceType,
    /// UInt256 big-endian, at most 32 bytes.
    pub price: Vec<u8>,
}

/// One `/codex/blockexc/1.0.0` message. Payment fields 6/7 are dormant in Codex and dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// Wants; empty when the message carries none.
    pub wantlist: Wantlist,
    /// Blocks.
    pub deliveries: Vec<BlockDelivery>,
    /// Presence answers.
    pub presences: Vec<BlockPresence>,
}

/// Why bytes from a peer are not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Not protobuf, or a field with the wrong wire type.
    #[error("invalid protobuf: {0}")]
    Protobuf(String),
    /// A required field is absent.
    #[error("missing field {0}")]
    Missing(&'static str),
    /// An enum or bool field outside 0..=1 (Codex would crash on it).
    #[error("field {field} has value {value}, only 0 or 1 are allowed")]
    OutOfRange {
        /// Which field.
        field: &'static str,
        /// What it held.
        value: u64,
    },
    /// Bytes that are not exactly one CID.
    #[error("field {0} is not a CID")]
    Cid(&'static str),
    /// Leaf and standalone address fields mixed, or a leaf index too large for Codex.
    #[error("inconsistent block address: {0}")]
    Address(&'static str),
    /// Delivered data that does not hash to its CID.
    #[error("delivered data does not match its CID")]
    DataMismatch,
    /// A proof that cannot be decoded.
    #[error("bad proof: {0}")]
    Proof(#[from] ProofError),
    /// A price over 256 bits.
    #[error("price of {0} bytes, at most 32 allowed")]
    Price(usize),
    /// More list entries (wants or presences) or blocks in one message than Codex ever sends.
    #[error("{what}: {count} entries, at most {max} allowed")]
    TooMany {
        /// Which list.
        what: &'static str,
        /// How many it held.
        count: usize,
        /// Our limit.
        max: usize,
    },
    /// An address no Codex block can have: not CIDv1, not sha2-256, or a codec that is not
    /// codex-block / codex-manifest (a standalone block) or codex-root (a tree).
    #[error("{0} is not a Codex block address")]
    NotCodex(&'static str),
}

/// Most want-list entries, and most presences, in one message: Codex sends at most 1024 of each
/// (`MaxWantListBatchSize`), so a longer list is a peer that does not play by Codex's rules, and
/// it is refused before any of it is acted upon.
pub const MAX_MESSAGE_ENTRIES: usize = 1024;
/// Most blocks in one delivery message: Codex sends 20 at most; a frame's size bounds the rest,
/// this bounds the per-block work of one message.
pub const MAX_MESSAGE_BLOCKS: usize = 64;

impl fmt::Debug for BlockDelivery {
    // Blocks are 64 KiB; logs get their length, never their bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockDelivery")
            .field("cid", &self.cid)
            .field("data_len", &self.data.len())
            .field("address", &self.address)
            .field("proof", &self.proof.as_ref().map(|p| (p.index, p.nleaves)))
            .finish()
    }
}

impl WantEntry {
    /// A plain want (priority 0, no cancel, no DontHave asked), as Codex sends them.
    pub fn new(address: BlockAddress, want_type: WantType) -> Self {
        WantEntry {
            address,
            priority: 0,
            cancel: false,
            want_type,
            send_dont_have: false,
        }
    }
}

impl BlockPresence {
    /// "I have it", with the zero price Codex sends.
    pub fn have(address: BlockAddress) -> Self {
        BlockPresence {
            address,
            presence: PresenceType::Have,
            price: ZERO_PRICE.to_vec(),
        }
    }
}

impl BlockDelivery {
    /// True when this block really is what `address` names: for a CID address the CIDs are
    /// equal; for a leaf the proof is for that index and leads from the block's digest to the
    /// tree CID's digest. (Codex only checks that its proof verification did not fail; this
    /// checks the answer.)
    pub fn is_authentic(&self) -> bool {
        match &self.address {
            BlockAddress::Cid(cid) => *cid == self.cid,
            BlockAddress::Leaf { tree, index } => {
                let (Some(proof), Some(leaf), Some(root)) =
                    (&self.proof, digest_of(&self.cid), digest_of(tree))
                else {
                    return false;
                };
                // A leaf is a data block: the same bytes under another codec are not what the
                // tree names, and would never be stored as its leaf.
                self.cid.codec() == BLOCK_CODEC
                    && proof.index == *index
                    && merkle::verify(proof, &leaf, &root)
            }
        }
    }
}

impl Message {
    /// Encodes for the wire (without the length prefix).
    pub fn encode(&self) -> Vec<u8> {
        self.to_wire().encode_to_vec()
    }

    /// The prost form of this message.
    pub fn to_wire(&self) -> wire::Message {
        let wl = &self.wantlist;
        let wantlist = (!wl.entries.is_empty() || wl.full).then(|| wire::Wantlist {
            entries: wl.entries.iter().map(entry_to_wire).collect(),
            full: Some(u64::from(wl.full)),
        });
        wire::Message {
            wantlist,
            payload: self.deliveries.iter().map(delivery_to_wire).collect(),
            block_presences: self.presences.iter().map(presence_to_wire).collect(),
            pending_bytes: None,
            account: None,
            payment: None,
        }
    }

    /// Decodes and validates one frame's bytes. Taking `Bytes` lets block data share the frame's
    /// buffer instead of being copied.
    ///
    /// # Errors
    /// [`WireError`] for the first thing that is wrong; the whole message is refused, as Codex
    /// does.
    pub fn decode(frame: Bytes) -> Result<Self, WireError> {
        let pb = wire::Message::decode(frame).map_err(|e| WireError::Protobuf(e.to_string()))?;
        Self::from_wire(pb)
    }

    /// Validates a prost message.
    ///
    /// # Errors
    /// As [`Message::decode`].
    pub fn from_wire(pb: wire::Message) -> Result<Self, WireError> {
        let wantlist = match pb.wantlist {
            None => Wantlist::default(),
            Some(w) => Wantlist {
                entries: at_most("Wantlist.entries", w.entries, MAX_MESSAGE_ENTRIES)?
                    .map(entry_from_wire)
                    .collect::<Result<_, _>>()?,
                full: flag("Wantlist.full", w.full)?,
            },
        };
        let deliveries = at_most("payload", pb.payload, MAX_MESSAGE_BLOCKS)?
            .map(delivery_from_wire)
            .collect::<Result<_, _>>()?;
        let presences = at_most("blockPresences", pb.block_presences, MAX_MESSAGE_ENTRIES)?
            .map(presence_from_wire)
            .collect::<Result<_, _>>()?;
        Ok(Message {
            wantlist,
            deliveries,
            presences,
        })
    }
}

/// `list`, iterated, when it has at most `max` items.
fn at_most<T>(
    what: &'static str,
    list: Vec<T>,
    max: usize,
) -> Result<std::vec::IntoIter<T>, WireError> {
    if list.len() > max {
        return Err(WireError::TooMany {
            what,
            count: list.len(),
            max,
        });
    }
    Ok(list.into_iter())
}

/// True when `cid` can name something a Codex node stores under `codecs`: CIDv1 with a 32-byte
/// sha2-256 digest. Identity hashes, CIDv0 and foreign codecs are never real block addresses,
/// and cost nothing to forge.
fn is_codex(cid: &Cid, codecs: &[u64]) -> bool {
    cid.version() == cid::Version::V1 && codecs.contains(&cid.codec()) && digest_of(cid).is_some()
}

/// A 0/1 varint; absent reads as 0, as in Nim.
fn flag(field: &'static str, v: Option<u64>) -> Result<bool, WireError> {
    match v.unwrap_or(0) {
        0 => Ok(false),
        1 => Ok(true),
        value => Err(WireError::OutOfRange { field, value }),
    }
}

/// Exactly one binary CID, nothing after it.
fn cid_field(field: &'static str, bytes: Option<Vec<u8>>) -> Result<Cid, WireError> {
    let bytes = bytes.ok_or(WireError::Missing(field))?;
    let cid = Cid::try_from(bytes.as_slice()).map_err(|_| WireError::Cid(field))?;
    if cid.encoded_len() != bytes.len() {
        return Err(WireError::Cid(field));
    }
    Ok(cid)
}

fn address_to_wire(a: &BlockAddress) -> wire::BlockAddress {
    match a {
        BlockAddress::Leaf { tree, index } => wire::BlockAddress {
            leaf: Some(1),
            tree_cid: Some(tree.to_bytes()),
            index: Some(*index),
            cid: None,
        },
        BlockAddress::Cid(cid) => wire::BlockAddress {
            leaf: Some(0),
            tree_cid: None,
            index: None,
            cid: Some(cid.to_bytes()),
        },
    }
}

fn address_from_wire(a: Option<wire::BlockAddress>) -> Result<BlockAddress, WireError> {
    let a = a.ok_or(WireError::Missing("address"))?;
    if flag("BlockAddress.leaf", a.leaf)? {
        if a.cid.is_some() {
            return Err(WireError::Address("a leaf address with a block CID"));
        }
        let index = a.index.unwrap_or(0);
        // Nim reads the index into a `Natural` (a non-negative int64); a larger one is a defect.
        if i64::try_from(index).is_err() {
            return Err(WireError::Address("leaf index beyond int64"));
        }
        let tree = cid_field("BlockAddress.treeCid", a.tree_cid)?;
        if !is_codex(&tree, &[ROOT_CODEC]) {
            return Err(WireError::NotCodex("BlockAddress.treeCid"));
        }
        Ok(BlockAddress::Leaf { tree, index })
    } else {
        if a.tree_cid.is_some() || a.index.is_some() {
            return Err(WireError::Address("a CID address with leaf fields"));
        }
        let cid = cid_field("BlockAddress.cid", a.cid)?;
        if !is_codex(&cid, &[BLOCK_CODEC, MANIFEST_CODEC]) {
            return Err(WireError::NotCodex("BlockAddress.cid"));
        }
        Ok(BlockAddress::Cid(cid))
    }
}

fn entry_to_wire(e: &WantEntry) -> wire::Entry {
    wire::Entry {
        address: Some(address_to_wire(&e.address)),
        priority: Some(e.priority),
        cancel: Some(u64::from(e.cancel)),
        want_type: Some(match e.want_type {
            WantType::Block => 0,
            WantType::Have => 1,
        }),
        send_dont_have: Some(u64::from(e.send_dont_have)),
    }
}

fn entry_from_wire(e: wire::Entry) -> Result<WantEntry, WireError> {
    Ok(WantEntry {
        address: address_from_wire(e.address)?,
        priority: e.priority.unwrap_or(0),
        cancel: flag("Entry.cancel", e.cancel)?,
        want_type: if flag("Entry.wantType", e.want_type)? {
            WantType::Have
        } else {
            WantType::Block
        },
        send_dont_have: flag("Entry.sendDontHave", e.send_dont_have)?,
    })
}

fn delivery_to_wire(d: &BlockDelivery) -> wire::BlockDelivery {
    let leaf = matches!(d.address, BlockAddress::Leaf { .. });
    wire::BlockDelivery {
        cid: Some(d.cid.to_bytes()),
        data: Some(d.data.clone()),
        address: Some(address_to_wire(&d.address)),
        proof: d.proof.as_ref().filter(|_| leaf).map(CodexProof::encode),
    }
}

fn delivery_from_wire(d: wire::BlockDelivery) -> Result<BlockDelivery, WireError> {
    let cid = cid_field("BlockDelivery.cid", d.cid)?;
    let data = d.data.ok_or(WireError::Missing("BlockDelivery.data"))?;
    if !data_matches(&cid, &data) {
        return Err(WireError::DataMismatch);
    }
    let address = address_from_wire(d.address)?;
    // Like Codex, a proof only means something next to a leaf address; elsewhere it is ignored.
    let proof = match (&address, d.proof) {
        (BlockAddress::Leaf { .. }, Some(p)) => Some(CodexProof::decode(&p)?),
        _ => None,
    };
    Ok(BlockDelivery {
        cid,
        data,
        address,
        proof,
    })
}

fn presence_to_wire(p: &BlockPresence) -> wire::BlockPresence {
    wire::BlockPresence {
        address: Some(address_to_wire(&p.address)),
        r#type: Some(match p.presence {
            PresenceType::Have => 0,
            PresenceType::DontHave => 1,
        }),
        price: Some(p.price.clone()),
    }
}

fn presence_from_wire(p: wire::BlockPresence) -> Result<BlockPresence, WireError> {
    let price = p.price.unwrap_or_default();
    if price.len() > ZERO_PRICE.len() {
        return Err(WireError::Price(price.len()));
    }
    Ok(BlockPresence {
        address: address_from_wire(p.address)?,
        presence: if flag("BlockPresence.type", p.r#type)? {
            PresenceType::DontHave
        } else {
            PresenceType::Have
        },
        price,
    })
}

#[cfg(test)]
mod limits_tests;
#[cfg(test)]
mod tests;
