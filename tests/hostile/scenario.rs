//! The scenario harness of `tests/hostile_peers.rs`: the attacked node V and the honest node H,
//! the unattacked baseline, the four promises every attack is checked against (fetch time, peak
//! RSS, `/space` latency) and the two ways identities arrive (a churn, a crowd).

use std::sync::{
    atomic::{AtomicBool, AtomicUsize, Ordering},
    Arc, Mutex, OnceLock,
};
use std::time::{Duration, Instant};

use codex_actors::{Multiaddr, PeerId};

use super::{Fallible, Identity};
use crate::common::{node_process::NodeProcess, peers::*, workload::Rng, *};

/// The honest transfer: 512 blocks.
pub const SIZE: usize = 32 * 1024 * 1024;
/// Peak RSS allowed to the attacked node.
pub const MAX_RSS_MB: u64 = 512;
/// Slowest `/space` answer allowed while attacked.
pub const MAX_SPACE: Duration = Duration::from_secs(2);
/// Time the attack gets to take hold once it is set up, before the honest fetch starts.
pub const SETTLE: Duration = Duration::from_millis(1000);
/// Longest an attack may take to set itself up.
pub const SET_UP: Duration = Duration::from_secs(60);

pub static SERIAL: Mutex<()> = Mutex::new(());
pub static BASELINE: OnceLock<Duration> = OnceLock::new();

/// What one scenario measured.
#[derive(Debug)]
pub struct Figures {
    pub fetch: Duration,
    pub rss_mb: u64,
    pub space_max: Duration,
}

/// How the hostile side did, shared with its tasks.
#[derive(Default)]
pub struct Tally {
    /// Identities whose connection came up.
    pub admitted: AtomicUsize,
    /// Identities whose connection was refused.
    pub refused: AtomicUsize,
    /// Identities the node disconnected.
    pub dropped: AtomicUsize,
}

/// V, the attacked node, and H, the honest one.
pub struct Pair {
    pub v: NodeProcess,
    pub h: NodeProcess,
    pub data: Vec<u8>,
    pub cid: String,
    pub v_peer: PeerId,
    pub v_addr: Multiaddr,
    pub _dirs: [tempfile::TempDir; 2],
}

/// A hostile-side result on this thread.
pub fn here<T>(r: Fallible<T>) -> TestResult<T> {
    r.map_err(|e| e.to_string().into())
}

pub fn peer_of(node: &impl Api) -> TestResult<(PeerId, Multiaddr)> {
    Ok((peer_id(node)?.parse()?, listen_addr(node)?.parse()?))
}

/// V holding 32 MiB, and H, not yet connected.
pub fn pair(seed: u64) -> TestResult<Pair> {
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
    let v = NodeProcess::spawn(dirs[0].path(), &[])?;
    let h = NodeProcess::spawn(dirs[1].path(), &[])?;
    let data = Rng::new(seed).bytes(SIZE);
    let cid = upload_ok(&v, &data)?;
    let (v_peer, v_addr) = peer_of(&v)?;
    Ok(Pair {
        v,
        h,
        data,
        cid,
        v_peer,
        v_addr,
        _dirs: dirs,
    })
}

/// Peak resident memory of process `pid`, in MiB.
pub fn peak_rss_mb(pid: u32) -> TestResult<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .ok_or("no VmHWM")?
        .parse()?;
    Ok(kb / 1024)
}

/// Polls `node`'s `/space` every 100 ms until `stop`; the slowest answer.
pub fn watch_space(node: &NodeProcess, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Duration> {
    let url = node.url("/space");
    std::thread::spawn(move || {
        let agent = agent();
        let mut worst = Duration::ZERO;
        while !stop.load(Ordering::SeqCst) {
            let started = Instant::now();
            let ok = agent.get(&url).call().is_ok_and(|r| r.status() == 200);
            let took = if ok { started.elapsed() } else { Duration::MAX };
            worst = worst.max(took);
            std::thread::sleep(Duration::from_millis(100));
        }
        worst
    })
}

/// Streams `cid` on `fetcher` and checks the bytes; how long it took.
pub fn fetch_exact(fetcher: &impl Api, cid: &str, data: &[u8]) -> TestResult<Duration> {
    let started = Instant::now();
    let (status, got) = stream_network(fetcher, cid)?;
    let took = started.elapsed();
    assert_eq!(status, 200);
    assert!(got == data, "{} bytes, not the dataset", got.len());
    Ok(took)
}

/// The unattacked fetch of this run (measured once, by the first scenario that asks).
pub fn baseline() -> TestResult<Duration> {
    if let Some(d) = BASELINE.get() {
        return Ok(*d);
    }
    let p = pair(1)?;
    connect_to(&p.v, &p.h)?;
    let took = fetch_exact(&p.h, &p.cid, &p.data)?;
    println!("hostile: baseline fetch of 32 MiB {took:?}");
    Ok(*BASELINE.get_or_init(|| took))
}

pub fn runtime() -> TestResult<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Runs `attack` on V, then lets V dial H and H fetch; checks the four promises and returns
/// the figures.
pub fn seeder_under_attack<F, Fut>(name: &str, p: &Pair, attack: F) -> TestResult<Figures>
where
    F: FnOnce(PeerId, Multiaddr, Arc<AtomicBool>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let limit = (baseline()? * 3).max(Duration::from_secs(10));
    let rt = runtime()?;
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_space(&p.v, stop.clone());
    let ready = Arc::new(AtomicBool::new(false));
    let task = rt.spawn(attack(p.v_peer, p.v_addr.clone(), ready.clone()));
    let set_up = Instant::now();
    while !ready.load(Ordering::SeqCst) && set_up.elapsed() < SET_UP {
        std::thread::sleep(Duration::from_millis(20));
    }
    if !ready.load(Ordering::SeqCst) {
        let log: Vec<String> =
            p.v.log()
                .into_iter()
                .filter(|l| !l.contains("/space"))
                .collect();
        let tail = log[log.len().saturating_sub(30)..].join("\n");
        return Err(format!("{name}: the attack never set up; V's log ends:\n{tail}").into());
    }
    std::thread::sleep(SETTLE);
    let fetched = (|| -> TestResult<Duration> {
        connect_to(&p.v, &p.h)?;
        fetch_exact(&p.h, &p.cid, &p.data)
    })();
    stop.store(true, Ordering::SeqCst);
    let space_max = watcher.join().map_err(|_| "watcher panicked")?;
    let rss_mb = peak_rss_mb(p.v.pid())?;
    task.abort();
    rt.shutdown_timeout(Duration::from_secs(1));
    let figures = Figures {
        fetch: fetched?,
        rss_mb,
        space_max,
    };
    println!("hostile: {name}: {figures:?} (limit {limit:?})");
    check(name, &figures, limit)?;
    Ok(figures)
}

pub fn check(name: &str, f: &Figures, limit: Duration) -> TestResult {
    assert!(f.fetch <= limit, "{name}: fetch took {:?}", f.fetch);
    assert!(f.rss_mb < MAX_RSS_MB, "{name}: peak RSS {} MiB", f.rss_mb);
    assert!(
        f.space_max <= MAX_SPACE,
        "{name}: /space took {:?}",
        f.space_max
    );
    Ok(())
}

/// A counter of V's `/metrics`.
pub fn counter(node: &impl Api, name: &str) -> TestResult<u64> {
    Ok(metric(node, name)?.map_or(0, |(_, v)| v))
}

/// Keeps making identities that connect and run `each` on a fresh stream, until aborted; a
/// few at a time.
pub async fn churn<F, Fut>(
    to: PeerId,
    addr: Multiaddr,
    tally: Arc<Tally>,
    ready: Arc<AtomicBool>,
    at_once: usize,
    each: F,
) where
    F: Fn(libp2p::Stream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let each = Arc::new(each);
    let mut running = tokio::task::JoinSet::new();
    loop {
        while running.len() < at_once {
            let (addr, tally, each) = (addr.clone(), tally.clone(), each.clone());
            let ready = ready.clone();
            running.spawn(async move {
                let Ok(id) = Identity::new() else { return };
                let admitted = id.dial(to, &addr, 1).await;
                let counter = if admitted {
                    &tally.admitted
                } else {
                    &tally.refused
                };
                if counter.fetch_add(1, Ordering::SeqCst) + 1 >= at_once {
                    ready.store(true, Ordering::SeqCst);
                }
                if !admitted {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    return;
                }
                if let Ok(stream) = id.open(to).await {
                    each(stream).await;
                }
                // Wait for the node to act on what it got.
                for _ in 0..100 {
                    if id.was_disconnected() {
                        tally.dropped.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            });
        }
        let _ = running.join_next().await;
    }
}

/// Starts `n` identities at once, each dialling `to` with `connections` connections; those let
/// in run `each`, which keeps them for as long as it runs. Ready once every identity was let in
/// or refused.
pub async fn crowd<F, Fut>(
    n: usize,
    connections: usize,
    to: PeerId,
    addr: Multiaddr,
    tally: Arc<Tally>,
    ready: Arc<AtomicBool>,
    each: F,
) where
    F: Fn(Identity) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let each = Arc::new(each);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (addr, t, each) = (addr.clone(), tally.clone(), each.clone());
        set.spawn(async move {
            let id = match Identity::new() {
                Ok(id) if id.dial(to, &addr, connections).await => id,
                _ => {
                    t.refused.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            };
            t.admitted.fetch_add(1, Ordering::SeqCst);
            each(id).await;
        });
    }
    while tally.admitted.load(Ordering::SeqCst) + tally.refused.load(Ordering::SeqCst) < n {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ready.store(true, Ordering::SeqCst);
    while set.join_next().await.is_some() {}
}
