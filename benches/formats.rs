//! The pure formats: block CIDs (sha2-256), the Merkle root, and the manifest codec.

use codex_actors::format::{cid, manifest::Manifest, merkle};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn block_cid(c: &mut Criterion) {
    let mut group = c.benchmark_group("formats");
    let block = vec![0xA5u8; 65536];
    group.throughput(Throughput::Bytes(block.len() as u64));
    group.bench_function("block CID of one 64 KiB block", |b| {
        b.iter(|| {
            let cid = cid::block_cid(&block);
            assert_eq!(cid.codec(), cid::BLOCK_CODEC);
        })
    });
    let leaves: Vec<cid::Digest> = (0u32..16384)
        .map(|i| cid::sha256(&i.to_le_bytes()))
        .collect();
    group.throughput(Throughput::Elements(leaves.len() as u64));
    group.bench_function("Merkle root of 16384 leaves (1 GiB dataset)", |b| {
        b.iter(|| assert!(merkle::root(&leaves).is_some()))
    });
    let tree = cid::cid_from_digest(cid::ROOT_CODEC, &leaves[0]);
    let m = Manifest::new(
        tree,
        1 << 30,
        65536,
        Some("data.bin".into()),
        Some("application/octet-stream".into()),
    );
    let bytes = m.encode();
    group.throughput(Throughput::Elements(1));
    group.bench_function("manifest encode", |b| {
        b.iter(|| assert_eq!(m.encode().len(), bytes.len()))
    });
    group.bench_function("manifest decode", |b| {
        b.iter(|| assert_eq!(Manifest::decode(&bytes).as_ref(), Ok(&m)))
    });
    group.finish();
}

criterion_group!(benches, block_cid);
criterion_main!(benches);
