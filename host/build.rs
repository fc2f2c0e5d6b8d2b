//! Builds the guest component from `wit/` + `guest/` with componentize-py and
//! records its hash, which keys the on-disk cache of compiled code.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

fn main() -> Result<()> {
    // Packed relative relocations: the dynamic loader's share of start-up
    // time drops from ~1 ms to almost nothing for this large binary.
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir.parent().context("host/ has a parent")?;
    let wit_dir = root.join("wit");
    let guest_dir = root.join("guest");
    // The files, and their directories (so that a file added to one is
    // seen; cargo scans a directory given here for any change within, so
    // the componentizing below works on a copy, keeping __pycache__ out of
    // the source tree). Relative to host/: cargo does not tell two
    // checkouts sharing a target directory apart, and absolute paths would
    // make one watch the other's files.
    let guest_files = walk(&guest_dir)?;
    for path in guest_files.iter().chain(&walk(&wit_dir)?) {
        let relative = Path::new("..").join(path.strip_prefix(root)?);
        println!("cargo:rerun-if-changed={}", relative.display());
    }
    for dir in [&guest_dir, &wit_dir] {
        let relative = Path::new("..").join(dir.strip_prefix(root)?);
        println!("cargo:rerun-if-changed={}", relative.display());
    }

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let output = out_dir.join("agent.wasm");
    // Componentize a copy, so the bytecode caches land in OUT_DIR and the
    // source tree stays clean.
    let guest_copy = out_dir.join("guest");
    let _ = std::fs::remove_dir_all(&guest_copy);
    for path in &guest_files {
        let target = guest_copy.join(path.strip_prefix(&guest_dir)?);
        std::fs::create_dir_all(target.parent().context("file has a parent")?)?;
        std::fs::copy(path, &target)?;
    }
    let guest = guest_copy.to_str().context("guest path is UTF-8")?;
    let empty = std::collections::HashMap::new();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(
            componentize_py::ComponentGenerator {
                wit_paths: &[wit_dir.as_path()],
                worlds: &["agent"],
                features: &[],
                all_features: false,
                world_module: None,
                python_path: &[guest],
                module_worlds: &[],
                app_name: "agent",
                output_path: &output,
                add_to_linker: None,
                stub_wasi: false,
                import_interface_names: &empty,
                export_interface_names: &empty,
                full_names: false,
                intersect_world: None,
            }
            .generate(),
        )
        .context("componentize-py failed to build the guest")?;

    let component = std::fs::read(&output)?;
    let digest = hex::encode(Sha256::digest(&component));
    println!("cargo:rustc-env=PUSHY_COMPONENT_SHA256={digest}");
    println!("cargo:rustc-env=PUSHY_COMPONENT_PATH={}", output.display());
    Ok(())
}

fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "__pycache__") {
                    pending.push(path);
                }
            } else {
                files.push(path);
            }
        }
    }
    Ok(files)
}
