//! Embedding the engine without HTTP: store a file through the actor message API, read it
//! back, and print its manifest CID (the same CID `POST /api/codex/v1/data` returns).
//!
//! ```sh
//! cargo run --release -p codex-actors --example embed -- FILE [DATA_DIR]
//! ```
//! Timing goes to stderr, the CID alone to stdout, so scripts can use it.

use std::{io::Read, time::Instant};

use bytes::Bytes;
use codex_actors::{cid_text, Config, Node, UploadOptions};
use futures_util::StreamExt;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let file = args.next().ok_or("usage: embed FILE [DATA_DIR]")?;
    let tmp = tempfile::tempdir()?;
    let data_dir = args
        .next()
        .map_or_else(|| tmp.path().to_path_buf(), Into::into);

    // Actors need a running actix system.
    actix::System::new().block_on(async move {
        let node = Node::start(Config::new(&data_dir)).await?;
        let started = Instant::now();
        let mut input = std::fs::File::open(&file)?;
        let mut session = node.upload(UploadOptions::default());
        loop {
            // Reading 1 MiB from a local file is quick enough to do inline; a slow source
            // would be read on another thread and fed in the same way. `take` fills the piece
            // even from a pipe, whose reads return 64 KiB at a time.
            let mut piece = Vec::with_capacity(1 << 20);
            (&mut input).take(1 << 20).read_to_end(&mut piece)?;
            if piece.is_empty() {
                break;
            }
            session.write(Bytes::from(piece)).await?; // backpressure: waits for storage
        }
        let cid = session.finish().await?;
        let stored = started.elapsed();

        let started = Instant::now();
        let (manifest, mut bytes) = node.retrieve(cid).await?;
        let mut read = 0u64;
        while let Some(piece) = bytes.next().await {
            read += piece?.len() as u64;
        }
        assert_eq!(read, manifest.dataset_size);
        let space = node.space().await?;
        node.shutdown().await?;

        let mb = manifest.dataset_size as f64 / 1e6;
        eprintln!(
            "stored {mb:.1} MB in {:.3} s ({:.0} MB/s)",
            stored.as_secs_f64(),
            mb / stored.as_secs_f64()
        );
        eprintln!(
            "read back in {:.3} s ({:.0} MB/s)",
            started.elapsed().as_secs_f64(),
            mb / started.elapsed().as_secs_f64()
        );
        eprintln!(
            "repository: {} blocks, {} bytes used",
            space.total_blocks, space.quota_used_bytes
        );
        println!("{}", cid_text(&cid));
        Ok(())
    })
}
