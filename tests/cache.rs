//! The compiled-component cache: reused, and recovered when damaged.

use std::path::{Path, PathBuf};

use pushy::{Sandbox, SandboxConfig};

fn cached_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "cwasm"));
    files
}

fn works(sandbox: &Sandbox) -> i64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let con = sandbox.connect().await.unwrap();
        con.eval("6 * 7").await.unwrap().extract().unwrap()
    })
}

#[test]
fn a_damaged_or_unwritable_cache_is_recompiled_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = SandboxConfig::default();
    config.cache_dir = Some(dir.path().to_owned());

    let first = Sandbox::new(config.clone()).unwrap();
    assert_eq!(works(&first), 42);
    let files = cached_files(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let artifact = &files[0];
    let size = std::fs::metadata(artifact).unwrap().len();

    // Garbage of the right length: wasmtime refuses the header.
    std::fs::write(artifact, vec![0xA5u8; size as usize]).unwrap();
    let second = Sandbox::new(config.clone()).unwrap();
    assert_eq!(works(&second), 42);
    let rewritten = std::fs::read(artifact).unwrap();
    assert!(
        rewritten.iter().take(64).any(|&b| b != 0xA5),
        "the garbage was not replaced"
    );

    // Truncated: the recorded length catches it.
    let bytes = std::fs::read(artifact).unwrap();
    std::fs::write(artifact, &bytes[..bytes.len() / 2]).unwrap();
    let third = Sandbox::new(config.clone()).unwrap();
    assert_eq!(works(&third), 42);
    assert_eq!(std::fs::read(artifact).unwrap().len(), bytes.len());

    // A cache "directory" that is a file cannot be written: compile in memory.
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    config.cache_dir = Some(blocker.join("cache"));
    let fourth = Sandbox::new(config).unwrap();
    assert_eq!(works(&fourth), 42);
}
