//! The `embedded:` backend: a session on a thread of this process, talking
//! to the connection over in-memory channels (no encoding at all).

use std::collections::VecDeque;

use tokio::sync::{mpsc, oneshot};

use super::{Connection, ConnectionConfig, Error};
use crate::protocol::{ClientMessage, ServerMessage};
use crate::sandbox::{Sandbox, SandboxError, SessionConfig, SessionLink, serve_session};

struct ChannelLink {
    inbound: mpsc::UnboundedReceiver<ClientMessage>,
    outbound: mpsc::UnboundedSender<Result<ServerMessage, String>>,
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

impl Sandbox {
    /// A new session in this process with the sandbox's default limits.
    pub async fn connect(&self) -> Result<Connection, Error> {
        self.connect_with(self.config().session.clone(), ConnectionConfig::default())
            .await
    }

    /// A new session in this process with the given limits and settings.
    pub async fn connect_with(
        &self,
        session: SessionConfig,
        config: ConnectionConfig,
    ) -> Result<Connection, Error> {
        let session = session.tightened(&config.limits);
        let (client_tx, session_rx) = mpsc::unbounded_channel();
        let (session_tx, client_rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        let sandbox = self.clone();
        std::thread::Builder::new()
            .name("pushy-session".into())
            .stack_size(self.session_stack_size())
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
                    Err(refusal) => {
                        let _ = ready_tx.send(Err(refusal.error));
                    }
                }
            })
            .map_err(SandboxError::Thread)?;
        ready_rx
            .await
            .map_err(|_| Error::Closed("the session thread died while starting".into()))??;
        Ok(Connection::start(client_tx, client_rx, config))
    }
}
