//! `slowlink`: the long, narrow link of `benches/slowlink.sh` as a program (a bench target with
//! no harness, so it stays out of the node's binary). Two modes:
//!
//! ```text
//! slowlink forward LISTEN TARGET MBIT RTT_MS   # forward LISTEN → TARGET over the link until killed
//! slowlink raw MBIT RTT_MS BYTES               # one raw TCP stream through it: seconds, ratio
//! ```
//!
//! The forwarder itself is `tests/common/slowlink.rs`, shared with the slow-link test.

#[allow(dead_code)] // the test uses the rest
#[path = "../tests/common/slowlink.rs"]
mod slowlink;

use std::{net::SocketAddr, time::Duration};

use slowlink::{Forwarder, Link};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn link(mbit: &str, rtt_ms: &str) -> Result<Link> {
    Ok(Link::new(
        mbit.parse()?,
        Duration::from_secs_f64(rtt_ms.parse::<f64>()? / 1000.0),
    ))
}

fn main() -> Result<()> {
    // `cargo bench` adds `--bench`; nothing else here takes flags.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["forward", listen, target, mbit, rtt_ms] => {
            let listen: SocketAddr = listen.parse()?;
            let target: SocketAddr = target.parse()?;
            let forwarder = Forwarder::start(listen, target, link(mbit, rtt_ms)?)?;
            println!("forwarding {} -> {target}", forwarder.addr);
            loop {
                std::thread::park();
            }
        }
        ["raw", mbit, rtt_ms, bytes] => {
            let link = link(mbit, rtt_ms)?;
            let bytes: u64 = bytes.parse()?;
            let seconds = slowlink::raw_tcp_seconds(link, bytes)?;
            let ratio = bytes as f64 / seconds / link.bytes_per_sec;
            println!("{seconds:.3} {ratio:.3}");
            Ok(())
        }
        // Under `cargo bench` with no arguments (e.g. `cargo bench --workspace`): nothing to do.
        [] => Ok(()),
        _ => {
            Err("usage: slowlink forward LISTEN TARGET MBIT RTT_MS | raw MBIT RTT_MS BYTES".into())
        }
    }
}
