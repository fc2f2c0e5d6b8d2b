//! What the examples share.

use std::path::PathBuf;

/// The `pushy` binary to run: `$PUSHY_HOST_PROGRAM` (to compare two builds
/// under the same client), else the one built beside this example — an
/// example lives in `target/<profile>/examples/`, the binary in
/// `target/<profile>/`, wherever `CARGO_TARGET_DIR` put them — else the
/// workspace's `target/release/pushy`.
pub fn pushy_binary() -> PathBuf {
    if let Some(program) = std::env::var_os("PUSHY_HOST_PROGRAM") {
        return program.into();
    }
    let beside = std::env::current_exe().ok().and_then(|exe| {
        let pushy = exe.parent()?.parent()?.join("pushy");
        pushy.is_file().then_some(pushy)
    });
    beside.unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/pushy")
    })
}
