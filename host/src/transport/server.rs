//! `pushy serve`: many sessions over TCP, each on its own thread with its
//! own sandbox instance, behind a handshake with challenge-response
//! authentication, a cap on sessions, idle and frame timeouts, and an
//! orderly shutdown.

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::auth::Token;
use super::{BlockingLink, LinkLimits, LinkStream, Stdio, TransportError};
use crate::protocol::{Refusal, ServerMessage};
use crate::sandbox::{Instance, Sandbox, SandboxError, SessionConfig, SessionLink, serve_session};

/// Why `pushy host --stdio` could not serve its session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The handshake or the link failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The session's instance could not be created.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// The session's thread panicked (a bug: please report it).
    #[error("the session thread panicked")]
    SessionPanicked,
}

/// Settings of a daemon.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Clients must prove they know this token. `None` lets anyone in.
    pub token: Option<Token>,
    /// Sessions at once; more are refused with a clear message. Default: 64.
    /// Only authenticated sessions hold one of these slots.
    pub max_sessions: usize,
    /// Connections still in their handshake at once; more are closed at
    /// once. Each is cut at `handshake_timeout`. Default: 256.
    pub max_handshakes: usize,
    /// Limits of every session. Default: [`SessionConfig::default`].
    pub session: SessionConfig,
    /// A session with no message for this long is closed. Default: 15 min.
    pub idle_timeout: Option<Duration>,
    /// Time to complete the handshake. Default: 10 s.
    pub handshake_timeout: Duration,
    /// Time for one frame to arrive once it started. Default: 30 s.
    pub frame_timeout: Duration,
    /// Largest frame accepted. Default: 257 MiB.
    pub max_frame: usize,
    /// Serve TLS with this certificate (see [`super::tls::server_config`]).
    /// Default: plain TCP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            token: None,
            max_sessions: 64,
            max_handshakes: 256,
            session: SessionConfig::default(),
            idle_timeout: Some(Duration::from_secs(15 * 60)),
            handshake_timeout: Duration::from_secs(10),
            frame_timeout: Duration::from_secs(30),
            max_frame: super::DEFAULT_MAX_FRAME,
            tls: None,
        }
    }
}

/// Live connections, so that shutdown can close them.
#[derive(Default)]
struct Live {
    next: AtomicU64,
    sockets: Mutex<HashMap<u64, TcpStream>>,
}

/// Serves `listener` until `shutdown` resolves; then stops accepting, closes
/// every connection (a running call is interrupted) and waits for the
/// sessions to end.
pub async fn serve(
    listener: TcpListener,
    sandbox: Sandbox,
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(config.max_sessions));
    let handshakes = Arc::new(Semaphore::new(config.max_handshakes));
    let live = Arc::new(Live::default());
    let config = Arc::new(config);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off, go on.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(handshake) = handshakes.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "refused: too many connections in their handshake");
            if config.tls.is_none() {
                refuse_at_once(&stream, Refusal::TooManyHandshakes);
            }
            continue;
        };
        let slots = Slots {
            handshake,
            sessions: slots.clone(),
        };
        if let Err(error) = start_connection(stream, peer, slots, &sandbox, &config, &live) {
            tracing::warn!(%peer, %error, "could not start a session");
        }
    }
    tracing::info!("shutting down: closing every connection");
    drop(listener);
    for socket in live.sockets.lock().expect("live lock").values() {
        let _ = socket.shutdown(Shutdown::Both);
    }
    // Every session holds a slot; when all are back, all sessions ended.
    let all = u32::try_from(config.max_sessions).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(Duration::from_secs(10), slots.acquire_many(all)).await;
    Ok(())
}

/// Tells a client why it is turned away before its handshake, without
/// waiting for it: one small frame, written only if the socket takes it now.
fn refuse_at_once(stream: &tokio::net::TcpStream, refusal: Refusal) {
    use tokio_util::codec::Encoder;
    let mut codec = super::WireCodec::<crate::protocol::ClientMessage, ServerMessage>::new(1 << 16);
    let mut frame = bytes::BytesMut::new();
    if codec
        .encode(ServerMessage::Refused(refusal), &mut frame)
        .is_ok()
    {
        let _ = stream.try_write(&frame);
    }
}

/// What a connection may take: it holds `handshake` until the handshake
/// ends, then needs one of `sessions`.
struct Slots {
    handshake: OwnedSemaphorePermit,
    sessions: Arc<Semaphore>,
}

fn start_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    slots: Slots,
    sandbox: &Sandbox,
    config: &Arc<ServerConfig>,
    live: &Arc<Live>,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let stream = stream.into_std()?;
    stream.set_nonblocking(false)?;
    // A client that stops reading must not hold its session (and slot)
    // forever in a blocked write.
    stream.set_write_timeout(Some(config.frame_timeout))?;
    let id = live.next.fetch_add(1, Ordering::Relaxed);
    live.sockets
        .lock()
        .expect("live lock")
        .insert(id, stream.try_clone()?);
    let (sandbox, config, live) = (sandbox.clone(), config.clone(), live.clone());
    let stack = sandbox.session_stack_size();
    let spawned = std::thread::Builder::new()
        .name(format!("pushy-session-{id}"))
        .stack_size(stack)
        .spawn(move || {
            match config.tls.clone() {
                None => run_connection(stream, peer, slots, &sandbox, &config),
                Some(tls) => {
                    // A backstop: rustls reads inside its own handshake, where
                    // our poll-based timeouts cannot reach.
                    let _ = stream.set_read_timeout(Some(config.handshake_timeout));
                    match super::tls::TlsServerStream::new(tls, stream) {
                        Ok(stream) => run_connection(stream, peer, slots, &sandbox, &config),
                        Err(error) => tracing::warn!(%peer, %error, "TLS setup failed"),
                    }
                }
            }
            live.sockets.lock().expect("live lock").remove(&id);
        });
    spawned.map(drop)
}

fn run_connection<S: LinkStream + 'static>(
    stream: S,
    peer: SocketAddr,
    slots: Slots,
    sandbox: &Sandbox,
    config: &ServerConfig,
) {
    let mut link = BlockingLink::new(
        stream,
        LinkLimits {
            idle_timeout: Some(config.handshake_timeout),
            frame_timeout: config.frame_timeout.min(config.handshake_timeout),
            max_frame: config.max_frame,
        },
    );
    let asked = match link.accept(config.token.as_ref()) {
        Ok(asked) => asked,
        Err(error) => {
            match error {
                TransportError::AuthFailed(_) => {
                    tracing::warn!(%peer, %error, "authentication failed")
                }
                _ => tracing::info!(%peer, %error, "handshake failed"),
            }
            return;
        }
    };
    drop(slots.handshake);
    // A slot (and an instance) belongs to an authenticated session only.
    let Ok(permit) = slots.sessions.try_acquire_owned() else {
        link.refuse(Refusal::SessionLimit {
            limit: u32::try_from(config.max_sessions).unwrap_or(u32::MAX),
        });
        tracing::info!(%peer, "refused: session limit reached");
        return;
    };
    link.set_limits(LinkLimits {
        idle_timeout: config.idle_timeout,
        frame_timeout: config.frame_timeout,
        max_frame: config.max_frame,
    });
    let session = config.session.tightened(&asked);
    let mut permit = Some(permit);
    match start_session(sandbox, &session, Box::new(link), &mut permit) {
        Ok(mut instance) => {
            tracing::info!(%peer, "session started");
            serve_session(&mut instance);
            tracing::info!(%peer, "session ended");
        }
        Err(error) => tracing::error!(%peer, %error, "could not create the session's instance"),
    }
    drop(permit);
    // The session's large buffers are free now: give them back.
    crate::sandbox::heap::return_free_memory();
}

/// `pushy host --stdio`: one session over this process's stdin and stdout,
/// until the peer closes them. The parent that started us is trusted (it
/// owns our pipes), so there is no token.
pub fn serve_stdio(sandbox: &Sandbox, session: &SessionConfig) -> Result<(), ServeError> {
    use std::os::fd::AsFd;
    let stdin = std::fs::File::from(
        std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(TransportError::Io)?,
    );
    let stdout = std::fs::File::from(
        std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map_err(TransportError::Io)?,
    );
    let stdio = Stdio {
        input: stdin,
        output: std::io::BufWriter::with_capacity(64 * 1024, stdout),
    };
    // The session runs on a thread of its own: with the stack the wasm code
    // needs (the main thread's is smaller), and outside any async runtime
    // (wasmtime-wasi's blocking calls start one of their own).
    let (sandbox, session) = (sandbox.clone(), session.clone());
    std::thread::Builder::new()
        .name("pushy-session".into())
        .stack_size(sandbox.session_stack_size())
        .spawn(move || -> Result<(), ServeError> {
            let mut link = BlockingLink::new(stdio, LinkLimits::default());
            let asked = link.accept(None)?;
            let session = session.tightened(&asked);
            let mut instance = start_session(&sandbox, &session, Box::new(link), &mut None::<()>)?;
            serve_session(&mut instance);
            Ok(())
        })
        .map_err(SandboxError::Thread)?
        .join()
        .unwrap_or(Err(ServeError::SessionPanicked))
}

/// Creates the session's instance after a successful handshake and welcomes
/// the client, or tells it why no session could be made.
/// A session that cannot start frees its `slot` before it says so: a client
/// that reconnects at once must find the slot free.
fn start_session<T>(
    sandbox: &Sandbox,
    session: &SessionConfig,
    link: Box<dyn SessionLink>,
    slot: &mut Option<T>,
) -> Result<Instance, SandboxError> {
    match sandbox.instantiate(session, link) {
        Ok(mut instance) => {
            instance.link().send(ServerMessage::Welcome);
            Ok(instance)
        }
        Err(mut failure) => {
            drop(slot.take());
            failure
                .link
                .send(ServerMessage::Refused(failure.error.refusal()));
            Err(failure.error)
        }
    }
}
