//! On-disk cache of the compiled guest component.
//!
//! Compiling the component with Cranelift takes seconds; loading the cached
//! artifact takes milliseconds. The file name carries the component's hash
//! and the engine's compatibility hash (wasmtime version and settings), so a
//! stale artifact is never picked up. Files are written by atomic rename and
//! end with a checksum; a corrupt or unwritable cache falls back to compiling
//! in memory with a warning.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

use super::{SandboxError, boxed};

const TRAILER_MAGIC: &[u8; 8] = b"PUSHYCW1";

pub(super) fn default_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PUSHY_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("pushy"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache").join("pushy"))
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
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let payload = verify(&bytes)?;
    // SAFETY: the bytes were produced by `Component::serialize` of an engine
    // with the same compatibility hash (it is in the file name), written by
    // atomic rename, and their checksum matches, so they are not truncated
    // or corrupted. wasmtime also checks the header and version itself.
    let component = unsafe { Component::deserialize(engine, payload) }
        .map_err(|e| format!("wasmtime refused it: {e}"))?;
    Ok(Some(component))
}

/// Checks the trailer (magic, length, CRC32) and returns the payload.
pub(super) fn verify(bytes: &[u8]) -> Result<&[u8], String> {
    const TRAILER: usize = 8 + 8 + 4;
    if bytes.len() < TRAILER {
        return Err("file too short".into());
    }
    let (payload, trailer) = bytes.split_at(bytes.len() - TRAILER);
    if &trailer[..8] != TRAILER_MAGIC {
        return Err("bad trailer".into());
    }
    let length = u64::from_le_bytes(trailer[8..16].try_into().expect("8 bytes"));
    if length != payload.len() as u64 {
        return Err("truncated".into());
    }
    let crc = u32::from_le_bytes(trailer[16..20].try_into().expect("4 bytes"));
    if crc != crc32fast::hash(payload) {
        return Err("checksum mismatch".into());
    }
    Ok(payload)
}

fn store(component: &Component, dir: &Path, path: &Path) -> Result<(), String> {
    let payload = component.serialize().map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(|e| e.to_string())?;
    file.write_all(&payload).map_err(|e| e.to_string())?;
    file.write_all(TRAILER_MAGIC).map_err(|e| e.to_string())?;
    file.write_all(&(payload.len() as u64).to_le_bytes())
        .map_err(|e| e.to_string())?;
    file.write_all(&crc32fast::hash(&payload).to_le_bytes())
        .map_err(|e| e.to_string())?;
    file.persist(path).map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::verify;

    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut out = payload.to_vec();
        out.extend_from_slice(super::TRAILER_MAGIC);
        out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        out
    }

    #[test]
    fn accepts_intact_and_rejects_damaged_files() {
        let good = framed(b"compiled code");
        assert_eq!(verify(&good).unwrap(), b"compiled code");
        let mut flipped = good.clone();
        flipped[3] ^= 1;
        assert_eq!(verify(&flipped).unwrap_err(), "checksum mismatch");
        assert_eq!(verify(&good[1..]).unwrap_err(), "truncated");
        assert_eq!(verify(b"short").unwrap_err(), "file too short");
    }
}
