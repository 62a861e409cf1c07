//! Limits and hostile input: a full disk, a quota lowered below what is stored, odd HTTP
//! (100-continue, chunked bodies, invalid header bytes, wrong methods), malformed CIDs, and
//! thousands of idle connections.

mod common;

use codex_actors::Config;
use std::{
    io::{Read, Write},
    net::TcpStream,
    process::Command,
    time::{Duration, Instant},
};

use common::*;

/// Sends `request` as it is, except that `Host: x` becomes the node's address, as every client
/// writes it (the API refuses requests for other hosts).
fn raw(node: &TestNode, request: &[u8]) -> TestResult<String> {
    let mut stream = TcpStream::connect(node.addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let placeholder: &[u8] = b"Host: x\r\n";
    let request = match request
        .windows(placeholder.len())
        .position(|w| w == placeholder)
    {
        Some(at) => {
            let host = format!("Host: {}\r\n", node.addr);
            [
                &request[..at],
                host.as_bytes(),
                &request[at + placeholder.len()..],
            ]
            .concat()
        }
        None => request.to_vec(),
    };
    stream.write_all(&request)?;
    let mut reply = Vec::new();
    // Requests say `Connection: close`, so the reply ends when the server closes; a reset after
    // a refused request ends it too.
    let _ = stream.read_to_end(&mut reply);
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

#[test]
fn a_full_disk_is_a_clear_507_and_reads_go_on() -> TestResult {
    let mnt = tempfile::tempdir()?;
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(mnt.path())
        .status();
    if !mounted.is_ok_and(|s| s.success()) {
        eprintln!("skipped: cannot mount a small tmpfs here (needs root)");
        return Ok(());
    }
    let result = (|| -> TestResult {
        let node = TestNode::start_in(&mnt.path().join("data"), |c| c)?;
        let first = pattern(500_000);
        let kept = upload_ok(&node, &first)?;
        let mut refused = None;
        for i in 0..12u8 {
            let data: Vec<u8> = pattern(700_000)
                .into_iter()
                .map(|b| b ^ i.wrapping_add(1))
                .collect();
            let (status, body) = upload(&node, &data, None, None)?;
            if status != 200 {
                refused = Some((status, body));
                break;
            }
        }
        let (status, body) = refused.ok_or("a 4 MiB disk never filled up")?;
        assert_eq!(status, 507, "{body}");
        assert!(body.contains("disk is full"), "{body}");
        let (status, _, bytes) = download(&node, &kept, None)?;
        assert!(
            status == 200 && bytes == first,
            "reads go on after a full disk"
        );
        node.stop();
        let report = codex_actors::repair::inspect(&mnt.path().join("data"))?;
        assert_eq!(
            (report.damaged_blocks, report.missing_bytes),
            (0, 0),
            "{report:?}"
        );
        Ok(())
    })();
    let _ = Command::new("umount").arg(mnt.path()).status();
    result
}

#[test]
fn a_quota_below_what_is_stored_still_starts_and_serves_reads() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let data = pattern(300_000);
    let node = TestNode::start_in(tmp.path(), |c| c)?;
    let cid = upload_ok(&node, &data)?;
    node.stop();
    // Codex refuses to start here; we serve reads and refuse writes.
    let node = TestNode::start_in(tmp.path(), |c| Config {
        quota_max_bytes: 65536,
        ..c
    })?;
    let (status, _, body) = download(&node, &cid, None)?;
    assert!(status == 200 && body == data);
    let (status, body) = upload(&node, b"one more", None, None)?;
    assert_eq!(status, 507, "{body}");
    let (_, space) = get_json(&node, "/space")?;
    assert_eq!(space["quotaMaxBytes"], 65536);
    assert!(space["quotaUsedBytes"].as_u64().unwrap_or(0) > 65536);
    Ok(())
}

#[test]
fn expect_100_continue_and_chunked_bodies_work() -> TestResult {
    let node = TestNode::start()?;
    let mut stream = TcpStream::connect(node.addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "POST /api/codex/v1/data HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: 18\r\nExpect: 100-continue\r\n\r\n", node.addr)?;
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf)?;
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100 Continue"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    stream.write_all(b"some file contents")?;
    let mut reply = vec![0u8; 1024];
    let n = stream.read(&mut reply)?;
    let reply = String::from_utf8_lossy(&reply[..n]);
    assert!(
        reply.starts_with("HTTP/1.1 200")
            && reply.ends_with("zDvZRwzm1ePSzKSXt57D5YxHwcSDmsCyYN65wW4HT7fuX9HrzFXy"),
        "{reply}"
    );

    let chunked = b"POST /api/codex/v1/data HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nsome \r\nd\r\nfile contents\r\n0\r\n\r\n";
    let reply = raw(&node, chunked)?;
    assert!(
        reply.contains("zDvZRwzm1ePSzKSXt57D5YxHwcSDmsCyYN65wW4HT7fuX9HrzFXy"),
        "{reply}"
    );
    Ok(())
}

#[test]
fn hostile_headers_and_methods_get_4xx() -> TestResult {
    let node = TestNode::start()?;
    let (_, before) = get_json(&node, "/space")?;
    // Invalid UTF-8 in the filename.
    let mut req = b"POST /api/codex/v1/data HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 3\r\nContent-Disposition: attachment; filename=\"\xff\xfe.bin\"\r\n\r\nabc".to_vec();
    assert!(raw(&node, &req)?.starts_with("HTTP/1.1 422"));
    // Control characters in the filename.
    req = b"POST /api/codex/v1/data HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 3\r\nContent-Disposition: attachment; filename=\"a\x01b\"\r\n\r\nabc".to_vec();
    assert!(raw(&node, &req)?.starts_with("HTTP/1.1 4"));
    // A 100 KB header is refused by the HTTP layer before any handler runs.
    let huge = format!(
        "GET /api/codex/v1/space HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    let reply = raw(&node, huge.as_bytes())?;
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    // Wrong methods on known routes.
    for (method, path) in [
        ("PUT", "/api/codex/v1/data"),
        ("POST", "/api/codex/v1/space"),
        (
            "PATCH",
            "/api/codex/v1/data/zDvZRwzmC3Q7e7NLkfsPmtgSCfectUc1ssn5xK2rzC9yRz1yeZuK",
        ),
    ] {
        let reply = raw(&node, format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").as_bytes())?;
        assert!(
            reply.starts_with("HTTP/1.1 405") || reply.starts_with("HTTP/1.1 404"),
            "{method} {path}: {reply}"
        );
    }
    assert_eq!(get_json(&node, "/space")?.1, before, "nothing was stored");
    Ok(())
}

#[test]
fn uploads_over_the_configured_limit_are_413_and_leave_nothing() -> TestResult {
    let node = TestNode::start_http(codex_node::HttpConfig {
        max_upload_bytes: 200_000,
        ..Default::default()
    })?;
    let (status, body) = upload(&node, &pattern(300_000), None, None)?;
    assert_eq!(status, 413, "{body}");
    let empty = eventually(Duration::from_secs(10), || {
        Ok(get_json(&node, "/space")?.1["totalBlocks"] == 0)
    })?;
    assert!(empty, "the refused upload left blocks");
    assert_eq!(
        upload(&node, &pattern(200_000), None, None)?.0,
        200,
        "at the limit is fine"
    );
    Ok(())
}

#[test]
fn malformed_cids_are_400() -> TestResult {
    // Well-formed CIDs of other kinds (CIDv0, raw codec) are not malformed: see errors.rs.
    let node = TestNode::start()?;
    let good = "zDvZRwzmC3Q7e7NLkfsPmtgSCfectUc1ssn5xK2rzC9yRz1yeZuK";
    let huge = "z".repeat(5000);
    let cases = [
        (
            "wrong base",
            "xDvZRwzmC3Q7e7NLkfsPmtgSCfectUc1ssn5xK2rzC9yRz1yeZuK",
        ),
        ("truncated", &good[..20]),
        (
            "bad base58 character",
            "zDvZRwzmC3Q7e7NLkfsPmtgSCfectUc1ssn5xK2rzC9yRz1yeZu0",
        ),
        ("huge", huge.as_str()),
        ("percent-encoded junk", "%00%ff"),
    ];
    for (what, cid) in cases {
        let (status, _, body) = download(&node, cid, None)?;
        assert_eq!(status, 400, "{what}: {}", String::from_utf8_lossy(&body));
        assert_eq!(
            get_json(&node, &format!("/data/{cid}/exists"))?.0,
            400,
            "{what}"
        );
        assert_eq!(
            text(agent().delete(node.url(&format!("/data/{cid}"))).call()?)?.0,
            400,
            "{what}"
        );
    }
    Ok(())
}

#[test]
fn thousands_of_idle_connections_do_not_stop_the_node() -> TestResult {
    let node = TestNode::start()?;
    let mut idle = Vec::new();
    for _ in 0..2000 {
        idle.push(TcpStream::connect(node.addr)?);
    }
    let started = Instant::now();
    let cid = upload_ok(&node, b"still serving")?;
    let (status, _, body) = download(&node, &cid, None)?;
    assert!(status == 200 && body == b"still serving");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    drop(idle);
    Ok(())
}
