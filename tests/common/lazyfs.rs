//! LazyFS for power-cut tests: a FUSE file system that keeps written data in its own cache until
//! `fsync`/`fdatasync`, and drops every unsynced byte on `lazyfs::clear-cache`.
//!
//! The packaged scripts (`build.sh`, `mount.sh`, `umount.sh`, `fault.sh`, see their README) are
//! found in `$LAZYFS_SRC`, else `../shared/tools/lazyfs` next to this crate, else
//! `/work/shared/tools/lazyfs`. That folder may be read-only, so it is copied to
//! `$CARGO_TARGET_TMPDIR/lazyfs` and built there (`build.sh` installs its Debian build
//! dependencies when missing; a re-run takes a fraction of a second). The copy is made again,
//! and so rebuilt, whenever the source's fingerprint (a hash of every file's path and bytes)
//! differs from the one recorded beside it: a patched LazyFS is never tested as the old one.
//!
//! Only two situations make a test skip rather than fail: no `/dev/fuse`, and a mount that the
//! kernel or `fusermount3` refuses. A build failure is a failure.
//!
//! Caveats that shape the tests (LazyFS README): once its cache is full, writes go straight to
//! the backing directory and survive a clear, so [`Mount::cache_usage_percent`] is checked
//! before each clear; directory fsyncs are not simulated (create, rename and unlink are durable
//! at once), so a missing directory fsync cannot be found this way.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
    time::{Duration, Instant},
};

use super::TestResult;

/// The built LazyFS scripts and binary.
#[derive(Debug, Clone)]
pub struct LazyFs {
    /// The writable copy holding the scripts.
    scripts: PathBuf,
    /// The `lazyfs` binary `build.sh` produced.
    bin: PathBuf,
}

/// Why a power-cut test cannot run here (it then skips instead of failing).
pub type SkipReason = String;

fn source_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LAZYFS_SRC") {
        return dir.into();
    }
    let next_to_crate = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/lazyfs");
    if next_to_crate.join("build.sh").exists() {
        return next_to_crate;
    }
    PathBuf::from("/work/shared/tools/lazyfs")
}

fn run(cmd: &mut Command) -> TestResult<Output> {
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(out)
}

/// A hash of every file below `dir` (relative path and bytes), in path order, as hex text.
fn fingerprint(dir: &Path) -> TestResult<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                walk(&path, out)?;
            } else {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, &mut files)?;
    files.sort();
    let mut all = Vec::new();
    for f in files {
        all.extend_from_slice(f.strip_prefix(dir)?.to_string_lossy().as_bytes());
        all.push(0);
        all.extend_from_slice(&codex_actors::format::cid::sha256(&std::fs::read(&f)?));
    }
    let digest = codex_actors::format::cid::sha256(&all);
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}

fn build() -> Result<LazyFs, String> {
    let src = source_dir();
    let scripts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lazyfs");
    let step = || -> TestResult<LazyFs> {
        if !src.join("build.sh").exists() {
            return Err(format!("no LazyFS sources at {} (set LAZYFS_SRC)", src.display()).into());
        }
        let stamp = scripts.join(".source-fingerprint");
        let fingerprint = fingerprint(&src)?;
        let current = std::fs::read_to_string(&stamp).unwrap_or_default();
        if !scripts.join("build.sh").exists() || current != fingerprint {
            let _ = std::fs::remove_dir_all(&scripts);
            run(Command::new("cp").arg("-r").arg(&src).arg(&scripts))?;
            run(Command::new("chmod").args(["-R", "u+w"]).arg(&scripts))?;
            std::fs::write(&stamp, &fingerprint)?;
        }
        let started = Instant::now();
        let out = run(Command::new("bash").arg(scripts.join("build.sh")))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let bin = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
        if !bin.is_file() {
            return Err(format!("build.sh printed no binary path: {stdout}").into());
        }
        eprintln!(
            "LazyFS ready at {} ({:.1} s)",
            bin.display(),
            started.elapsed().as_secs_f64()
        );
        Ok(LazyFs { scripts, bin })
    };
    step().map_err(|e| format!("building LazyFS from {} failed: {e}", src.display()))
}

/// LazyFS, built on first use. `Ok(Err(reason))` when this machine cannot mount FUSE file
/// systems at all; `Err` when the build fails.
pub fn lazyfs() -> TestResult<Result<LazyFs, SkipReason>> {
    if !Path::new("/dev/fuse").exists() {
        return Ok(Err(
            "/dev/fuse does not exist (no FUSE in this machine or container)".into(),
        ));
    }
    static BUILT: OnceLock<Result<LazyFs, String>> = OnceLock::new();
    match BUILT.get_or_init(build) {
        Ok(fs) => Ok(Ok(fs.clone())),
        Err(e) => Err(e.clone().into()),
    }
}

/// One LazyFS mount in a temporary directory: `backing/` seen through `mnt/`, with a fault FIFO.
/// Unmounted on drop.
pub struct Mount {
    fs: LazyFs,
    cache: String,
    root: tempfile::TempDir,
    mounted: bool,
}

impl Mount {
    /// Mounts a fresh, empty backing directory with a cache of `cache` (e.g. `"1gb"`, allocated
    /// in RAM at once). `Ok(Err(reason))` when the kernel or `fusermount3` refuses the mount.
    pub fn new(fs: &LazyFs, cache: &str) -> TestResult<Result<Self, SkipReason>> {
        let root = tempfile::Builder::new().prefix("power").tempdir()?;
        let mut mount = Self {
            fs: fs.clone(),
            cache: cache.to_string(),
            root,
            mounted: false,
        };
        if let Err(refusal) = mount.mount()? {
            return Ok(Err(refusal));
        }
        Ok(Ok(mount))
    }

    /// The directory applications use.
    pub fn path(&self) -> PathBuf {
        self.root.path().join("mnt")
    }

    /// The real directory behind the mount (LazyFS fault paths are matched against it).
    pub fn backing(&self) -> PathBuf {
        self.root.path().join("backing")
    }

    fn fifo(&self) -> PathBuf {
        self.root.path().join("fault.fifo")
    }

    /// LazyFS' own log (fault acknowledgements, cache usage).
    pub fn log_path(&self) -> PathBuf {
        self.root.path().join("lazyfs.log")
    }

    fn script(&self, name: &str) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(self.fs.scripts.join(name))
            .env("LAZYFS_BIN", &self.fs.bin)
            .env("LAZYFS_STATE_DIR", self.root.path().join("state"));
        cmd
    }

    fn mount(&mut self) -> TestResult<Result<(), SkipReason>> {
        let out = self
            .script("mount.sh")
            .args(["--cache-size", &self.cache, "--log"])
            .arg(self.log_path())
            .arg(self.backing())
            .arg(self.path())
            .arg(self.fifo())
            .output()?;
        if out.status.success() {
            self.mounted = true;
            return Ok(Ok(()));
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let daemon = std::fs::read_dir(self.root.path().join("state"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join("stdout.log")).ok())
            .collect::<String>();
        let said = format!("{stderr}\n{daemon}");
        let refused = [
            "Operation not permitted",
            "Permission denied",
            "fuse: device not found",
            "mount failed",
            "only allowed if 'user_allow_other'",
        ];
        if refused.iter().any(|r| said.contains(r)) {
            return Ok(Err(format!("the FUSE mount was refused: {}", said.trim())));
        }
        Err(format!("mount.sh failed ({}): {}", out.status, said.trim()).into())
    }

    fn umount(&mut self) -> TestResult {
        if self.mounted {
            self.mounted = false;
            run(self.script("umount.sh").arg(self.path()))?;
        }
        Ok(())
    }

    /// Unmounts and mounts again: LazyFS starts with an empty cache and the kernel keeps no page
    /// of the old mount, so what the next reader sees is exactly what reached the backing files.
    pub fn remount(&mut self) -> TestResult {
        self.umount()?;
        self.mount()?
            .map_err(|refusal| format!("remount: {refusal}"))?;
        Ok(())
    }

    /// Sends one fault command (see the LazyFS README for the syntax).
    pub fn fault(&self, command: &str) -> TestResult {
        run(self.script("fault.sh").arg(self.fifo()).arg(command))?;
        Ok(())
    }

    /// The power cut: drops every byte not yet fsynced. Returns once LazyFS has done it.
    pub fn clear_cache(&self) -> TestResult {
        self.fault("lazyfs::clear-cache")
    }

    /// How full LazyFS' cache is, in percent of its pages. A full cache writes through, and
    /// data written then would survive the next clear.
    pub fn cache_usage_percent(&self) -> TestResult<u32> {
        const MARK: &str = "cache usage (%pages) is ";
        let count = |log: &str| log.matches(MARK).count();
        let before = count(&std::fs::read_to_string(self.log_path()).unwrap_or_default());
        self.fault("lazyfs::display-cache-usage")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            if count(&log) > before {
                let last = log.rsplit(MARK).next().unwrap_or_default();
                let digits: String = last.chars().take_while(char::is_ascii_digit).collect();
                return Ok(digits.parse()?);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err("LazyFS did not log its cache usage within 10 s".into())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Err(e) = self.umount() {
            eprintln!("could not unmount {}: {e}", self.path().display());
        }
    }
}
