//! Uploads over real HTTP give the same CIDs a Codex node gives (shared/reference vectors).

mod common;

use common::*;
use serde_json::Value;

fn vectors() -> TestResult<Vec<Value>> {
    let text = include_str!("data/codex-vectors.json");
    let doc: Value = serde_json::from_str(text)?;
    Ok(doc["vectors"].as_array().cloned().unwrap_or_default())
}

fn input_of(v: &Value) -> Vec<u8> {
    let input = v["input"].as_str().unwrap_or_default();
    if input.starts_with("some file contents") {
        b"some file contents".to_vec()
    } else {
        pattern(v["bytes"].as_u64().unwrap_or_default() as usize)
    }
}

#[test]
fn every_codex_vector_gets_the_codex_manifest_cid() -> TestResult {
    let node = TestNode::start()?;
    let vectors = vectors()?;
    assert!(vectors.len() >= 8, "vector file is incomplete");
    for v in &vectors {
        let data = input_of(v);
        assert_eq!(data.len() as u64, v["bytes"].as_u64().unwrap_or_default());
        let (status, cid) = upload(&node, &data, v["filename"].as_str(), v["mimetype"].as_str())?;
        assert_eq!(status, 200, "{}: {cid}", v["input"]);
        assert_eq!(
            cid,
            v["manifestCid"].as_str().unwrap_or_default(),
            "{}",
            v["input"]
        );

        let (status, m) = get_json(&node, &format!("/data/{cid}/network/manifest"))?;
        assert_eq!(status, 200);
        assert_eq!(m["cid"], cid.as_str());
        assert_eq!(m["manifest"]["treeCid"], v["treeCid"], "{}", v["input"]);
        assert_eq!(m["manifest"]["datasetSize"], v["bytes"]);
        assert_eq!(m["manifest"]["blockSize"], 65536);
        assert_eq!(m["manifest"]["protected"], false);
        assert_eq!(m["manifest"]["filename"], v["filename"]);
        assert_eq!(m["manifest"]["mimetype"], v["mimetype"]);
        for block in v["blockCids"].as_array().into_iter().flatten() {
            let (status, exists) = get_json(
                &node,
                &format!("/data/{}/exists", block.as_str().unwrap_or_default()),
            )?;
            assert_eq!(status, 200);
            assert_eq!(
                exists[block.as_str().unwrap_or_default()],
                true,
                "block {block} stored"
            );
        }
    }
    node.stop();
    Ok(())
}

#[test]
fn space_after_the_codex_test_upload_matches_codex() -> TestResult {
    let node = TestNode::start()?;
    upload_ok(&node, b"some file contents")?;
    let (status, space) = get_json(&node, "/space")?;
    assert_eq!(status, 200);
    assert_eq!(space["totalBlocks"], 2);
    assert_eq!(space["quotaMaxBytes"], 21_474_836_480u64);
    assert_eq!(
        space["quotaUsedBytes"], 65_592,
        "one padded block + a 56-byte manifest"
    );
    assert_eq!(space["quotaReservedBytes"], 0);
    // The texts a live Codex node answered for the same upload: same keys in the same order.
    let text = |path: &str| -> TestResult<String> {
        Ok(common::text(agent().get(node.url(path)).call()?)?.1)
    };
    assert_eq!(
        text("/space")?,
        r#"{"totalBlocks":2,"quotaMaxBytes":21474836480,"quotaUsedBytes":65592,"quotaReservedBytes":0}"#
    );
    let entry = r#"{"cid":"zDvZRwzm1ePSzKSXt57D5YxHwcSDmsCyYN65wW4HT7fuX9HrzFXy","manifest":{"treeCid":"zDzSvJTezk7bJNQqFq8k1iHXY84psNuUfZVusA5bBQQUSuyzDSVL","datasetSize":18,"blockSize":65536,"filename":null,"mimetype":null,"protected":false}}"#;
    assert_eq!(
        text("/data/zDvZRwzm1ePSzKSXt57D5YxHwcSDmsCyYN65wW4HT7fuX9HrzFXy/network/manifest")?,
        entry
    );
    assert_eq!(text("/data")?, format!(r#"{{"content":[{entry}]}}"#));
    Ok(())
}

#[test]
fn same_content_twice_gives_the_same_cid_and_is_stored_once() -> TestResult {
    let node = TestNode::start()?;
    let data = pattern(300_000);
    let first = upload_ok(&node, &data)?;
    let (_, before) = get_json(&node, "/space")?;
    let second = upload_ok(&node, &data)?;
    assert_eq!(first, second);
    let (_, after) = get_json(&node, "/space")?;
    assert_eq!(before, after, "a repeated upload stores nothing new");
    let other = upload_ok(&node, &pattern(300_001))?;
    assert_ne!(first, other, "different content, different CID");
    Ok(())
}

#[test]
fn interesting_sizes_round_trip_byte_for_byte() -> TestResult {
    let node = TestNode::start()?;
    for (k, &size) in INTERESTING_SIZES.iter().enumerate() {
        // A different phase of the pattern per size, so no two uploads share a block.
        let data: Vec<u8> = (0..size)
            .map(|i| ((7 * i + 3 + 17 * (k + 1)) % 251) as u8)
            .collect();
        let cid = upload_ok(&node, &data)?;
        let (status, headers, body) = download(&node, &cid, None)?;
        assert_eq!(status, 200);
        assert_eq!(body.len(), size, "exact length, no padding");
        assert!(body == data, "content of size {size} differs");
        assert_eq!(
            headers.get("content-length").and_then(|v| v.to_str().ok()),
            Some(size.to_string().as_str())
        );
    }
    let (_, space) = get_json(&node, "/space")?;
    let blocks: u64 = INTERESTING_SIZES
        .iter()
        .map(|s| s.div_ceil(65536) as u64 + 1)
        .sum();
    assert_eq!(space["totalBlocks"], blocks);
    // Manifest sizes vary by a byte or two with the varint of the size; data blocks are exact.
    let data_bytes: u64 = INTERESTING_SIZES
        .iter()
        .map(|s| s.div_ceil(65536) as u64 * 65536)
        .sum();
    let used_now = space["quotaUsedBytes"].as_u64().unwrap_or_default();
    assert!(
        used_now > data_bytes && used_now < data_bytes + 60 * INTERESTING_SIZES.len() as u64,
        "{used_now}"
    );
    Ok(())
}
