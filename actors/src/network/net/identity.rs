//! The node's libp2p identity: a secp256k1 key kept in one file, so the peer id never changes.
//!
//! The file holds libp2p's protobuf private-key encoding, the same bytes Codex keeps in
//! `<data-dir>/key`, so either node can read the other's key. secp256k1 is the only type
//! accepted: Codex is built with `libp2p_pki_schemes=secp256k1` and fails the Noise handshake
//! with any other key, so a node that silently used another type would never reach Codex.
//!
//! The first start creates the file with mode 0600 atomically (temporary file, fsync, rename,
//! fsync of the directory): a crash leaves either no key or the whole key, never half of one
//! that would give the node a new identity on the next start.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use libp2p::identity::{KeyType, Keypair};

use crate::network::net::NetError;

/// Longest key file read. A protobuf secp256k1 private key is 36 bytes; anything this long is
/// not a key and is refused before it is parsed.
const MAX_KEY_FILE: u64 = 4096;

/// Loads the key at `path`, or creates a new secp256k1 key there when no file exists.
///
/// # Errors
/// [`NetError::Identity`] when the file cannot be read or written, is not a libp2p private key,
/// or holds a key of another type than secp256k1.
pub fn load_or_create(path: &Path) -> Result<Keypair, NetError> {
    match fs::metadata(path) {
        Ok(meta) if meta.len() > MAX_KEY_FILE => Err(invalid(path, "file too large for a key")),
        Ok(_) => load(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let key = Keypair::generate_secp256k1();
            let bytes = key
                .to_protobuf_encoding()
                .map_err(|e| invalid(path, &e.to_string()))?;
            write_atomically(path, &bytes).map_err(|e| io_error(path, e))?;
            Ok(key)
        }
        Err(e) => Err(io_error(path, e)),
    }
}

fn load(path: &Path) -> Result<Keypair, NetError> {
    let bytes = fs::read(path).map_err(|e| io_error(path, e))?;
    let key = Keypair::from_protobuf_encoding(&bytes).map_err(|e| invalid(path, &e.to_string()))?;
    if key.key_type() != KeyType::Secp256k1 {
        return Err(invalid(path, "Codex accepts only secp256k1 keys"));
    }
    Ok(key)
}

/// Writes `bytes` to `path` (mode 0600) so that `path` holds either its old content or all of
/// `bytes`, never part of them. Also used for the DHT peer store.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    // A leftover from a crash of an earlier run with the same pid holds nothing worth keeping.
    let _ = fs::remove_file(&tmp);
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

fn io_error(path: &Path, e: io::Error) -> NetError {
    NetError::Identity(format!("{}: {e}", path.display()))
}

fn invalid(path: &Path, why: &str) -> NetError {
    NetError::Identity(format!("{}: not a usable key: {why}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn first_start_creates_a_private_secp256k1_key_and_later_starts_reuse_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("key");
        let first = load_or_create(&path).expect("created");
        assert_eq!(first.key_type(), KeyType::Secp256k1);
        let mode = fs::metadata(&path).expect("exists").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = load_or_create(&path).expect("loaded");
        assert_eq!(first.public().to_peer_id(), second.public().to_peer_id());
        // Only the key is left behind, no temporary file.
        let names: Vec<_> = fs::read_dir(path.parent().expect("dir"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("key")]);
    }

    #[test]
    fn peer_ids_look_like_codex_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = load_or_create(&dir.path().join("key")).expect("created");
        // secp256k1 public keys are small enough to be inlined: an identity multihash, which
        // base58 prints as 16Uiu2… just like Codex's peer ids.
        assert!(key.public().to_peer_id().to_base58().starts_with("16Uiu2"));
    }

    #[test]
    fn garbage_and_foreign_key_types_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        fs::write(&path, b"not a key").expect("write");
        assert!(matches!(load_or_create(&path), Err(NetError::Identity(_))));
        // An Ed25519 private key (type 1, 64 bytes), hand-encoded: libp2p may refuse it as a
        // type it was built without, or read it and leave the refusal to us; both must fail.
        let ed = [&[0x08, 0x01, 0x12, 0x40][..], &[7u8; 64]].concat();
        fs::write(&path, ed).expect("write");
        assert!(matches!(load_or_create(&path), Err(NetError::Identity(_))));
        fs::write(&path, vec![0u8; 10_000]).expect("write");
        assert!(matches!(load_or_create(&path), Err(NetError::Identity(_))));
    }
}
