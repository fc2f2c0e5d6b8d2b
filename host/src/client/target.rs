//! Pushy's target URLs and `connect`.

use std::sync::OnceLock;
use std::time::Duration;

use super::{Connection, ConnectionConfig, Error};
use crate::sandbox::{Sandbox, SandboxConfig, SandboxError};
use crate::transport::auth::Token;
use crate::transport::{self, DialOptions, SpawnOptions, TransportError};

/// Where a session runs, parsed from Pushy's URL syntax.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Target {
    /// `embedded:`: a sandbox in this process.
    Embedded,
    /// `local:`: a `pushy host --stdio` child process.
    Local,
    /// `daemon:HOST:PORT`: a `pushy serve` over TCP.
    Daemon(String),
    /// `ssh:[USER@]HOST[:PORT]`
    Ssh(String),
}

impl std::str::FromStr for Target {
    type Err = Error;

    fn from_str(url: &str) -> Result<Self, Error> {
        let (scheme, rest) = url
            .split_once(':')
            .ok_or_else(|| Error::UnsupportedTarget(url.to_owned()))?;
        match (scheme, rest) {
            ("embedded", "") => Ok(Target::Embedded),
            ("local", "") => Ok(Target::Local),
            ("daemon", addr) if !addr.is_empty() => Ok(Target::Daemon(addr.to_owned())),
            ("ssh", host) if !host.is_empty() => Ok(Target::Ssh(host.to_owned())),
            _ => Err(Error::UnsupportedTarget(url.to_owned())),
        }
    }
}

static DEFAULT_SANDBOX: OnceLock<Sandbox> = OnceLock::new();

/// The process-wide sandbox behind `embedded:` (default settings), created
/// on first use.
pub async fn default_sandbox() -> Result<Sandbox, Error> {
    if let Some(sandbox) = DEFAULT_SANDBOX.get() {
        return Ok(sandbox.clone());
    }
    let sandbox = tokio::task::spawn_blocking(|| Sandbox::new(SandboxConfig::default()))
        .await
        .map_err(|_| SandboxError::SetupPanicked)??;
    Ok(DEFAULT_SANDBOX.get_or_init(|| sandbox).clone())
}

/// Connects to a sandboxed interpreter: `embedded:`, `local:`,
/// `daemon:HOST:PORT` or `ssh:[USER@]HOST[:PORT]`.
pub async fn connect(target: &str) -> Result<Connection, Error> {
    connect_with(target, ConnectionConfig::default()).await
}

/// [`connect`] with connection settings.
pub async fn connect_with(target: &str, config: ConnectionConfig) -> Result<Connection, Error> {
    let link = match target.parse::<Target>()? {
        Target::Embedded => {
            let sandbox = default_sandbox().await?;
            let session = sandbox.config().session.clone();
            return Connection::embedded_with(&sandbox, session, config).await;
        }
        Target::Local => transport::spawn_local(&spawn_options(&config)).await?,
        Target::Daemon(address) => {
            let options = DialOptions {
                token: Token::from_flag_or_env(config.token_file.as_deref())
                    .map_err(TransportError::from)?,
                tls_ca: config.tls_ca.clone(),
                ..dial_options(&config, DialOptions::default().timeout)
            };
            transport::dial_tcp(&address, options).await?
        }
        Target::Ssh(destination) => {
            transport::spawn_ssh(&destination, &spawn_options(&config)).await?
        }
    };
    Ok(Connection::over(link, config))
}

/// The handshake's settings from `config`; its timeout defaults to
/// `default_timeout` (the transport's own default for the kind of target).
fn dial_options(config: &ConnectionConfig, default_timeout: Duration) -> DialOptions {
    DialOptions {
        max_frame: config.max_frame,
        limits: config.limits,
        timeout: config.handshake_timeout.unwrap_or(default_timeout),
        ..DialOptions::default()
    }
}

fn spawn_options(config: &ConnectionConfig) -> SpawnOptions {
    let spawned = SpawnOptions::default().dial.timeout;
    SpawnOptions {
        program: config.host_program.clone(),
        program_args: config.host_program_args.clone(),
        host_args: config.host_args.clone(),
        ssh_options: config.ssh_options.clone(),
        ssh_remote_dir: config.ssh_remote_dir.clone(),
        dial: dial_options(config, spawned),
    }
}

#[cfg(test)]
mod tests {
    use super::Target;

    #[test]
    fn parses_pushy_urls() {
        assert_eq!("embedded:".parse::<Target>().unwrap(), Target::Embedded);
        assert_eq!("local:".parse::<Target>().unwrap(), Target::Local);
        assert_eq!(
            "daemon:127.0.0.1:7700".parse::<Target>().unwrap(),
            Target::Daemon("127.0.0.1:7700".into())
        );
        assert_eq!(
            "ssh:me@host".parse::<Target>().unwrap(),
            Target::Ssh("me@host".into())
        );
        assert!("daemon:".parse::<Target>().is_err());
        assert!("http://x".parse::<Target>().is_err());
        assert!("embedded".parse::<Target>().is_err());
    }
}
