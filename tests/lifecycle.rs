//! The data API's lifecycle over HTTP: delete, expiry on the maintenance timer, aborted
//! uploads, metrics, and the OpenAPI description matching the routes.

mod common;

use codex_actors::Config;
use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use common::*;

fn delete(node: &TestNode, cid: &str) -> TestResult<(u16, String)> {
    text(agent().delete(node.url(&format!("/data/{cid}"))).call()?)
}

#[test]
fn delete_is_204_and_frees_exactly_the_dataset() -> TestResult {
    let node = TestNode::start()?;
    let a: Vec<u8> = [1u8, 2, 3].iter().flat_map(|t| vec![*t; 65536]).collect();
    let b: Vec<u8> = [1u8, 2, 4].iter().flat_map(|t| vec![*t; 65536]).collect();
    let cid_a = upload_ok(&node, &a)?;
    let cid_b = upload_ok(&node, &b)?;
    let (_, before) = get_json(&node, "/space")?;
    assert_eq!(delete(&node, &cid_a)?, (204, String::new()));
    let (_, after) = get_json(&node, "/space")?;
    assert_eq!(
        after["totalBlocks"],
        before["totalBlocks"].as_u64().unwrap_or(0) - 2
    );
    let freed = before["quotaUsedBytes"].as_u64().unwrap_or(0)
        - after["quotaUsedBytes"].as_u64().unwrap_or(0);
    assert!(
        (65536 + 50..65536 + 70).contains(&freed),
        "one block and one manifest: {freed}"
    );
    assert_eq!(download(&node, &cid_a, None)?.0, 404);
    let (status, _, body) = download(&node, &cid_b, None)?;
    assert!(status == 200 && body == b, "the shared blocks stay");
    assert_eq!(delete(&node, &cid_a)?.0, 204, "absent: still 204");
    assert_eq!(delete(&node, "not-a-cid")?.0, 400);
    let (status, list) = get_json(&node, "/data")?;
    assert_eq!(status, 200);
    let content = list["content"].as_array().cloned().unwrap_or_default();
    assert_eq!(content.len(), 1);
    assert_eq!(content[0]["cid"], cid_b.as_str());
    Ok(())
}

#[test]
fn a_block_in_use_cannot_be_deleted_directly() -> TestResult {
    let node = TestNode::start()?;
    upload_ok(&node, b"some file contents")?;
    let (status, body) = delete(
        &node,
        "zDxWB8ED98hxJ51XwYaoQAwMdskCcmTaPR6Ce2wq88bjvjXRYuR9",
    )?;
    assert_eq!(
        (status, body.as_str()),
        (
            409,
            "Directly deleting a block that is part of a dataset is not allowed."
        )
    );
    Ok(())
}

#[test]
fn the_maintenance_timer_expires_datasets() -> TestResult {
    let node = TestNode::start_with(|c| Config {
        block_ttl: Duration::from_secs(1),
        maintenance_interval: Duration::from_millis(100),
        ..c
    })?;
    upload_ok(&node, &pattern(200_000))?;
    let gone = eventually(Duration::from_secs(20), || {
        Ok(get_json(&node, "/space")?.1["totalBlocks"] == 0)
    })?;
    assert!(gone, "expired dataset still stored");
    assert_eq!(
        get_json(&node, "/data")?.1["content"],
        serde_json::json!([])
    );
    Ok(())
}

/// `GET /data?expiry=true` says when each dataset expires (Unix seconds; the dashboard shows
/// it), and nothing for a dataset that never does; plain `GET /data` stays Codex's.
#[test]
fn the_listing_gives_each_dataset_its_expiry() -> TestResult {
    let ttl = 3600;
    let node = TestNode::start_with(move |c| Config {
        block_ttl: Duration::from_secs(ttl),
        ..c
    })?;
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let cid = upload_ok(&node, &pattern(100_000))?;
    let after = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    // Only when asked: without it the listing is Codex's, byte for byte.
    let plain = get_json(&node, "/data")?.1;
    assert!(plain["content"][0].get("expiry").is_none(), "{plain}");
    let listed = get_json(&node, "/data?expiry=true")?.1;
    let entry = &listed["content"][0];
    assert_eq!(entry["cid"], cid.as_str(), "{listed}");
    let expiry = entry["expiry"].as_u64().ok_or("no expiry in the listing")?;
    assert!(
        (before.as_secs() + ttl..=after.as_secs() + ttl + 1).contains(&expiry),
        "expiry {expiry} is not {ttl} s after the upload ({listed})"
    );
    // A TTL of 0 means never: no expiry listed.
    let forever = TestNode::start_with(|c| Config {
        block_ttl: Duration::ZERO,
        ..c
    })?;
    upload_ok(&forever, &pattern(100_000))?;
    let listed = get_json(&forever, "/data?expiry=true")?.1;
    assert!(
        listed["content"][0].get("expiry").is_none(),
        "a dataset that never expires lists an expiry: {listed}"
    );
    Ok(())
}

#[test]
fn a_client_that_disconnects_mid_upload_leaves_nothing() -> TestResult {
    let node = TestNode::start()?;
    let kept = upload_ok(&node, &pattern(100_000))?;
    let (_, before) = get_json(&node, "/space")?;
    let mut stream = TcpStream::connect(node.addr)?;
    write!(
        stream,
        "POST /api/codex/v1/data HTTP/1.1\r\nHost: {}\r\nContent-Length: 10000000\r\n\r\n",
        node.addr
    )?;
    let body: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    stream.write_all(&body)?;
    stream.flush()?;
    std::thread::sleep(Duration::from_millis(100));
    drop(stream);
    let clean = eventually(Duration::from_secs(10), || {
        Ok(get_json(&node, "/space")?.1 == before)
    })?;
    assert!(
        clean,
        "the aborted upload left blocks: {}",
        get_json(&node, "/space")?.1
    );
    let (status, _, body) = download(&node, &kept, None)?;
    assert!(
        status == 200 && body == pattern(100_000),
        "the node keeps serving"
    );
    Ok(())
}

#[test]
fn a_client_that_leaves_mid_download_breaks_nothing() -> TestResult {
    let node = TestNode::start()?;
    let data = pattern(8 << 20);
    let cid = upload_ok(&node, &data)?;
    for _ in 0..20 {
        let mut stream = TcpStream::connect(node.addr)?;
        write!(
            stream,
            "GET /api/codex/v1/data/{cid} HTTP/1.1\r\nHost: {}\r\n\r\n",
            node.addr
        )?;
        let mut first = [0u8; 100_000];
        stream.read_exact(&mut first)?;
        drop(stream); // gone after 100 kB of 8 MiB
    }
    let (status, _, body) = download(&node, &cid, None)?;
    assert!(
        status == 200 && body == data,
        "the node serves whole downloads afterwards"
    );
    Ok(())
}

#[test]
fn a_body_shorter_than_its_content_length_is_rejected() -> TestResult {
    let node = TestNode::start()?;
    let (_, before) = get_json(&node, "/space")?;
    let mut stream = TcpStream::connect(node.addr)?;
    write!(
        stream,
        "POST /api/codex/v1/data HTTP/1.1\r\nHost: {}\r\nContent-Length: 500000\r\n\r\n",
        node.addr
    )?;
    stream.write_all(&vec![7u8; 200_000])?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    assert!(!reply.starts_with("HTTP/1.1 200"), "{reply}");
    let clean = eventually(Duration::from_secs(10), || {
        Ok(get_json(&node, "/space")?.1 == before)
    })?;
    assert!(clean);
    Ok(())
}

#[test]
fn metrics_count_uploads_downloads_and_space() -> TestResult {
    let node = TestNode::start()?;
    let cid = upload_ok(&node, &pattern(70_000))?;
    download(&node, &cid, None)?;
    let resp = agent()
        .get(format!("http://{}/metrics", node.addr))
        .call()?;
    assert!(resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain")));
    let body = resp.into_body().read_to_string()?;
    let value = |name: &str| -> Option<f64> {
        body.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    };
    assert!(
        value("codex_api_uploads_total").is_some_and(|v| v >= 1.0),
        "{body}"
    );
    assert!(
        value("codex_api_downloads_total").is_some_and(|v| v >= 1.0),
        "{body}"
    );
    assert_eq!(value("codex_repostore_blocks"), Some(3.0));
    assert_eq!(
        value("codex_repostore_bytes_used").map(|v| v > 131_072.0),
        Some(true)
    );
    assert_eq!(value("codex_repostore_bytes_reserved"), Some(0.0));
    assert!(
        body.contains("codex_api_upload_duration_seconds_bucket"),
        "{body}"
    );
    Ok(())
}

/// The OpenAPI description (`src/api/openapi.json`) names every route the server registers,
/// and every operation in it answers with a status it documents, on the real binary with its
/// network on (a second node to `/connect` to).
#[test]
fn every_route_in_the_openapi_description_answers() -> TestResult {
    let spec: serde_json::Value = serde_json::from_str(include_str!("../src/api/openapi.json"))?;
    let paths = spec["paths"].as_object().ok_or("no paths")?;
    // Every path literal of the router is described ({peer} there is {peerId} here).
    let router = include_str!("../src/api/mod.rs");
    let body = router
        .split("pub(crate) fn routes")
        .nth(1)
        .and_then(|rest| rest.split("\n}\n").next())
        .ok_or("no routes function in src/api/mod.rs")?;
    // The string literals of the function: every other piece between quotes.
    let literals = body.split('"').skip(1).step_by(2);
    for literal in literals.filter(|t| t.starts_with('/')) {
        if literal == "/api/codex/v1" {
            continue;
        }
        let prefix = if literal == "/metrics" {
            ""
        } else {
            "/api/codex/v1"
        };
        let path = format!("{prefix}{}", literal.replace("{peer}", "{peerId}"));
        assert!(paths.contains_key(&path), "{path} is not in openapi.json");
    }

    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
    let node = node_process::NodeProcess::spawn(dirs[0].path(), &[])?;
    let other = node_process::NodeProcess::spawn(dirs[1].path(), &[])?;
    let cid = upload_ok(&node, b"some file contents")?;
    let (other_id, other_addr) = (peers::peer_id(&other)?, peers::listen_addr(&other)?);
    // Deletions last, so the GETs find the dataset.
    let mut calls: Vec<(&String, &String, &serde_json::Value)> = Vec::new();
    for (path, ops) in paths {
        for (method, op) in ops.as_object().ok_or("no ops")? {
            if method != "parameters" {
                calls.push((path, method, op));
            }
        }
    }
    assert!(calls.len() >= 15, "{} operations described", calls.len());
    calls.sort_by_key(|(_, method, _)| *method == "delete");
    for (path, method, op) in calls {
        let mut url = format!(
            "http://{}{}",
            node.addr,
            path.replace("{cid}", &cid).replace("{peerId}", &other_id)
        );
        if path.contains("{peerId}") {
            url = format!("{url}?addrs={other_addr}");
        }
        let resp = match method.as_str() {
            "get" => agent().get(&url).call()?,
            "delete" => agent().delete(&url).call()?,
            "post" => agent().post(&url).send(&b"abc"[..])?,
            other => return Err(format!("unexpected method {other}").into()),
        };
        let status = resp.status().as_u16();
        assert!(
            (200..300).contains(&status),
            "{method} {path} answered {status}"
        );
        let documented = op["responses"].as_object().ok_or("no responses")?;
        assert!(
            documented.contains_key(&status.to_string()),
            "{method} {path}: {status} not documented"
        );
    }
    Ok(())
}
