//! Records the git revision the binary is built from, for `/debug/info`'s `codex.revision`
//! (Codex reports its own there). Outside a git checkout it is "unknown".

use std::process::Command;

fn main() {
    let revision = Command::new("git")
        .args(["rev-parse", "--short=8", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=CODEX_NODE_REVISION={revision}");
    // A new commit changes HEAD's target; a checkout changes HEAD itself.
    // (Only paths that exist: cargo reruns a build script whose watched path is missing every
    // time, which would relink the binary on every build.)
    for path in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
