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

/// `$TMPDIR/pushy-cache-UID`, created 0700; `None` if it exists but is not
/// a directory of ours that only we can use.
fn private_temp_dir() -> Option<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let uid = rustix::process::getuid().as_raw();
    let dir = std::env::temp_dir().join(format!("pushy-cache-{uid}"));
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
    let Some(dir) = dir else {
        return compile(engine, component);
    };
    let path = cache_file(engine, component_sha256, dir);
    match load(engine, &path) {
        Ok(Some(component)) => return Ok(component),
        Ok(None) => {}
        Err(reason) => {
            tracing::warn!(path = %path.display(), %reason, "discarding the compiled-component cache");
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(sidecar(&path));
        }
    }
    let compiled = compile(engine, component)?;
    if let Err(error) = store(&compiled, dir, &path) {
        tracing::warn!(path = %path.display(), %error, "could not write the compiled-component cache");
    }
    Ok(compiled)
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
    fn length_records_catch_truncation_and_garbage() {
        assert!(check_length("123\n", 123).is_ok());
        assert!(check_length("123", 122).unwrap_err().contains("truncated"));
        assert_eq!(
            check_length("x", 1).unwrap_err(),
            "unreadable length record"
        );
    }
}
