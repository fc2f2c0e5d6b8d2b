//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod daemon;
pub mod matrix;

use std::sync::OnceLock;
use std::time::Duration;

use pushy::{Connection, ConnectionConfig, OutputMode, Sandbox, SandboxConfig, SessionConfig};

/// One compiled sandbox for the whole test binary (compiling is the slow part).
pub fn sandbox() -> Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX
        .get_or_init(|| Sandbox::new(SandboxConfig::default()).expect("sandbox"))
        .clone()
}

/// Session settings for tests: the defaults with a shorter time limit.
pub fn session_config() -> SessionConfig {
    let mut config = SessionConfig::default();
    config.time_limit = Some(Duration::from_secs(20));
    config
}

/// A fresh session whose output is captured.
pub async fn session() -> Connection {
    session_with(session_config()).await
}

pub async fn session_with(config: SessionConfig) -> Connection {
    let mut con = ConnectionConfig::default();
    con.output = OutputMode::Capture;
    pushy::Connection::embedded_with(&sandbox(), config, con)
        .await
        .expect("session")
}

/// Everything captured so far, as (stdout, stderr) text.
pub fn drain_output(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<pushy::OutputChunk>,
) -> (String, String) {
    let (mut out, mut err) = (String::new(), String::new());
    while let Ok(chunk) = rx.try_recv() {
        let text = String::from_utf8_lossy(&chunk.data);
        match chunk.stream {
            pushy::protocol::OutputStream::Stdout => out.push_str(&text),
            pushy::protocol::OutputStream::Stderr => err.push_str(&text),
        }
    }
    (out, err)
}

/// Connection settings for tests: output captured, `local:` runs the
/// `pushy` binary built with the tests.
pub fn quiet_config() -> ConnectionConfig {
    let mut config = ConnectionConfig::default();
    config.output = OutputMode::Capture;
    config.host_program = Some(env!("CARGO_BIN_EXE_pushy").into());
    config
}
