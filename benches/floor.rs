//! The work a 1 GiB transfer between two nodes cannot avoid on this stack, each piece alone on
//! this machine, in CPU seconds per GiB, next to `openssl dgst -sha256` of the same GiB
//! measured in the same run (`benches/floor.sh` runs it and adds the disk's share).
//!
//! - **SHA-256 of every block** the downloader receives (the receipt check; 64 KiB blocks,
//!   the node's own `format::cid::sha256`).
//! - **ChaCha20-Poly1305, sealed and opened once each** (Noise's transport cipher, ring's
//!   implementation, the one libp2p-noise uses, on 65,519-byte Noise payloads).
//! - **The kernel's loopback TCP**, one sender and one receiver thread, 256 KiB calls, CPU of
//!   both (the sender's send also runs the receiver's side of the delivery).
//!
//! A plain program, not a criterion bench: it prints one figure per piece, and the sum is what
//! `benches/README.md` compares with what the two nodes spend. `OPENSSL_S=…` passes the
//! baseline's seconds for the ratio column.
//!
//!   cargo bench --bench floor

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use codex_actors::format::cid;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};

const GIB: usize = 1 << 30;
/// The largest Noise transport payload: 65,535 bytes a message, less the 16-byte tag.
const NOISE_PAYLOAD: usize = 65_535 - 16;

/// CPU seconds this process has used so far, from `/proc/self/stat` (user + system, in
/// clock ticks of 10 ms: ample for pieces of a few tenths of a second).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    match (ticks(11), ticks(12)) {
        (Some(u), Some(s)) => (u + s) / 100.0,
        _ => f64::NAN,
    }
}

/// CPU seconds `work` takes, the best of three runs (other load only ever adds).
fn best_of_three(mut work: impl FnMut()) -> f64 {
    (0..3)
        .map(|_| {
            let start = cpu_seconds();
            work();
            cpu_seconds() - start
        })
        .fold(f64::INFINITY, f64::min)
}

fn sha256_of_blocks() -> f64 {
    let block = vec![0xA5u8; 65_536];
    best_of_three(|| {
        for _ in 0..GIB / block.len() {
            std::hint::black_box(cid::sha256(std::hint::black_box(&block)));
        }
    })
}

fn chacha(seal: bool) -> f64 {
    let key = UnboundKey::new(&CHACHA20_POLY1305, &[7u8; 32]).expect("a 32-byte key");
    let key = LessSafeKey::new(key);
    let mut frame = vec![0x5Au8; NOISE_PAYLOAD];
    let nonce = |n: u64| {
        let mut bytes = [0u8; 12];
        bytes[4..].copy_from_slice(&n.to_le_bytes());
        Nonce::assume_unique_for_key(bytes)
    };
    // Opening needs sealed frames: one is sealed, and opened again with its nonce each time
    // (the same work as opening a fresh one).
    let tag = key
        .seal_in_place_separate_tag(nonce(0), Aad::empty(), &mut frame)
        .expect("sealing");
    let sealed: Vec<u8> = frame.iter().chain(tag.as_ref()).copied().collect();
    let mut opened = sealed.clone();
    let frames = GIB / NOISE_PAYLOAD;
    best_of_three(|| {
        for n in 0..frames as u64 {
            if seal {
                let tag = key.seal_in_place_separate_tag(nonce(n), Aad::empty(), &mut frame);
                std::hint::black_box(tag.is_ok());
            } else {
                opened.copy_from_slice(&sealed);
                let plain = key.open_in_place(nonce(0), Aad::empty(), &mut opened);
                std::hint::black_box(plain.is_ok());
            }
        }
    })
}

/// The opening copy of a sealed frame is not part of Noise's work: measured alone, to be taken
/// off the figure for opening.
fn copy_of_frames() -> f64 {
    let src = vec![1u8; NOISE_PAYLOAD + 16];
    let mut dst = vec![0u8; NOISE_PAYLOAD + 16];
    best_of_three(|| {
        for _ in 0..GIB / NOISE_PAYLOAD {
            dst.copy_from_slice(std::hint::black_box(&src));
            std::hint::black_box(&dst);
        }
    })
}

fn loopback_tcp() -> std::io::Result<(f64, f64)> {
    let mut best = (f64::INFINITY, f64::INFINITY);
    for _ in 0..3 {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let start = (cpu_seconds(), Instant::now());
        let sender = std::thread::spawn(move || -> std::io::Result<()> {
            let mut out = TcpStream::connect(addr)?;
            out.set_nodelay(true)?;
            let chunk = vec![9u8; 256 * 1024];
            for _ in 0..GIB / chunk.len() {
                out.write_all(&chunk)?;
            }
            Ok(())
        });
        let (mut conn, _) = listener.accept()?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0;
        while got < GIB {
            match conn.read(&mut buf)? {
                0 => break,
                n => got += n,
            }
        }
        sender
            .join()
            .map_err(|_| std::io::Error::other("the sender panicked"))??;
        let cpu = cpu_seconds() - start.0;
        let wall = start.1.elapsed().as_secs_f64();
        if cpu < best.0 {
            best = (cpu, wall);
        }
    }
    Ok(best)
}

fn main() -> std::io::Result<()> {
    // The arguments `cargo bench` passes (`--bench`) are ignored: there is nothing to filter.
    let openssl: Option<f64> = std::env::var("OPENSSL_S").ok().and_then(|s| s.parse().ok());
    let ratio = |s: f64| openssl.map_or(" | – |".to_string(), |o| format!(" | {:.2} |", s / o));
    let sha = sha256_of_blocks();
    let seal = chacha(true);
    let open = (chacha(false) - copy_of_frames()).max(0.0);
    let (tcp, tcp_wall) = loopback_tcp()?;
    println!("| piece, per GiB | CPU s | × openssl's time |");
    println!("|---|---|---|");
    println!(
        "| SHA-256 of 64 KiB blocks (receipt check) | {sha:.3}{}",
        ratio(sha)
    );
    println!("| ChaCha20-Poly1305 seal (ring) | {seal:.3}{}", ratio(seal));
    println!("| ChaCha20-Poly1305 open (ring) | {open:.3}{}", ratio(open));
    println!(
        "| loopback TCP, both ends ({tcp_wall:.3} s) | {tcp:.3}{}",
        ratio(tcp)
    );
    let sum = sha + seal + open + tcp;
    println!("| sum | {sum:.3}{}", ratio(sum));
    Ok(())
}
