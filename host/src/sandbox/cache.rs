//! On-disk cache of the compiled guest component.
//!
//! Compiling the component with Cranelift takes seconds; mapping the cached
//! artifact takes milliseconds. The file name carries the component's hash
//! and the engine's compatibility hash (wasmtime version and settings), so a
//! stale artifact is never picked up. The artifact is written by atomic
//! rename, owner-only, and its length is recorded in a sidecar file written
//! after it; wasmtime checks the format, version and settings itself when it
//! maps the file. A file that fails any check is deleted and the component
//! recompiled; an unwritable cache only costs the compile, with a warning.
//!
//! The contents are not checksummed: that would read all 60 MB at every
//! start, several times the cost of the whole start. The cache directory is
//! trusted like the binary itself (see SECURITY notes in the README).

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use wasmtime::Engine;
use wasmtime::component::Component;

use super::{SandboxError, boxed};

/// The cache directory: `$PUSHY_CACHE_DIR`, else `$XDG_CACHE_HOME/pushy`,
/// else `$HOME/.cache/pushy`; a variable that is empty (or, for the last two,
/// not absolute) counts as unset. Without any, a private directory of this
/// user's in the temporary directory, if it is safe to use: the cache is
/// trusted like the binary, so it must never land in the working directory
/// or in a place others can write.
pub(super) fn default_dir() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    if let Some(dir) = var("PUSHY_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    let absolute =
        |value: std::ffi::OsString| Some(PathBuf::from(value)).filter(|p| p.is_absolute());
    if let Some(dir) = var("XDG_CACHE_HOME").and_then(absolute) {
        return Some(dir.join("pushy"));
    }
    if let Some(home) = var("HOME").and_then(absolute) {
        return Some(home.join(".cache").join("pushy"));
    }
    private_temp_dir()
}

fn private_temp_dir() -> Option<PathBuf> {
    private_dir("pushy-cache")
}

/// `$TMPDIR/PREFIX-UID`, created 0700; `None` if it exists but is not a
/// directory of ours that only we can use.
pub(super) fn private_dir(prefix: &str) -> Option<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let uid = rustix::process::getuid().as_raw();
    let dir = std::env::temp_dir().join(format!("{prefix}-{uid}"));
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    let meta = std::fs::symlink_metadata(&dir).ok()?;
    if meta.is_dir() && meta.uid() == uid && meta.mode() & 0o077 == 0 {
        Some(dir)
    } else {
        tracing::warn!(
            dir = %dir.display(),
            "not a private directory of this user's; compiled code is not cached"
        );
        None
    }
}

/// Name of the cache file for this component on this engine.
pub(super) fn cache_file(engine: &Engine, component_sha256: &str, dir: &Path) -> PathBuf {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let short = &component_sha256[..16.min(component_sha256.len())];
    dir.join(format!("agent-{short}-{:016x}.cwasm", hasher.finish()))
}

pub(super) fn load_or_compile(
    engine: &Engine,
    component: &[u8],
    component_sha256: &str,
    dir: Option<&Path>,
) -> Result<Component, SandboxError> {
    let path = dir.map(|dir| cache_file(engine, component_sha256, dir));
    load_or_build(engine, path.as_deref(), || compile(engine, component))
}

/// Name of the cache file of a preloaded snapshot (`key`, see
/// `preload::cache_key`) of this component on this engine.
pub(super) fn snapshot_file(
    engine: &Engine,
    component_sha256: &str,
    key: &str,
    dir: &Path,
) -> PathBuf {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let short = &component_sha256[..16.min(component_sha256.len())];
    let key = &key[..32.min(key.len())];
    dir.join(format!(
        "preload-{short}-{key}-{:016x}.cwasm",
        hasher.finish()
    ))
}

/// Name of the cache file of this component instrumented for a preload's
/// snapshot (see `preload`), on this engine.
pub(super) fn instrumented_file(engine: &Engine, component_sha256: &str, dir: &Path) -> PathBuf {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let short = &component_sha256[..16.min(component_sha256.len())];
    dir.join(format!(
        "instrumented-{short}-{:016x}.cwasm",
        hasher.finish()
    ))
}

/// The compiled component at `path` if it is there and sound, else what
/// `build` makes, then stored at `path`.
pub(super) fn load_or_build(
    engine: &Engine,
    path: Option<&Path>,
    build: impl FnOnce() -> Result<Component, SandboxError>,
) -> Result<Component, SandboxError> {
    let Some(path) = path else {
        return build();
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    match load(engine, path) {
        Ok(Some(component)) => return Ok(component),
        Ok(None) => {}
        Err(reason) => {
            tracing::warn!(path = %path.display(), %reason, "discarding the compiled-component cache");
            let _ = std::fs::remove_file(path);
            let _ = std::fs::remove_file(sidecar(path));
        }
    }
    let compiled = build()?;
    if let Err(error) = store(&compiled, dir, path) {
        tracing::warn!(path = %path.display(), %error, "could not write the compiled-component cache");
    }
    prune(dir, path);
    Ok(compiled)
}

/// How long a preloaded snapshot may go unused before it is pruned.
const SNAPSHOT_UNUSED_FOR: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);
/// How long the compiled code of another build of this binary may go unused
/// before it is pruned (not at once: two builds may be in use side by side).
const OTHER_BUILD_UNUSED_FOR: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// After a new file was written to the cache: removes the compiled
/// components and snapshots of other builds of this binary (another
/// component hash in the name) unused for [`OTHER_BUILD_UNUSED_FOR`], and
/// snapshots unused for [`SNAPSHOT_UNUSED_FOR`]. Use refreshes a file's
/// modification time (see `load`).
fn prune(dir: &Path, written: &Path) {
    let Some(own) = written
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(component_part)
        .map(str::to_owned)
    else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    // This build's snapshots, newest first: beyond the most recent few,
    // the rest go (every edit under a preloaded path makes a new one).
    let mut own_snapshots: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(component) = component_part(name) else {
            continue;
        };
        if !name.ends_with(".cwasm") {
            continue;
        }
        if name.starts_with("preload-")
            && component == own
            && let Ok(modified) = entry.metadata().and_then(|m| m.modified())
        {
            own_snapshots.push((modified, path.clone()));
        }
        let age = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .unwrap_or_default();
        let stale = (component != own && age > OTHER_BUILD_UNUSED_FOR)
            || (name.starts_with("preload-") && age > SNAPSHOT_UNUSED_FOR);
        if stale {
            tracing::debug!(path = %path.display(), "pruning the cache");
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(sidecar(&path));
        }
    }
    own_snapshots.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
    for (_, path) in own_snapshots.into_iter().skip(SNAPSHOTS_KEPT) {
        tracing::debug!(path = %path.display(), "pruning an old snapshot");
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(sidecar(&path));
    }
}

/// How many preloaded snapshots of this build the cache keeps (the most
/// recently used); each is about the size of the compiled component.
const SNAPSHOTS_KEPT: usize = 8;

/// The component-hash part of a cache file name (`agent-HASH-…`,
/// `preload-HASH-…` or `instrumented-HASH-…`; `.cwasm` or `.len`).
fn component_part(name: &str) -> Option<&str> {
    let rest = name
        .strip_prefix("agent-")
        .or_else(|| name.strip_prefix("preload-"))
        .or_else(|| name.strip_prefix("instrumented-"))?;
    if !(name.ends_with(".cwasm") || name.ends_with(".len")) {
        return None;
    }
    rest.split('-').next()
}

fn compile(engine: &Engine, component: &[u8]) -> Result<Component, SandboxError> {
    Component::new(engine, component).map_err(|e| SandboxError::Compile(boxed(e)))
}

/// `Ok(None)`: no cache file. `Err`: a file that must not be used.
fn load(engine: &Engine, path: &Path) -> Result<Option<Component>, String> {
    let started = Instant::now();
    let recorded = match std::fs::read_to_string(sidecar(path)) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return if path.exists() {
                Err("no length record".into())
            } else {
                Ok(None)
            };
        }
        Err(e) => return Err(e.to_string()),
    };
    let actual = match std::fs::metadata(path) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    check_length(&recorded, actual)?;
    // SAFETY: the file was produced by `Component::serialize` of an engine
    // with the same compatibility hash (it is in the file name), written
    // owner-only by atomic rename, and has the length recorded after it was
    // written; wasmtime verifies its header, version and engine settings.
    let component = unsafe { Component::deserialize_file(engine, path) }
        .map_err(|e| format!("wasmtime refused it: {e}"))?;
    // Used: pruning goes by when a file was last used.
    let _ = std::fs::File::options()
        .append(true)
        .open(path)
        .and_then(|f| f.set_modified(std::time::SystemTime::now()));
    tracing::debug!(elapsed = ?started.elapsed(), "mapped the cached component");
    Ok(Some(component))
}

fn sidecar(path: &Path) -> PathBuf {
    path.with_extension("len")
}

/// Compares the recorded length with the file's.
pub(super) fn check_length(recorded: &str, actual: u64) -> Result<(), String> {
    let expected: u64 = recorded
        .trim()
        .parse()
        .map_err(|_| "unreadable length record".to_owned())?;
    if expected != actual {
        return Err(format!(
            "length {actual}, expected {expected}: truncated or replaced"
        ));
    }
    Ok(())
}

fn store(component: &Component, dir: &Path, path: &Path) -> Result<(), String> {
    let bytes = component.serialize().map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    write_atomically(dir, path, &bytes)?;
    write_atomically(dir, &sidecar(path), bytes.len().to_string().as_bytes())
}

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), String> {
    // NamedTempFile is created with mode 0600.
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(|e| e.to_string())?;
    file.write_all(bytes).map_err(|e| e.to_string())?;
    file.as_file().sync_all().map_err(|e| e.to_string())?;
    file.persist(path).map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_length;

    #[test]
    fn cache_names_carry_the_component_hash() {
        use super::component_part;
        assert_eq!(
            component_part("agent-0123abcd-ffff.cwasm"),
            Some("0123abcd")
        );
        assert_eq!(
            component_part("preload-0123abcd-key-ffff.len"),
            Some("0123abcd")
        );
        assert_eq!(component_part("agent-0123abcd-ffff.tmp"), None);
        assert_eq!(component_part("notes.txt"), None);
    }

    #[test]
    fn pruning_drops_other_builds_and_keeps_this_one() {
        let dir = tempfile::tempdir().unwrap();
        let keep = dir.path().join("agent-aaaa-1.cwasm");
        let keep_snapshot = dir.path().join("preload-aaaa-k-1.cwasm");
        let old_build = dir.path().join("agent-bbbb-1.cwasm");
        let old_len = dir.path().join("agent-bbbb-1.len");
        let other = dir.path().join("unrelated.txt");
        for path in [&keep, &keep_snapshot, &old_build, &old_len, &other] {
            std::fs::write(path, b"x").unwrap();
        }
        let age = |path: &std::path::Path, by: std::time::Duration| {
            std::fs::File::options()
                .append(true)
                .open(path)
                .unwrap()
                .set_modified(std::time::SystemTime::now() - by)
                .unwrap();
        };
        // Another build in use side by side stays.
        super::prune(dir.path(), &keep);
        assert!(old_build.exists() && old_len.exists());
        age(&old_build, super::OTHER_BUILD_UNUSED_FOR * 2);
        super::prune(dir.path(), &keep);
        assert!(keep.exists() && keep_snapshot.exists() && other.exists());
        assert!(!old_build.exists() && !old_len.exists());
        // Beyond the most recent few, this build's snapshots go, oldest
        // first (`keep_snapshot`, the newest, is one of those kept).
        let many: Vec<_> = (0..super::SNAPSHOTS_KEPT + 1)
            .map(|i| dir.path().join(format!("preload-aaaa-k{i}-1.cwasm")))
            .collect();
        for (i, path) in many.iter().enumerate() {
            std::fs::write(path, b"x").unwrap();
            age(path, std::time::Duration::from_secs(3600 * (20 - i as u64)));
        }
        super::prune(dir.path(), &keep);
        assert!(!many[0].exists() && !many[1].exists());
        assert!(many[2..].iter().all(|p| p.exists()) && keep_snapshot.exists());
        for path in &many {
            let _ = std::fs::remove_file(path);
        }
        // A snapshot unused for longer than allowed goes too.
        age(&keep_snapshot, super::SNAPSHOT_UNUSED_FOR * 2);
        super::prune(dir.path(), &keep);
        assert!(keep.exists() && !keep_snapshot.exists());
    }

    #[test]
    fn length_records_catch_truncation_and_garbage() {
        assert!(check_length("123\n", 123).is_ok());
        assert!(check_length("123", 122).unwrap_err().contains("truncated"));
        assert_eq!(
            check_length("x", 1).unwrap_err(),
            "unreadable length record"
        );
    }
}
