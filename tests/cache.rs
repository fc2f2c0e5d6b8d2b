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
        let con = pushy::Connection::embedded(sandbox).await.unwrap();
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

#[test]
fn empty_cache_variables_never_put_the_cache_in_the_working_directory() {
    let cwd = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for (var, value) in [("PUSHY_CACHE_DIR", ""), ("HOME", "")] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pushy"))
            .args(["eval", "6 * 7"])
            .current_dir(cwd.path())
            .env(var, value)
            .env_remove("XDG_CACHE_HOME")
            .env("TMPDIR", tmp.path())
            .env_remove(if var == "HOME" {
                "PUSHY_CACHE_DIR"
            } else {
                "NONE"
            })
            .env(
                if var == "PUSHY_CACHE_DIR" {
                    "HOME"
                } else {
                    "NONE"
                },
                "",
            )
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "42\n",
            "{var}: {stderr}"
        );
        assert!(
            cached_files(cwd.path()).is_empty(),
            "{var}: cache in the cwd"
        );
        let uid = rustix::process::getuid().as_raw();
        let private = tmp.path().join(format!("pushy-cache-{uid}"));
        assert_eq!(cached_files(&private).len(), 1, "{var}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&private).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{var}: {mode:o}");
    }
}
