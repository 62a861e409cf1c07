//! The `upload` and `download` commands against a real node: CIDs on stdout, files round trip,
//! and exit codes for a refusing node, a missing file and a node that is down.

mod common;

use common::*;

#[test]
fn upload_prints_the_cid_and_download_writes_the_file() -> TestResult {
    let node = TestNode::start()?;
    let api = format!("http://{}", node.addr);
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("in.bin");
    std::fs::write(&input, pattern(458_752))?;
    let (code, stdout, stderr) = cli(&["upload", input.to_str().ok_or("path")?, "--api", &api])?;
    assert_eq!(code, 0, "{stderr}");
    let cid = stdout.trim();
    assert_eq!(
        cid,
        upload_ok(&node, &pattern(458_752))?,
        "same CID as a raw HTTP upload"
    );
    assert_eq!(stdout, format!("{cid}\n"), "just the CID, for scripts");

    let output = dir.path().join("out.bin");
    let (code, _, stderr) = cli(&[
        "download",
        cid,
        "-o",
        output.to_str().ok_or("path")?,
        "--api",
        &api,
    ])?;
    assert_eq!(code, 0, "{stderr}");
    assert!(std::fs::read(&output)? == pattern(458_752));

    // With a name and type, the manifest records them (the CID of the vector with both).
    let (code, stdout, _) = cli(&[
        "upload",
        input.to_str().ok_or("path")?,
        "--api",
        &api,
        "--filename",
        "data.bin",
        "--mime",
        "application/octet-stream",
    ])?;
    assert_eq!(
        (code, stdout.trim()),
        (0, "zDvZRwzkx7sNa99SWiHbcZTgC6TwnH8NbadoGWqT6JmJXRu5i8LY")
    );
    Ok(())
}

#[test]
fn failures_have_distinct_exit_codes_and_messages() -> TestResult {
    let node = TestNode::start()?;
    let api = format!("http://{}", node.addr);
    let (code, _, stderr) = cli(&["download", "not-a-cid", "--api", &api])?;
    assert_eq!(code, 1);
    assert!(
        stderr.contains("400") && stderr.contains("Incorrect Cid"),
        "{stderr}"
    );
    let (code, _, stderr) = cli(&["upload", "/no/such/file", "--api", &api])?;
    assert_eq!(code, 2);
    assert!(stderr.contains("/no/such/file"), "{stderr}");
    // A port nobody listens on: bind one, then free it.
    let free = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let (code, _, stderr) = cli(&[
        "download",
        "zDvZRwzm1ePSzKSXt57D5YxHwcSDmsCyYN65wW4HT7fuX9HrzFXy",
        "--api",
        &format!("http://{free}"),
    ])?;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("cannot reach the node"), "{stderr}");
    Ok(())
}
