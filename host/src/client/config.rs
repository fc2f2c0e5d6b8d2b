//! Settings of a connection, and the kinds of its input and output.

use std::path::PathBuf;
use std::time::Duration;

use crate::protocol::{OutputStream, RequestedLimits};

/// Settings of a connection.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ConnectionConfig {
    /// How often dropped handles are released in one batch message. Default:
    /// 5 s, as in Pushy; releases also ride on the next request. Zero sends
    /// each release at once.
    pub gc_interval: Duration,
    /// Where remote stdout/stderr go. Default: [`OutputMode::Print`].
    pub output: OutputMode,
    /// Largest frame accepted from the host. Default: 257 MiB.
    pub max_frame: usize,
    /// Token file for `daemon:` targets. Default: `$PUSHY_TOKEN_FILE`.
    pub token_file: Option<PathBuf>,
    /// Speak TLS to `daemon:` targets, trusting the CA certificate(s) in
    /// this PEM file. Default: plain TCP.
    pub tls_ca: Option<PathBuf>,
    /// The `pushy` program that `local:` starts. Default:
    /// `$PUSHY_HOST_PROGRAM`, else this executable if it is `pushy`, else
    /// `pushy` on PATH.
    pub host_program: Option<PathBuf>,
    /// Arguments `local:` puts before `host --stdio`, for a host program
    /// that is an interpreter running pushy (the Python package starts
    /// `python -m pushy._host`). Default: none.
    pub host_program_args: Vec<String>,
    /// Extra arguments for `pushy host --stdio` started by `local:` and
    /// `ssh:` (e.g. `--memory 64`).
    pub host_args: Vec<String>,
    /// Extra arguments for `ssh` (e.g. `-i KEY`, `-o Option=value`).
    pub ssh_options: Vec<String>,
    /// Where `ssh:` targets keep pushed binaries, as the remote shell
    /// expands it. Default: `$HOME/.cache/pushy/bin`.
    pub ssh_remote_dir: String,
    /// What the session's code reads as stdin. Default: [`InputMode::Closed`].
    pub input: InputMode,
    /// With [`OutputMode::Print`], interrupt the running call (ending the
    /// session) when its output cannot be written, as a command-line tool
    /// whose stdout was closed should stop. Default: false.
    pub stop_on_output_error: bool,
    /// Limits to ask the host for: each only tightens the host's own (a
    /// daemon's, or those `host_args` give a `local:`/`ssh:` host; for
    /// `embedded:`, the sandbox's). Default: none asked.
    pub limits: RequestedLimits,
    /// How long the host may take to answer the handshake. Default: `None`,
    /// meaning 20 s for `daemon:` and 120 s for `local:` and `ssh:` (whose
    /// host may first compile the sandbox or receive its binary).
    pub handshake_timeout: Option<Duration>,
    /// When the host has said nothing for this long while a request waits
    /// on it (and no local callback or stdin read is running, which the
    /// host waits for instead), the connection is closed with
    /// [`crate::CloseReason::Unresponsive`]: a host that enforces a time
    /// limit answers within it, so one this late is stopped or wedged.
    /// Default: `None`, meaning the time limit asked for in `limits` plus
    /// [`UNRESPONSIVE_SLACK`], or never when none is asked (a host whose
    /// limit comes from `host_args` should be given this too).
    pub unresponsive_after: Option<Duration>,
}

/// What [`ConnectionConfig::unresponsive_after`] adds to the time limit by
/// default: the host's own reaction to its limit (ending the session,
/// answering) with room for a loaded machine.
pub const UNRESPONSIVE_SLACK: Duration = Duration::from_secs(5);

impl ConnectionConfig {
    /// [`ConnectionConfig::unresponsive_after`], its default applied.
    pub fn unresponsive_after(&self) -> Option<Duration> {
        self.unresponsive_after.or_else(|| {
            self.limits
                .time_limit_ms
                .map(|ms| Duration::from_millis(ms).saturating_add(UNRESPONSIVE_SLACK))
        })
    }
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            gc_interval: Duration::from_secs(5),
            output: OutputMode::Print,
            max_frame: crate::transport::DEFAULT_MAX_FRAME,
            token_file: None,
            tls_ca: None,
            host_program: None,
            host_program_args: Vec::new(),
            host_args: Vec::new(),
            ssh_options: Vec::new(),
            ssh_remote_dir: "$HOME/.cache/pushy/bin".to_owned(),
            input: InputMode::Closed,
            stop_on_output_error: false,
            limits: RequestedLimits::default(),
            handshake_timeout: None,
            unresponsive_after: None,
        }
    }
}

/// What the session's code reads as stdin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum InputMode {
    /// Nothing: reads are at end of input at once.
    #[default]
    Closed,
    /// This process's stdin, streamed as the code reads it (at most 64 KiB
    /// a read); end of input when it closes.
    Inherit,
}

/// Where remote output goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutputMode {
    /// Written to this process's stdout/stderr as it arrives.
    Print,
    /// Queued for [`crate::Connection::take_output`].
    Capture,
    /// Dropped.
    Discard,
}

/// A chunk of remote output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputChunk {
    /// stdout or stderr.
    pub stream: OutputStream,
    /// The bytes, in the order they were written.
    pub data: Vec<u8>,
}
