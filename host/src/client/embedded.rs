//! The `embedded:` backend: a session on a thread of this process, talking
//! to the connection over in-memory channels (no encoding at all).

use std::collections::VecDeque;

use tokio::sync::{mpsc, oneshot};

use super::{Connection, ConnectionConfig, Error};
use crate::protocol::{ClientMessage, ServerMessage};
use crate::sandbox::{Sandbox, SandboxError, SessionConfig, SessionLink, serve_session};
use crate::transport::{ClientLink, Inbound};

struct ChannelLink {
    inbound: mpsc::UnboundedReceiver<ClientMessage>,
    outbound: mpsc::UnboundedSender<Inbound>,
    /// Messages taken while looking for an interrupt, in order.
    pending: VecDeque<ClientMessage>,
}

impl SessionLink for ChannelLink {
    fn recv(&mut self) -> Option<ClientMessage> {
        self.pending
            .pop_front()
            .or_else(|| self.inbound.blocking_recv())
    }

    fn poll_interrupt(&mut self) -> bool {
        loop {
            match self.inbound.try_recv() {
                Ok(ClientMessage::Interrupt) => return true,
                Ok(message) => self.pending.push_back(message),
                Err(mpsc::error::TryRecvError::Empty) => return false,
                // The connection is gone: nobody waits for this call.
                Err(mpsc::error::TryRecvError::Disconnected) => return true,
            }
        }
    }

    fn send(&mut self, message: ServerMessage) -> bool {
        self.outbound.send(Ok(message)).is_ok()
    }
}

impl Connection {
    /// A new session of `sandbox` in this process, with the sandbox's
    /// default limits.
    pub async fn embedded(sandbox: &Sandbox) -> Result<Connection, Error> {
        Connection::embedded_with(
            sandbox,
            sandbox.config().session.clone(),
            ConnectionConfig::default(),
        )
        .await
    }

    /// A new session of `sandbox` in this process, with the given limits
    /// (tightened by [`ConnectionConfig::limits`]) and settings.
    pub async fn embedded_with(
        sandbox: &Sandbox,
        session: SessionConfig,
        config: ConnectionConfig,
    ) -> Result<Connection, Error> {
        let session = session.tightened(&config.limits);
        let (client_tx, session_rx) = mpsc::unbounded_channel();
        let (session_tx, client_rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        let sandbox = sandbox.clone();
        std::thread::Builder::new()
            .name("pushy-session".into())
            .stack_size(sandbox.session_stack_size())
            .spawn(move || {
                let link = Box::new(ChannelLink {
                    inbound: session_rx,
                    outbound: session_tx,
                    pending: VecDeque::new(),
                });
                match sandbox.instantiate(&session, link) {
                    Ok(mut instance) => {
                        let _ = ready_tx.send(Ok(()));
                        serve_session(&mut instance);
                    }
                    Err(failure) => {
                        let _ = ready_tx.send(Err(failure.error));
                    }
                }
            })
            .map_err(SandboxError::Thread)?;
        ready_rx
            .await
            .map_err(|_| SandboxError::SessionThreadDied)??;
        let link = ClientLink {
            outbound: client_tx,
            inbound: client_rx,
        };
        Ok(Connection::over(link, config))
    }
}
