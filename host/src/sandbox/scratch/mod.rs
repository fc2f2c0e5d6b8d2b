//! A private, size-bounded, writable `/tmp` per session, and `/dev/null`.
//!
//! # Why a host directory and not an in-memory filesystem
//!
//! Python code expects a writable `/tmp` (`tempfile`, `sqlite3`, test
//! suites). An in-memory filesystem of our own would mean a second
//! implementation of the ~30 calls of `wasi:filesystem` (paths, `..`,
//! symlinks, rename semantics, directory streams), each a new place for a
//! sandbox escape or a panic. Instead each session gets a fresh host
//! directory, served by wasmtime-wasi's own capability-checked filesystem
//! code, exactly like a `--dir` mount. What the host adds is only the size
//! limit: [`ScratchFs`] wraps wasmtime-wasi's `wasi:filesystem` host and,
//! for descriptors inside the scratch directory, refuses growth past the
//! session's [`SessionConfig::scratch_limit`](super::SessionConfig) with
//! `ENOSPC` before anything reaches the disk.
//!
//! The directories live under `/dev/shm/pushy-scratch-UID/` when `/dev/shm`
//! is a writable directory (tmpfs: memory, never the disk), else under
//! `$TMPDIR/pushy-scratch-UID/`; that root is created 0700 and must be ours.
//! A session's directory (`PID-N`) holds `tmp/` (the guest's `/tmp`) and
//! `dev/null` (an empty file, the guest's `/dev` read-only: writes to it
//! are discarded by the wrapper). It is removed when the session's state is
//! dropped; directories of processes that died without removing theirs are
//! removed when a new one is created.
//!
//! # What counts
//!
//! A write's growth is `max(0, end of write - current size)` (so a write far
//! past the end is refused whole: no sparse-file trick), and every entry
//! created (file, directory, symlink, hard link) costs [`ENTRY_COST`]. The
//! running estimate only ever grows, so it never falls below the real usage;
//! when it would pass the limit and something was freed since the last look
//! (unlink, rmdir, rename, truncation), the usage is measured exactly by
//! walking the directory.

mod stream;
mod wrapper;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub(super) use wrapper::{ScratchFs, ScratchState, ScratchView};

/// What one directory entry costs against the limit: a file's, a
/// directory's or a link's inode and directory slot are not free, so a
/// million empty files cannot be made.
pub(crate) const ENTRY_COST: u64 = 4096;

/// The guest path of the scratch directory.
pub(super) const TMP_GUEST: &str = "/tmp";
/// The guest path of the directory holding `null`.
pub(super) const DEV_GUEST: &str = "/dev";

/// Numbers the directories of this process's sessions.
static NEXT_SESSION: AtomicU64 = AtomicU64::new(0);

/// A session's scratch directory on the host, removed (recursively) on drop.
#[derive(Debug)]
pub(crate) struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// A fresh, empty directory for one session (with `tmp/` and `dev/null`).
    pub(crate) fn create() -> Result<ScratchDir, super::SandboxError> {
        let root = root()?;
        remove_stale(&root);
        let pid = std::process::id();
        let path = root.join(format!(
            "{pid}-{}",
            NEXT_SESSION.fetch_add(1, Ordering::Relaxed)
        ));
        let made = make_session_dir(&path);
        // Owned from here on: a half-made directory is removed too.
        let dir = ScratchDir { path };
        made.map_err(|source| scratch_error(dir.path.clone(), source))?;
        Ok(dir)
    }

    /// The host directory the guest sees as `/tmp`.
    pub(crate) fn tmp(&self) -> PathBuf {
        self.path.join("tmp")
    }

    /// The host directory the guest sees as `/dev`.
    pub(crate) fn dev(&self) -> PathBuf {
        self.path.join("dev")
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.path)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), %error, "could not remove a scratch directory");
        }
    }
}

fn make_session_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let mut builder = std::fs::DirBuilder::new();
    builder.mode(0o700);
    if let Err(error) = builder.create(path) {
        if error.kind() != std::io::ErrorKind::AlreadyExists {
            return Err(error);
        }
        // Left by an earlier process that had our pid and died.
        std::fs::remove_dir_all(path)?;
        builder.create(path)?;
    }
    builder.create(path.join("tmp"))?;
    builder.create(path.join("dev"))?;
    std::fs::File::create_new(path.join("dev").join("null"))?;
    Ok(())
}

/// Where this user's scratch directories live: `/dev/shm/pushy-scratch-UID`
/// when `/dev/shm` is a writable directory, else
/// `$TMPDIR/pushy-scratch-UID`; created 0700, and refused unless it is a
/// directory of ours that only we can use.
pub fn root() -> Result<PathBuf, super::SandboxError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let uid = rustix::process::getuid().as_raw();
    let name = format!("pushy-scratch-{uid}");
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() && writable(shm) {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(name);
    if let Err(error) = std::fs::DirBuilder::new().mode(0o700).create(&dir)
        && error.kind() != std::io::ErrorKind::AlreadyExists
    {
        return Err(scratch_error(dir, error));
    }
    let meta = match std::fs::symlink_metadata(&dir) {
        Ok(meta) => meta,
        Err(error) => return Err(scratch_error(dir, error)),
    };
    if meta.is_dir() && meta.uid() == uid && meta.mode() & 0o077 == 0 {
        Ok(dir)
    } else {
        let error = std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "not a directory of this user's that only this user can use",
        );
        Err(scratch_error(dir, error))
    }
}

fn scratch_error(path: PathBuf, source: std::io::Error) -> super::SandboxError {
    super::SandboxError::Scratch { path, source }
}

fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
    unsafe { libc::access(path.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

/// Removes the directories of processes that are no longer alive.
fn remove_stale(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    let own = std::process::id();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|name| name.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own || alive(pid) {
            continue;
        }
        // Another process may be removing it at the same time: errors do not matter.
        let _ = std::fs::remove_dir_all(entry.path());
    }
}

fn alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    !matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

/// The running estimate of a scratch directory's usage against its limit.
#[derive(Debug)]
pub(crate) struct Quota {
    limit: u64,
    used: u64,
    /// Something was freed since the usage was last measured.
    freed: bool,
}

impl Quota {
    pub(crate) fn new(limit: u64) -> Quota {
        Quota {
            limit,
            used: 0,
            freed: false,
        }
    }

    /// Takes `growth` bytes if they fit; if not and something was freed
    /// since, measures the exact usage (`measure`, `None` when it could not)
    /// and tries again.
    pub(crate) fn reserve(&mut self, growth: u64, measure: impl FnOnce() -> Option<u64>) -> bool {
        if self.fits(growth) {
            self.used += growth;
            return true;
        }
        if !std::mem::take(&mut self.freed) {
            return false;
        }
        if let Some(exact) = measure() {
            self.used = exact;
        }
        if self.fits(growth) {
            self.used += growth;
            return true;
        }
        false
    }

    /// Gives back what a reservation took for an operation that failed.
    pub(crate) fn refund(&mut self, amount: u64) {
        self.used = self.used.saturating_sub(amount);
    }

    /// Something may have been freed: the next refusal measures first.
    pub(crate) fn note_freed(&mut self) {
        self.freed = true;
    }

    fn fits(&self, growth: u64) -> bool {
        self.used
            .checked_add(growth)
            .is_some_and(|total| total <= self.limit)
    }
}

/// Growth of a file of `size` bytes by a write of `len` bytes at `offset`;
/// `None` when the end is past what a file offset can say.
pub(crate) fn growth(size: u64, offset: u64, len: u64) -> Option<u64> {
    if len == 0 {
        return Some(0);
    }
    Some(offset.checked_add(len)?.saturating_sub(size))
}

/// The status of an open file (`None` if it cannot be read).
fn fstat(file: &cap_std::fs::File) -> Option<libc::stat> {
    use std::os::fd::AsRawFd;
    // SAFETY: `stat` is plain data that fstat fills in; the descriptor is
    // the open file's own, alive for the borrow.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    (unsafe { libc::fstat(file.as_raw_fd(), &mut stat) } == 0).then_some(stat)
}

/// Whether `file` is no longer linked anywhere (its space is freed when it
/// is closed); `true` if that cannot be told, so the usage is measured.
pub(crate) fn unlinked(file: &cap_std::fs::File) -> bool {
    fstat(file).is_none_or(|stat| stat.st_nlink == 0)
}

/// The usage of the tree under `root` as [`Quota`] counts it: every entry
/// costs [`ENTRY_COST`], every regular file its length (hard links once),
/// and so does every file of `open` that is no longer linked anywhere (its
/// space is held until it is closed). `None` if any part could not be read
/// (the estimate then stands).
pub(crate) fn measure<'a>(
    root: &Path,
    open: impl Iterator<Item = &'a cap_std::fs::File>,
) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total: u64 = 0;
    let mut seen = HashSet::new();
    for file in open {
        let stat = fstat(file)?;
        if stat.st_nlink == 0 && seen.insert((stat.st_dev, stat.st_ino)) {
            total = total
                .saturating_add(ENTRY_COST)
                .saturating_add(stat.st_size.max(0) as u64);
        }
    }
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).ok()? {
            let entry = entry.ok()?;
            // Not following symlinks.
            let meta = entry.metadata().ok()?;
            total = total.saturating_add(ENTRY_COST);
            if meta.is_dir() {
                pending.push(entry.path());
            } else if meta.is_file() && seen.insert((meta.dev(), meta.ino())) {
                total = total.saturating_add(meta.len());
            }
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_takes_what_fits_and_refuses_the_rest() {
        let mut quota = Quota::new(10_000);
        assert!(quota.reserve(ENTRY_COST, || unreachable!()));
        assert!(quota.reserve(10_000 - ENTRY_COST, || unreachable!()));
        // Exactly at the limit; one byte more is refused, and nothing was
        // freed, so the usage is not measured.
        assert!(!quota.reserve(1, || panic!("measured without a free")));
        assert!(quota.reserve(0, || unreachable!()));
        // A free makes the next refusal measure, once.
        quota.note_freed();
        assert!(quota.reserve(5_000, || Some(4_000)));
        assert!(!quota.reserve(2_000, || panic!("measured twice")));
        quota.refund(5_000);
        assert!(quota.reserve(2_000, || unreachable!()));
        // A failed measurement keeps the estimate.
        quota.note_freed();
        assert!(!quota.reserve(u64::MAX, || None));
        assert!(!quota.reserve(5_000, || unreachable!()));
    }

    #[test]
    fn growth_counts_the_end_of_a_write_past_the_size() {
        assert_eq!(growth(100, 0, 50), Some(0));
        assert_eq!(growth(100, 90, 20), Some(10));
        assert_eq!(growth(0, 1 << 40, 1), Some((1 << 40) + 1));
        assert_eq!(growth(0, u64::MAX, 0), Some(0));
        assert_eq!(growth(0, u64::MAX, 2), None);
    }

    #[test]
    fn measure_counts_entries_and_sizes_once_per_inode() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 100]).unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::hard_link(dir.path().join("a"), dir.path().join("d").join("b")).unwrap();
        std::os::unix::fs::symlink("a", dir.path().join("s")).unwrap();
        assert_eq!(
            measure(dir.path(), std::iter::empty()),
            Some(4 * ENTRY_COST + 100)
        );
    }
}
