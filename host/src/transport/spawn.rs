//! `local:` and `ssh:` — a `pushy host --stdio` child, local or through ssh.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};
use tokio::process::Command;

use super::dial::start_stream;
use super::{ClientLink, DialOptions, SshError, TransportError};

/// Environment variable naming the `pushy` program to start.
pub const HOST_PROGRAM_ENV: &str = "PUSHY_HOST_PROGRAM";

/// How `local:` and `ssh:` start their `pushy host --stdio`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SpawnOptions {
    /// The `pushy` program. `None`: `$PUSHY_HOST_PROGRAM`, else this
    /// executable if it is `pushy`, else `pushy` on PATH.
    pub program: Option<PathBuf>,
    /// `local:` only: arguments before `host --stdio`, for a program that
    /// is an interpreter running pushy (`python -m pushy._host`).
    pub program_args: Vec<String>,
    /// Extra arguments for `pushy host --stdio` (e.g. `--memory 64`).
    pub host_args: Vec<String>,
    /// Extra arguments for `ssh` (e.g. `-i KEY`).
    pub ssh_options: Vec<String>,
    /// Where `ssh:` keeps pushed binaries, as the remote shell expands it.
    pub ssh_remote_dir: String,
    /// The handshake's settings (no token: the parent owns the child's pipes).
    pub dial: DialOptions,
}

impl Default for SpawnOptions {
    fn default() -> Self {
        SpawnOptions {
            program: None,
            program_args: Vec::new(),
            host_args: Vec::new(),
            ssh_options: Vec::new(),
            ssh_remote_dir: "$HOME/.cache/pushy/bin".to_owned(),
            dial: DialOptions {
                // A spawned host may first compile the sandbox (seconds) or,
                // over `ssh:`, receive its binary.
                timeout: std::time::Duration::from_secs(120),
                ..DialOptions::default()
            },
        }
    }
}

/// The `pushy` binary to run as a host.
fn host_program(options: &SpawnOptions) -> PathBuf {
    if let Some(program) = &options.program {
        return program.clone();
    }
    if let Some(program) = std::env::var_os(HOST_PROGRAM_ENV) {
        return PathBuf::from(program);
    }
    if let Ok(exe) = std::env::current_exe()
        && exe.file_name().is_some_and(|n| n == "pushy")
    {
        return exe;
    }
    PathBuf::from("pushy")
}

fn spawn_error(what: impl Into<String>, source: std::io::Error) -> TransportError {
    TransportError::Spawn {
        what: what.into(),
        source,
    }
}

fn ssh_failed(target: &str, output: &std::process::Output) -> TransportError {
    SshError::Failed {
        target: target.to_owned(),
        status: output.status.code(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    }
    .into()
}

/// `local:`: a child `pushy host --stdio` on this machine.
pub async fn spawn_local(options: &SpawnOptions) -> Result<ClientLink, TransportError> {
    let program = host_program(options);
    let mut child = Command::new(&program)
        .args(&options.program_args)
        .args(["host", "--stdio"])
        .args(&options.host_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| spawn_error(format!("{} host --stdio", program.display()), e))?;
    let (stdin, stdout) = child_pipes(&mut child)?;
    widen_pipe(&stdin);
    widen_pipe(&stdout);
    let dial = &options.dial;
    match start_stream(stdout, stdin, dial, child, dial.timeout).await {
        Ok(link) => Ok(link),
        Err((error, child)) => Err(host_failed(child, error).await),
    }
}

/// A handshake with a child failed: if the child has exited (a bad
/// argument, a program that is not pushy, ssh that could not connect), that
/// is the error to report, with its status.
async fn host_failed(mut child: tokio::process::Child, error: TransportError) -> TransportError {
    // A closed pipe means the child is going or gone: give it a moment. A
    // timeout is reported as it is unless the child has already exited.
    let status = if matches!(error, TransportError::Timeout(_)) {
        child.try_wait().ok().flatten()
    } else {
        tokio::time::timeout(std::time::Duration::from_secs(1), child.wait())
            .await
            .ok()
            .and_then(Result::ok)
    };
    match status {
        Some(status) => TransportError::HostExited {
            status,
            cause: Box::new(error),
        },
        None => error,
    }
}

/// The child's stdin and stdout, which were asked to be piped.
fn child_pipes(
    child: &mut tokio::process::Child,
) -> Result<(tokio::process::ChildStdin, tokio::process::ChildStdout), TransportError> {
    match (child.stdin.take(), child.stdout.take()) {
        (Some(stdin), Some(stdout)) => Ok((stdin, stdout)),
        _ => Err(spawn_error(
            "the host's pipes",
            std::io::Error::other("the child has no stdin or stdout pipe"),
        )),
    }
}

/// Pipe capacity asked for: 16× Linux's default 64 KiB, so a large value
/// crosses in 16× fewer writes and wake-ups (the unprivileged maximum,
/// `/proc/sys/fs/pipe-max-size`, is 1 MiB by default).
const PIPE_SIZE: usize = 1 << 20;

/// Best effort: a smaller pipe is only slower.
fn widen_pipe(pipe: &impl std::os::fd::AsFd) {
    if let Err(error) = rustix::pipe::fcntl_setpipe_size(pipe, PIPE_SIZE) {
        tracing::debug!(%error, "could not widen a pipe");
    }
}

/// Quotes a word for a POSIX shell.
fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b))
    {
        return word.to_owned();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// `[USER@]HOST[:PORT]` split into ssh's destination and port.
fn ssh_destination(target: &str) -> (String, Option<String>) {
    match target.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            (host.to_owned(), Some(port.to_owned()))
        }
        _ => (target.to_owned(), None),
    }
}

fn ssh_command(target: &str, options: &SpawnOptions, remote: &str) -> Command {
    let (destination, port) = ssh_destination(target);
    let mut command = Command::new("ssh");
    command
        .args(["-o", "BatchMode=yes"])
        .args(&options.ssh_options);
    if let Some(port) = port {
        command.args(["-p", &port]);
    }
    command.arg("--").arg(destination).arg(remote);
    command
}

/// SHA-256 of this host program, computed once per process.
async fn program_hash(program: &Path) -> Result<String, TransportError> {
    static HASHES: OnceLock<std::sync::Mutex<Vec<(PathBuf, String)>>> = OnceLock::new();
    let cache = HASHES.get_or_init(Default::default);
    if let Some((_, hash)) = cache
        .lock()
        .expect("hash lock")
        .iter()
        .find(|(p, _)| p == program)
    {
        return Ok(hash.clone());
    }
    let path = program.to_owned();
    let hash = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = Sha256::new();
        std::io::copy(&mut file, &mut hasher)?;
        Ok(hex::encode(hasher.finalize()))
    })
    .await
    .map_err(|e| spawn_error("hashing the host program", std::io::Error::other(e)))?
    .map_err(|e| spawn_error(format!("reading {}", program.display()), e))?;
    cache
        .lock()
        .expect("hash lock")
        .push((program.to_owned(), hash.clone()));
    Ok(hash)
}

/// `ssh:[USER@]HOST[:PORT]`: runs `pushy host --stdio` on the remote, after
/// pushing this very binary there if the remote has no copy of it yet
/// (zero-install, like Pushy). Copies live under a path keyed by the
/// binary's hash, so different versions never mix.
pub async fn spawn_ssh(target: &str, options: &SpawnOptions) -> Result<ClientLink, TransportError> {
    let program = resolve_on_path(&host_program(options));
    let hash = program_hash(&program).await?;
    let dir = &options.ssh_remote_dir;
    let remote = format!("{dir}/pushy-{}", &hash[..32]);
    let arch = std::env::consts::ARCH;

    // 1. Is the right binary there already? (exit 97: no; 98: other arch)
    let probe =
        format!("[ \"$(uname -m)\" = {arch} ] || exit 98; [ -x \"{remote}\" ] || exit 97; exit 0");
    let output = ssh_command(target, options, &probe)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| spawn_error("ssh", e))?;
    match output.status.code() {
        Some(0) => {}
        Some(97) => push_binary(target, options, &program, dir, &remote).await?,
        Some(98) => {
            return Err(SshError::WrongArch {
                target: target.to_owned(),
                arch,
            }
            .into());
        }
        _ => return Err(ssh_failed(target, &output)),
    }

    // 2. Run it.
    let mut run = format!("exec \"{remote}\" host --stdio");
    for arg in &options.host_args {
        run.push(' ');
        run.push_str(&shell_quote(arg));
    }
    let mut child = ssh_command(target, options, &run)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| spawn_error("ssh", e))?;
    let (stdin, stdout) = child_pipes(&mut child)?;
    let dial = &options.dial;
    match start_stream(stdout, stdin, dial, child, dial.timeout).await {
        Ok(link) => Ok(link),
        Err((error, child)) => Err(host_failed(child, error).await),
    }
}

async fn push_binary(
    target: &str,
    options: &SpawnOptions,
    program: &Path,
    dir: &str,
    remote: &str,
) -> Result<(), TransportError> {
    tracing::info!(target, remote, "pushing pushy to the remote host");
    let script = format!(
        "umask 077 && mkdir -p \"{dir}\" && cat > \"{remote}.tmp.$$\" && chmod 700 \"{remote}.tmp.$$\" && mv \"{remote}.tmp.$$\" \"{remote}\""
    );
    let mut child = ssh_command(target, options, &script)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| spawn_error("ssh", e))?;
    let Some(mut stdin) = child.stdin.take() else {
        return Err(spawn_error(
            "ssh",
            std::io::Error::other("the child has no stdin pipe"),
        ));
    };
    let mut file = tokio::fs::File::open(program)
        .await
        .map_err(|e| spawn_error(format!("reading {}", program.display()), e))?;
    let copied = tokio::io::copy(&mut file, &mut stdin).await;
    drop(stdin);
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| spawn_error("ssh", e))?;
    if let Err(error) = copied {
        return Err(spawn_error("pushing the binary", error));
    }
    if !output.status.success() {
        return Err(ssh_failed(target, &output));
    }
    Ok(())
}

/// A bare program name resolved through PATH (the file itself is pushed).
fn resolve_on_path(program: &Path) -> PathBuf {
    if program.components().count() > 1 {
        return program.to_owned();
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(program))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_else(|| program.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_and_quoting() {
        assert_eq!(
            ssh_destination("me@host:2222"),
            ("me@host".into(), Some("2222".into()))
        );
        assert_eq!(ssh_destination("host"), ("host".into(), None));
        assert_eq!(shell_quote("--memory"), "--memory");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
