//! Pushy's target URLs and `connect`.

use std::sync::OnceLock;
use std::time::Duration;

use super::{Connection, ConnectionConfig, Error};
use crate::sandbox::{Sandbox, SandboxConfig};
use crate::transport::TransportError;

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

/// How long a daemon may take to accept and answer the handshake.
const DAEMON_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

static DEFAULT_SANDBOX: OnceLock<Sandbox> = OnceLock::new();

/// The process-wide sandbox behind `embedded:` (default settings), created
/// on first use.
pub async fn default_sandbox() -> Result<Sandbox, Error> {
    if let Some(sandbox) = DEFAULT_SANDBOX.get() {
        return Ok(sandbox.clone());
    }
    let sandbox = tokio::task::spawn_blocking(|| Sandbox::new(SandboxConfig::default()))
        .await
        .map_err(|e| Error::Closed(format!("sandbox setup panicked: {e}")))??;
    Ok(DEFAULT_SANDBOX.get_or_init(|| sandbox).clone())
}

/// Connects to a sandboxed interpreter: `embedded:`, `local:`,
/// `daemon:HOST:PORT` or `ssh:[USER@]HOST[:PORT]`.
pub async fn connect(target: &str) -> Result<Connection, Error> {
    connect_with(target, ConnectionConfig::default()).await
}

/// [`connect`] with connection settings.
pub async fn connect_with(target: &str, config: ConnectionConfig) -> Result<Connection, Error> {
    match target.parse::<Target>()? {
        Target::Embedded => {
            let sandbox = default_sandbox().await?;
            sandbox
                .connect_with(sandbox.config().session.clone(), config)
                .await
        }
        Target::Local => crate::transport::connect_local(config).await,
        Target::Daemon(address) => {
            let timeout = config.handshake_timeout.unwrap_or(DAEMON_HANDSHAKE_TIMEOUT);
            let started = tokio::time::Instant::now();
            let token =
                crate::transport::auth::Token::from_flag_or_env(config.token_file.as_deref())
                    .map_err(TransportError::from)?;
            let tls = match &config.tls_ca {
                Some(ca) => Some(crate::transport::tls::client_config(ca)?),
                None => None,
            };
            let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&address))
                .await
                .map_err(|_| {
                    TransportError::Timeout(format!(
                        "could not connect to {address} within {} s",
                        timeout.as_secs_f64()
                    ))
                })?
                .map_err(|e| TransportError::Connect {
                    address: address.clone(),
                    source: e,
                })?;
            stream.set_nodelay(true).map_err(TransportError::Io)?;
            if let Some(tls) = tls {
                let host = address
                    .rsplit_once(':')
                    .map_or(address.as_str(), |(host, _)| host)
                    .trim_start_matches('[')
                    .trim_end_matches(']');
                let name = rustls::pki_types::ServerName::try_from(host.to_owned())
                    .map_err(|e| TransportError::Tls(format!("bad server name {host}: {e}")))?;
                let connecting = tokio_rustls::TlsConnector::from(tls).connect(name, stream);
                let stream = tokio::time::timeout(timeout, connecting)
                    .await
                    .map_err(|_| {
                        TransportError::Timeout(format!(
                            "no TLS handshake from {address} within {} s",
                            timeout.as_secs_f64()
                        ))
                    })?
                    .map_err(|e| TransportError::Tls(e.to_string()))?;
                let (reader, writer) = tokio::io::split(stream);
                let left = timeout.saturating_sub(started.elapsed());
                return crate::transport::start_stream(reader, writer, config, token, (), left)
                    .await;
            }
            let (reader, writer) = stream.into_split();
            let left = timeout.saturating_sub(started.elapsed());
            crate::transport::start_stream(reader, writer, config, token, (), left).await
        }
        Target::Ssh(destination) => crate::transport::connect_ssh(&destination, config).await,
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
