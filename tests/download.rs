//! Downloads: exact bytes, Codex headers, and HTTP Range (which Codex lacks, its #206).

mod common;

use common::*;

fn header<'a>(h: &'a ureq::http::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

#[test]
fn headers_follow_codex() -> TestResult {
    let node = TestNode::start()?;
    let data = pattern(100_000);
    let (status, cid) = upload(&node, &data, Some("data.bin"), Some("application/json"))?;
    assert_eq!(status, 200);
    let (status, h, body) = download(&node, &cid, None)?;
    assert_eq!(status, 200);
    assert!(body == data);
    assert_eq!(header(&h, "content-type"), Some("application/json"));
    assert_eq!(
        header(&h, "content-disposition"),
        Some("attachment; filename=\"data.bin\"")
    );
    assert_eq!(header(&h, "content-length"), Some("100000"));
    assert_eq!(header(&h, "accept-ranges"), Some("bytes"));
    assert_eq!(
        header(&h, "access-control-expose-headers"),
        Some("Content-Disposition")
    );

    let cid = upload_ok(&node, b"no name")?;
    let (_, h, _) = download(&node, &cid, None)?;
    assert_eq!(header(&h, "content-type"), Some("application/octet-stream"));
    assert_eq!(header(&h, "content-disposition"), Some("attachment"));
    Ok(())
}

#[test]
fn ranges_read_exactly_the_asked_bytes() -> TestResult {
    let node = TestNode::start()?;
    let data = pattern(5 * 65536 + 123);
    let cid = upload_ok(&node, &data)?;
    let len = data.len();
    let cases: Vec<(String, std::ops::Range<usize>)> = vec![
        ("bytes=0-0".into(), 0..1),
        ("bytes=65530-65545".into(), 65530..65546), // across a block boundary
        ("bytes=65536-131071".into(), 65536..131072), // exactly one block
        ("bytes=100000-".into(), 100_000..len),
        ("bytes=-10".into(), len - 10..len),
        (format!("bytes=10-{}", len + 500), 10..len), // end past the size is clamped
        (format!("bytes=-{}", len * 2), 0..len),
    ];
    for (range, want) in cases {
        let (status, h, body) = download(&node, &cid, Some(&range))?;
        assert_eq!(status, 206, "{range}");
        assert!(body.as_slice() == &data[want.clone()], "{range}");
        let content_range = format!("bytes {}-{}/{len}", want.start, want.end - 1);
        assert_eq!(
            header(&h, "content-range"),
            Some(content_range.as_str()),
            "{range}"
        );
        assert_eq!(
            header(&h, "content-length"),
            Some(want.len().to_string().as_str())
        );
    }
    Ok(())
}

#[test]
fn unsatisfiable_ranges_are_416_and_unusable_ones_ignored() -> TestResult {
    let node = TestNode::start()?;
    let data = pattern(1000);
    let cid = upload_ok(&node, &data)?;
    let (status, h, _) = download(&node, &cid, Some("bytes=1000-"))?;
    assert_eq!(status, 416);
    assert_eq!(header(&h, "content-range"), Some("bytes */1000"));
    // Another unit must be ignored (RFC 9110 §14.2); a malformed bytes range may be, and is, as
    // Codex ignores every Range header: the whole dataset, 200.
    for unusable in ["bytes=x-y", "lines=1-2", "bytes=9-3", "bytes", "bytes=-"] {
        let (status, h, body) = download(&node, &cid, Some(unusable))?;
        assert_eq!(status, 200, "{unusable}");
        assert!(body == data, "{unusable}");
        assert_eq!(header(&h, "content-range"), None);
    }
    // Several ranges: RFC 9110 lets us answer with the whole dataset.
    let (status, _, body) = download(&node, &cid, Some("bytes=0-1,5-6"))?;
    assert_eq!(status, 200);
    assert!(body == data);
    Ok(())
}

#[test]
fn datasets_survive_a_restart() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let data = pattern(700_000);
    let node = TestNode::start_in(tmp.path(), |c| c)?;
    let cid = upload_ok(&node, &data)?;
    let (_, space) = get_json(&node, "/space")?;
    node.stop();
    let node = TestNode::start_in(tmp.path(), |c| c)?;
    let (status, _, body) = download(&node, &cid, None)?;
    assert_eq!(status, 200);
    assert!(body == data);
    assert_eq!(
        get_json(&node, "/space")?.1,
        space,
        "counters are persisted"
    );
    Ok(())
}

#[test]
fn a_corrupted_block_is_an_error_never_data() -> TestResult {
    let node = TestNode::start()?;
    let data: Vec<u8> = [11u8, 12, 13]
        .iter()
        .flat_map(|t| vec![*t; 65536])
        .collect();
    let cid = upload_ok(&node, &data)?;
    // Flip bytes inside the first block in the segment file: one run, its header in the first
    // 4 KiB, then the blocks (actors/src/segments/append.rs).
    let segment = node.data_dir.join("blocks").join("seg-00000000.dat");
    let file = std::fs::OpenOptions::new().write(true).open(&segment)?;
    std::os::unix::fs::FileExt::write_all_at(&file, b"\xff\x00\xff\x00", 4096 + 1000)?;
    file.sync_all()?;
    let (status, _, body) = download(&node, &cid, None)?;
    assert_eq!(status, 500);
    assert!(
        String::from_utf8_lossy(&body).contains("corrupted"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    // Blocks that are intact are still served.
    let (status, _, body) = download(&node, &cid, Some("bytes=65536-131071"))?;
    assert_eq!(status, 206);
    assert!(body.iter().all(|b| *b == 12));
    Ok(())
}
