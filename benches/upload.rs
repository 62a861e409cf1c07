//! The upload path, measured at two depths: through the engine's message API (chunk → hash →
//! store → commit), and end to end over HTTP against the real server on a loopback port.
//! Every iteration uploads fresh content (deduplication would make repeats free) into one
//! repository, and checks the answer is a manifest CID.

use std::{net::TcpListener, time::Duration};

use bytes::Bytes;
use codex_actors::{format::cid::MANIFEST_CODEC, Config, Node, UploadOptions};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const SIZE: usize = 64 * 1024 * 1024; /* 64 MiB */

/// Distinct content per iteration: a 64-bit counter stamped into every 64 KiB block.
fn content(iteration: u64) -> Vec<u8> {
    let mut data = vec![0u8; SIZE];
    for (i, block) in data.chunks_mut(65536).enumerate() {
        block[..8].copy_from_slice(&iteration.to_le_bytes());
        block[8..16].copy_from_slice(&(i as u64).to_le_bytes());
        block[16] = 1;
    }
    data
}

fn engine(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine");
    group
        .throughput(Throughput::Bytes(SIZE as u64))
        .sample_size(10);
    let dir = tempfile::tempdir().expect("tempdir");
    let sys = actix::System::new();
    let node = sys
        .block_on(Node::start(Config::new(dir.path())))
        .expect("node");
    let mut iteration = 0;
    group.bench_function("store 64 MiB via Node::store, 1 MiB pieces", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                iteration += 1;
                let data = Bytes::from(content(iteration));
                let pieces: Vec<Result<Bytes, std::io::Error>> = (0..SIZE)
                    .step_by(1 << 20)
                    .map(|at| Ok(data.slice(at..at + (1 << 20))))
                    .collect();
                let start = std::time::Instant::now();
                let cid = sys
                    .block_on(
                        node.store(futures_util::stream::iter(pieces), UploadOptions::default()),
                    )
                    .expect("store");
                total += start.elapsed();
                assert_eq!(cid.codec(), MANIFEST_CODEC);
            }
            total
        })
    });
    group.finish();
}

fn http(c: &mut Criterion) {
    let mut group = c.benchmark_group("http");
    group
        .throughput(Throughput::Bytes(SIZE as u64))
        .sample_size(10);
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = Config::new(dir.path());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let node = Node::start(config).await.expect("node");
            let server =
                codex_node::run(listener, node, codex_node::HttpConfig::default()).expect("server");
            tx.send(server.handle()).expect("handle");
            server.await.expect("serve");
        })
    });
    let handle = rx.recv().expect("server started");
    let agent = ureq::Agent::new_with_defaults();
    let url = format!("http://{addr}/api/codex/v1/data");
    let mut iteration = 1 << 32;
    group.bench_function("POST 64 MiB, 1 client", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                iteration += 1;
                let data = content(iteration);
                let start = std::time::Instant::now();
                let cid = agent
                    .post(&url)
                    .send(&data[..])
                    .expect("post")
                    .into_body()
                    .read_to_string()
                    .expect("body");
                total += start.elapsed();
                assert_eq!(
                    codex_actors::parse_cid(&cid).expect("a CID").codec(),
                    MANIFEST_CODEC,
                    "{cid}"
                );
            }
            total
        })
    });
    group.finish();
    actix_web::rt::System::new().block_on(handle.stop(true));
}

criterion_group!(benches, engine, http);
criterion_main!(benches);
