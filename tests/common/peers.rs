//! Helpers for tests with several nodes on loopback: a node's peer id and network address,
//! `/connect`, fetches from peers and their progress, and the exchange counters of
//! `/debug/info`. They work with any [`Api`] node (ours in-process, our binary, Codex).

use std::time::Duration;

use serde_json::Value;

use super::{agent, eventually, get_json, text, Api, TestResult};

/// How long a test waits for a fetch of a few tens of MB on loopback to end.
pub const FETCH_WAIT: Duration = Duration::from_secs(60);

/// A node's peer id (`GET /peerid`).
pub fn peer_id(node: &impl Api) -> TestResult<String> {
    let (status, body) = get_json(node, "/peerid")?;
    assert_eq!(status, 200, "/peerid: {body}");
    Ok(body["id"].as_str().ok_or("no id in /peerid")?.to_owned())
}

/// Our node's first libp2p listen address (`/debug/info` `addrs`), e.g.
/// `/ip4/127.0.0.1/tcp/40123`.
pub fn listen_addr(node: &impl Api) -> TestResult<String> {
    let (status, info) = get_json(node, "/debug/info")?;
    assert_eq!(status, 200, "/debug/info: {info}");
    let addr = info["addrs"][0].as_str().ok_or("no addrs in /debug/info")?;
    assert!(addr.starts_with("/ip4/127.0.0.1/tcp/"), "{addr}");
    Ok(addr.to_owned())
}

/// `GET /connect/{id}?addrs={addr}` on `from`; expects Codex's success text.
pub fn connect(from: &impl Api, id: &str, addr: &str) -> TestResult {
    let resp = agent()
        .get(from.url(&format!("/connect/{id}")))
        .query("addrs", addr)
        .call()?;
    let (status, body) = text(resp)?;
    assert_eq!(
        (status, body.as_str()),
        (200, "Successfully connected to peer")
    );
    Ok(())
}

/// Connects `from` to our node `to`.
pub fn connect_to(from: &impl Api, to: &impl Api) -> TestResult {
    connect(from, &peer_id(to)?, &listen_addr(to)?)
}

/// `GET /data/{cid}/network/stream`: status and body.
pub fn stream_network(node: &impl Api, cid: &str) -> TestResult<(u16, Vec<u8>)> {
    let resp = agent()
        .get(node.url(&format!("/data/{cid}/network/stream")))
        .call()?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .with_config()
        .limit(u64::MAX)
        .read_to_vec()?;
    Ok((status, body))
}

/// `POST /data/{cid}/network`: status and body.
pub fn start_fetch(node: &impl Api, cid: &str) -> TestResult<(u16, String)> {
    text(
        agent()
            .post(node.url(&format!("/data/{cid}/network")))
            .send_empty()?,
    )
}

/// `GET /data/{cid}/network/progress` (ours only): status and JSON.
pub fn progress(node: &impl Api, cid: &str) -> TestResult<(u16, Value)> {
    get_json(node, &format!("/data/{cid}/network/progress"))
}

/// Blocks stored of `cid` on `node` (0 when nothing of it is there).
pub fn blocks_stored(node: &impl Api, cid: &str) -> TestResult<u64> {
    match progress(node, cid)? {
        (200, p) => Ok(p["blocksStored"].as_u64().ok_or("no blocksStored")?),
        (404, _) => Ok(0),
        (status, p) => Err(format!("progress answered {status}: {p}").into()),
    }
}

/// Waits until `cid` is complete on `node` and no fetch of it runs any more.
pub fn wait_complete(node: &impl Api, cid: &str) -> TestResult {
    let mut last = Value::Null;
    let done = eventually(FETCH_WAIT, || {
        let (status, p) = progress(node, cid)?;
        let done = status == 200 && p["complete"] == true && p["fetching"] == false;
        last = p;
        Ok(done)
    })?;
    assert!(done, "{cid} not complete within {FETCH_WAIT:?}: {last}");
    Ok(())
}

/// The `exchange` object of our node's `/debug/info`.
pub fn exchange(node: &impl Api) -> TestResult<Value> {
    let (status, info) = get_json(node, "/debug/info")?;
    assert_eq!(status, 200, "/debug/info: {info}");
    Ok(info["exchange"].clone())
}

/// A counter of [`exchange`].
pub fn exchange_counter(node: &impl Api, name: &str) -> TestResult<u64> {
    let stats = exchange(node)?;
    Ok(stats[name]
        .as_u64()
        .ok_or_else(|| format!("no {name} in {stats}"))?)
}

/// `GET /space` as JSON.
pub fn space(node: &impl Api) -> TestResult<Value> {
    let (status, body) = get_json(node, "/space")?;
    assert_eq!(status, 200, "/space: {body}");
    Ok(body)
}

/// Polls (tightly: tests act in the middle of a transfer) until at least `min` blocks of `cid`
/// are stored on `node`; returns how many are.
pub fn wait_stored(node: &impl Api, cid: &str, min: u64) -> TestResult<u64> {
    let started = std::time::Instant::now();
    loop {
        let stored = blocks_stored(node, cid)?;
        if stored >= min {
            return Ok(stored);
        }
        if started.elapsed() > FETCH_WAIT {
            return Err(format!("{cid}: {stored} blocks stored after {FETCH_WAIT:?}").into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The `partialDatasets` of our node's `/debug/info`: (cid, blocks stored, blocks total).
pub fn partial_datasets(node: &impl Api) -> TestResult<Vec<(String, u64, u64)>> {
    let (status, info) = get_json(node, "/debug/info")?;
    assert_eq!(status, 200, "/debug/info: {info}");
    let list = info["partialDatasets"]
        .as_array()
        .ok_or("no partialDatasets")?;
    list.iter()
        .map(|p| {
            Ok((
                p["cid"].as_str().ok_or("cid")?.to_owned(),
                p["blocksStored"].as_u64().ok_or("blocksStored")?,
                p["blocksTotal"].as_u64().ok_or("blocksTotal")?,
            ))
        })
        .collect()
}

/// Blocks received from each connected peer, by peer id (`/debug/info` `exchange.peerList`).
pub fn received_by_peer(node: &impl Api) -> TestResult<Vec<(String, u64)>> {
    let stats = exchange(node)?;
    let list = stats["peerList"].as_array().ok_or("no peerList")?;
    list.iter()
        .map(|p| {
            Ok((
                p["peerId"].as_str().ok_or("peerId")?.to_owned(),
                p["blocksReceived"].as_u64().ok_or("blocksReceived")?,
            ))
        })
        .collect()
}

/// A sample of our node's `/metrics` (the value of the line `name value`), with its type.
pub fn metric(node: &impl Api, name: &str) -> TestResult<Option<(String, u64)>> {
    let root = node.url("/").replace("/api/codex/v1/", "/metrics");
    let (status, body) = text(agent().get(root).call()?)?;
    assert_eq!(status, 200);
    let kind = body
        .lines()
        .find_map(|l| l.strip_prefix(&format!("# TYPE {name} ")))
        .map(str::to_owned);
    let value = body
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .map(str::parse::<u64>)
        .transpose()?;
    Ok(kind.zip(value))
}
