//! The session's view of a host-side link: the next request, a reply, and
//! the scan for an interrupt while a call runs.

use std::time::Duration;

use super::TransportError;
use super::link::BlockingLink;
use super::stream::LinkStream;
use crate::protocol::{ClientMessage, ServerMessage};
use crate::sandbox::SessionLink;

impl<S: LinkStream> SessionLink for BlockingLink<S> {
    fn recv(&mut self) -> Option<ClientMessage> {
        if self.failed.is_some() {
            return None;
        }
        match self.read_message() {
            Ok(message) => message,
            Err(error) => {
                tracing::info!(%error, "closing the session's link");
                self.failed = Some(error);
                None
            }
        }
    }

    fn send(&mut self, message: ServerMessage) -> bool {
        if self.failed.is_some() {
            return false;
        }
        match self.write_message(message) {
            Ok(()) => true,
            Err(error) => {
                tracing::info!(%error, "the local side stopped reading");
                self.failed = Some(error);
                false
            }
        }
    }

    fn poll_interrupt(&mut self) -> bool {
        if self.failed.is_some() {
            // The local side is gone: stop burning CPU for it.
            return true;
        }
        loop {
            match self.wait_readable(Some(Duration::ZERO)) {
                Ok(true) => {}
                Ok(false) => return false,
                Err(_) => return true,
            }
            match self.fill() {
                Ok(true) => {}
                // End of stream while a call runs: nobody will read the result.
                Ok(false) => {
                    self.failed = Some(TransportError::PeerGone);
                    return true;
                }
                Err(error) => {
                    self.failed = Some(error);
                    return true;
                }
            }
            loop {
                match self.decode() {
                    Ok(Some(ClientMessage::Interrupt)) => return true,
                    Ok(Some(message)) => self.pending.push_back(message),
                    Ok(None) => break,
                    Err(error) => {
                        self.failed = Some(error);
                        return true;
                    }
                }
            }
        }
    }
}
