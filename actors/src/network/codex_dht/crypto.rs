//! The handshake's cryptography: what discv5 v5.1 defines and the two places Codex differs.
//!
//! Unchanged from discv5 v5.1:
//! - ECDH on secp256k1 whose output is the *compressed shared point* (33 bytes), not only its
//!   x coordinate;
//! - HKDF-SHA256 with the WHOAREYOU's challenge data as salt and
//!   `"discovery v5 key agreement" ‖ id-A ‖ id-B` as info, giving the initiator key then the
//!   recipient key (16 bytes each);
//! - AES-128-GCM with a 12-byte nonce, the masking IV and unmasked header as associated data,
//!   and the 16-byte tag after the ciphertext.
//!
//! Codex's own (codex-dht `encoding.nim`):
//! - the ephemeral public key travels in libp2p's protobuf key encoding (37 bytes), and the
//!   id-signature covers those 37 bytes;
//! - the id-signature is `sha256("discovery v5 identity proof" ‖ challenge-data ‖ ephemeral key
//!   ‖ destination id)` signed with libp2p's secp256k1 `sign`, which hashes *again* with SHA-256
//!   and outputs DER (discv5 signs the first hash directly, 64 bytes compact).

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes128Gcm, KeyInit, Nonce};
use hkdf::Hkdf;
use k256::elliptic_curve::sec1::ToSec1Point;
use libp2p::identity::{secp256k1, Keypair, PublicKey};
use sha2::{Digest, Sha256};

use super::error::PacketError;
use super::node_id::NodeId;

/// AES-128 key length.
pub const KEY_LEN: usize = 16;
/// GCM nonce length.
pub const NONCE_LEN: usize = 12;
/// GCM tag length.
pub const TAG_LEN: usize = 16;

const KEY_AGREEMENT: &[u8] = b"discovery v5 key agreement";
const ID_PROOF: &[u8] = b"discovery v5 identity proof";

/// The two keys of a session, named from the handshake initiator's side.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SessionKeys {
    /// Encrypts what the initiator sends.
    pub initiator: [u8; KEY_LEN],
    /// Encrypts what the recipient sends.
    pub recipient: [u8; KEY_LEN],
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys(..)")
    }
}

/// ECDH as discv5 does it: the compressed encoding of `secret × public`.
pub fn ecdh(secret: &k256::SecretKey, public: &k256::PublicKey) -> [u8; 33] {
    let shared = (public.to_projective() * *secret.to_nonzero_scalar()).to_affine();
    let point = shared.to_sec1_point(true);
    let mut out = [0u8; 33];
    // A product of a valid point and a non-zero scalar on a prime-order curve is never the
    // identity, so the compressed encoding is always 33 bytes.
    let bytes = point.as_bytes();
    if bytes.len() == out.len() {
        out.copy_from_slice(bytes);
    }
    out
}

/// The session keys from a shared secret (module doc).
pub fn derive_keys(
    shared: &[u8; 33],
    challenge_data: &[u8],
    initiator: &NodeId,
    recipient: &NodeId,
) -> SessionKeys {
    let hk = Hkdf::<k256::sha2::Sha256>::new(Some(challenge_data), shared);
    let mut info = Vec::with_capacity(KEY_AGREEMENT.len() + 64);
    info.extend_from_slice(KEY_AGREEMENT);
    info.extend_from_slice(initiator.as_bytes());
    info.extend_from_slice(recipient.as_bytes());
    let mut okm = [0u8; 2 * KEY_LEN];
    // 32 bytes is far below HKDF-SHA256's limit of 255 × 32, so expand cannot fail.
    let _ = hk.expand(&info, &mut okm);
    let mut keys = SessionKeys {
        initiator: [0; KEY_LEN],
        recipient: [0; KEY_LEN],
    };
    keys.initiator.copy_from_slice(&okm[..KEY_LEN]);
    keys.recipient.copy_from_slice(&okm[KEY_LEN..]);
    keys
}

/// AES-128-GCM encryption; the tag follows the ciphertext.
pub fn encrypt(key: &[u8; KEY_LEN], nonce: &[u8; NONCE_LEN], plain: &[u8], ad: &[u8]) -> Vec<u8> {
    let cipher = Aes128Gcm::new(key.into());
    // Encryption fails only for inputs beyond GCM's 64 GiB limit; datagrams are far smaller.
    cipher
        .encrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: plain,
                aad: ad,
            },
        )
        .unwrap_or_default()
}

/// AES-128-GCM decryption and authentication.
///
/// # Errors
/// [`PacketError::Decrypt`] when the tag does not verify; [`PacketError::MessageLength`] when
/// there is not even a tag.
pub fn decrypt(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    sealed: &[u8],
    ad: &[u8],
) -> Result<Vec<u8>, PacketError> {
    if sealed.len() < TAG_LEN {
        return Err(PacketError::MessageLength);
    }
    let cipher = Aes128Gcm::new(key.into());
    cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: sealed,
                aad: ad,
            },
        )
        .map_err(|_| PacketError::Decrypt)
}

/// The first hash of the id-signature.
fn id_proof_hash(challenge_data: &[u8], ephemeral_key: &[u8], destination: &NodeId) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(ID_PROOF);
    h.update(challenge_data);
    h.update(ephemeral_key);
    h.update(destination.as_bytes());
    h.finalize().into()
}

/// Codex's id-signature over the handshake (module doc), DER-encoded.
///
/// # Errors
/// [`PacketError::IdSignature`] if `key` cannot sign (only non-secp256k1 keys).
pub fn sign_id(
    key: &Keypair,
    challenge_data: &[u8],
    ephemeral_key: &[u8],
    destination: &NodeId,
) -> Result<Vec<u8>, PacketError> {
    let hash = id_proof_hash(challenge_data, ephemeral_key, destination);
    // libp2p's secp256k1 sign hashes with SHA-256 again before ECDSA, as nim-libp2p's does.
    key.sign(&hash).map_err(|_| PacketError::IdSignature)
}

/// Checks an id-signature made by `signer`.
pub fn verify_id(
    signer: &secp256k1::PublicKey,
    signature: &[u8],
    challenge_data: &[u8],
    ephemeral_key: &[u8],
    destination: &NodeId,
) -> bool {
    let hash = id_proof_hash(challenge_data, ephemeral_key, destination);
    signer.verify(&hash, signature)
}

/// A fresh ephemeral key pair for one handshake.
pub struct Ephemeral {
    /// Its secret, for ECDH.
    pub secret: k256::SecretKey,
    /// Its public key in libp2p's protobuf encoding, as sent and signed.
    pub encoded: Vec<u8>,
}

impl Ephemeral {
    /// A new random key pair.
    ///
    /// # Errors
    /// [`PacketError::EphemeralKey`] if libp2p hands out a key k256 refuses (it cannot).
    pub fn generate() -> Result<Self, PacketError> {
        let pair = secp256k1::Keypair::generate();
        let encoded = PublicKey::from(pair.public().clone()).encode_protobuf();
        Ok(Ephemeral {
            secret: secret_of(pair.secret()).ok_or(PacketError::EphemeralKey)?,
            encoded,
        })
    }
}

/// A libp2p secp256k1 secret as a k256 secret (libp2p-identity already checked it is a valid
/// scalar, so this is `Some`).
pub fn secret_of(secret: &secp256k1::SecretKey) -> Option<k256::SecretKey> {
    k256::SecretKey::from_slice(&secret.to_bytes()).ok()
}

/// A libp2p secp256k1 public key as a k256 one.
pub fn public_of(public: &secp256k1::PublicKey) -> Option<k256::PublicKey> {
    k256::PublicKey::from_sec1_bytes(&public.to_bytes()).ok()
}

/// Reads an ephemeral key in libp2p's protobuf encoding.
///
/// # Errors
/// [`PacketError::EphemeralKey`] for anything but a secp256k1 public key.
pub fn decode_ephemeral(bytes: &[u8]) -> Result<k256::PublicKey, PacketError> {
    let key = PublicKey::try_decode_protobuf(bytes).map_err(|_| PacketError::EphemeralKey)?;
    let key = key
        .try_into_secp256k1()
        .map_err(|_| PacketError::EphemeralKey)?;
    public_of(&key).ok_or(PacketError::EphemeralKey)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::codex_dht::unhex;

    fn id(hex: &str) -> NodeId {
        NodeId::from_slice(&unhex(hex)).unwrap()
    }

    const CHALLENGE: &str = "000000000000000000000000000000006469736376350001010102030405060708090a0b0c00180102030405060708090a0b0c0d0e0f100000000000000000";

    /// discv5 wire test vectors: ECDH.
    #[test]
    fn ecdh_gives_the_compressed_shared_point() {
        let secret = k256::SecretKey::from_slice(&unhex(
            "fb757dc581730490a1d7a00deea65e9b1936924caaea8f44d476014856b68736",
        ))
        .unwrap();
        let public = k256::PublicKey::from_sec1_bytes(&unhex(
            "039961e4c2356d61bedb83052c115d311acb3a96f5777296dcf297351130266231",
        ))
        .unwrap();
        assert_eq!(
            ecdh(&secret, &public).to_vec(),
            unhex("033b11a2a1f214567e1537ce5e509ffd9b21373247f2a3ff6841f4976f53165e7e")
        );
    }

    /// discv5 wire test vectors: key derivation.
    #[test]
    fn key_derivation_matches_the_spec() {
        let eph = k256::SecretKey::from_slice(&unhex(
            "fb757dc581730490a1d7a00deea65e9b1936924caaea8f44d476014856b68736",
        ))
        .unwrap();
        let dest = k256::PublicKey::from_sec1_bytes(&unhex(
            "0317931e6e0840220642f230037d285d122bc59063221ef3226b1f403ddc69ca91",
        ))
        .unwrap();
        let keys = derive_keys(
            &ecdh(&eph, &dest),
            &unhex(CHALLENGE),
            &id("aaaa8419e9f49d0083561b48287df592939a8d19947d8c0ef88f2a4856a69fbb"),
            &id("bbbb9d047f0488c0b5a93c1c3f2d8bafc7c8ff337024a55434a0d0555de64db9"),
        );
        assert_eq!(
            keys.initiator.to_vec(),
            unhex("dccc82d81bd610f4f76d3ebe97a40571")
        );
        assert_eq!(
            keys.recipient.to_vec(),
            unhex("ac74bb8773749920b0d3a8881c173ec5")
        );
    }

    /// discv5 wire test vectors: encryption/decryption.
    #[test]
    fn gcm_matches_the_spec_and_rejects_tampering() {
        let key: [u8; 16] = unhex("9f2d77db7004bf8a1a85107ac686990b")
            .try_into()
            .unwrap();
        let nonce: [u8; 12] = unhex("27b5af763c446acd2749fe8e").try_into().unwrap();
        let ad = unhex("93a7400fa0d6a694ebc24d5cf570f65d04215b6ac00757875e3f3a5f42107903");
        let sealed = encrypt(&key, &nonce, &unhex("01c20101"), &ad);
        assert_eq!(sealed, unhex("a5d12a2d94b8ccb3ba55558229867dc13bfa3648"));
        assert_eq!(
            decrypt(&key, &nonce, &sealed, &ad).unwrap(),
            unhex("01c20101")
        );
        let mut bad = sealed.clone();
        bad[0] ^= 1;
        assert_eq!(decrypt(&key, &nonce, &bad, &ad), Err(PacketError::Decrypt));
        assert_eq!(
            decrypt(&key, &nonce, &sealed[..15], &ad),
            Err(PacketError::MessageLength)
        );
    }

    #[test]
    fn id_signature_is_der_over_a_double_hash() {
        let key = Keypair::generate_secp256k1();
        let public = key.public().try_into_secp256k1().unwrap();
        let eph = Ephemeral::generate().unwrap();
        assert_eq!(eph.encoded.len(), 37);
        assert_eq!(&eph.encoded[..4], &[0x08, 0x02, 0x12, 0x21]);
        let dest = NodeId::keccak(b"dest");
        let sig = sign_id(&key, &unhex(CHALLENGE), &eph.encoded, &dest).unwrap();
        assert_eq!(sig[0], 0x30, "DER");
        assert!(verify_id(
            &public,
            &sig,
            &unhex(CHALLENGE),
            &eph.encoded,
            &dest
        ));
        assert!(!verify_id(
            &public,
            &sig,
            &unhex(CHALLENGE),
            &eph.encoded,
            &NodeId::keccak(b"x")
        ));
        // Signing the single hash directly (as discv5 would) does not verify.
        let single = key.try_into_secp256k1().unwrap().secret().sign(b"other");
        assert!(!verify_id(
            &public,
            &single,
            &unhex(CHALLENGE),
            &eph.encoded,
            &dest
        ));
        assert!(decode_ephemeral(&eph.encoded).is_ok());
        assert_eq!(
            decode_ephemeral(&eph.encoded[1..]),
            Err(PacketError::EphemeralKey)
        );
    }
}
