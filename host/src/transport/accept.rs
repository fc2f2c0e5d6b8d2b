//! The server's side of the handshake, on a host-side link.

use super::auth::{self, Token};
use super::link::BlockingLink;
use super::stream::LinkStream;
use super::{HandshakeError, TransportError};
use crate::protocol::{
    AuthFailure, CAPABILITIES, ClientMessage, HandshakeFault, PROTOCOL_VERSION, Refusal,
    RequestedLimits, ServerMessage,
};

impl<S: LinkStream> BlockingLink<S> {
    /// The server's side of the handshake up to, not including, `Welcome`
    /// (sent once the session's instance exists, or a `Refused` saying why
    /// it could not be made); `token` demands authentication. Returns the
    /// limits the client asked for.
    pub(crate) fn accept(
        &mut self,
        token: Option<&Token>,
    ) -> Result<RequestedLimits, TransportError> {
        match self.read_message()? {
            Some(ClientMessage::Hello { version, .. }) if version == PROTOCOL_VERSION => {}
            Some(ClientMessage::Hello { version, .. }) => {
                // Our Hello names our version, so the client can name both.
                let _ = self.write_message(ServerMessage::Hello {
                    version: PROTOCOL_VERSION,
                    capabilities: Vec::new(),
                    challenge: None,
                });
                self.refuse(Refusal::VersionMismatch {
                    client: version,
                    server: PROTOCOL_VERSION,
                });
                return Err(TransportError::VersionMismatch {
                    client: version,
                    server: PROTOCOL_VERSION,
                });
            }
            Some(other) => return Err(self.broken(HandshakeFault::RequestBeforeHello, &other)),
            None => return Err(TransportError::PeerGone),
        }
        let challenge = token.map(|_| auth::challenge());
        self.write_message(ServerMessage::Hello {
            version: PROTOCOL_VERSION,
            capabilities: CAPABILITIES.iter().map(|c| c.to_string()).collect(),
            challenge: challenge.clone(),
        })?;
        if let (Some(token), Some(challenge)) = (token, challenge) {
            let failure = match self.read_message()? {
                Some(ClientMessage::AuthProof { proof }) if token.verify(&challenge, &proof) => {
                    None
                }
                Some(ClientMessage::AuthProof { .. }) => Some(AuthFailure::WrongToken),
                Some(_) => Some(AuthFailure::TokenRequired),
                None => return Err(TransportError::PeerGone),
            };
            if let Some(failure) = failure {
                self.refuse(Refusal::Auth(failure));
                return Err(TransportError::AuthFailed(failure));
            }
        }
        match self.read_message()? {
            Some(ClientMessage::Limits(limits)) => Ok(limits),
            Some(other) => Err(self.broken(HandshakeFault::NoLimits, &other)),
            None => Err(TransportError::PeerGone),
        }
    }

    /// Tells the client how it broke the handshake; the error for the log.
    fn broken(&mut self, fault: HandshakeFault, got: &ClientMessage) -> TransportError {
        self.refuse(Refusal::BrokenHandshake(fault));
        TransportError::Handshake(HandshakeError::Unexpected(got.kind()))
    }

    /// Refuses the connection after the handshake started (e.g. server full).
    pub(crate) fn refuse(&mut self, refusal: Refusal) {
        let _ = self.write_message(ServerMessage::Refused(refusal));
    }
}
