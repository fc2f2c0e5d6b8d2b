//! The bytecode cache of a pytest run: test sessions read compiled modules
//! from it (mounted read-only) and report what they compiled from source;
//! one writer session, which runs none of the project's code, compiles
//! those sources into it (`pushy_guest.testing.bytecode`). Later files of
//! the run, and later runs, then load the project compiled.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use pushy::{Connection, Error, Mount, Sandbox, SessionConfig, Value};
use tokio::sync::mpsc;

use super::run::BYTECODE_MOUNT;

/// Sources a test session compiled: `(path, kind)`.
pub(super) type Uncached = Vec<(String, String)>;

/// The session of the writer: the test sessions' read-only mounts and
/// python path, and the cache itself writable. A writable mount of the
/// user's is left out: the writer needs none.
fn writer_session(tests: &SessionConfig, cache: &Path) -> SessionConfig {
    let mut session = tests.clone();
    session.mounts = tests
        .mounts
        .iter()
        .filter(|mount| mount.read_only && mount.guest != BYTECODE_MOUNT)
        .cloned()
        .chain([Mount {
            host: cache.to_owned(),
            guest: BYTECODE_MOUNT.to_owned(),
            read_only: false,
        }])
        .collect();
    session
}

/// Starts the writer; it ends when the sender is dropped and what was sent
/// is written. Errors end it early (the cache is only an optimisation: the
/// tests run either way) and are logged.
pub(super) fn spawn_writer(
    sandbox: Sandbox,
    tests: &SessionConfig,
    cache: PathBuf,
    rootdir: PathBuf,
) -> (mpsc::UnboundedSender<Uncached>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let session = writer_session(tests, &cache);
    let task = tokio::spawn(async move {
        if let Err(error) = write_all(sandbox, session, rootdir, rx).await {
            tracing::warn!(error = %error.with_causes(), "the bytecode cache's writer stopped");
        }
    });
    (tx, task)
}

async fn write_all(
    sandbox: Sandbox,
    session: SessionConfig,
    rootdir: PathBuf,
    mut batches: mpsc::UnboundedReceiver<Uncached>,
) -> Result<(), Error> {
    let mut config = pushy::ConnectionConfig::default();
    config.output = pushy::OutputMode::Discard;
    let mut writer: Option<(Connection, pushy::RemoteObject)> = None;
    let mut seen = HashSet::new();
    let rootdir = rootdir.display().to_string();
    while let Some(batch) = batches.recv().await {
        let fresh: Uncached = batch
            .into_iter()
            .filter(|entry| seen.insert(entry.clone()))
            .collect();
        if fresh.is_empty() {
            continue;
        }
        if writer.is_none() {
            let con = Connection::embedded_with(&sandbox, session.clone(), config.clone()).await?;
            let module = con.import("pushy_guest.testing.bytecode").await?;
            writer = Some((con, module));
        }
        let (_, module) = writer.as_ref().expect("just set");
        let written = module
            .call_method("write", &(fresh.clone(), BYTECODE_MOUNT, rootdir.as_str()))
            .await?;
        tracing::debug!(sources = ?fresh, ?written, "bytecode cached");
    }
    if let Some((con, _)) = writer {
        con.close().await?;
    }
    Ok(())
}

/// The `(path, kind)` pairs of a session's `uncached()` answer (none if
/// it is not that shape).
pub(super) fn parse(value: &Value) -> Uncached {
    value.extract().unwrap_or_default()
}
