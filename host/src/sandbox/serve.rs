//! The session loop: answers requests from the local side, one at a time.

use super::Instance;
use crate::protocol::{ClientMessage, Failure, Op, ServerMessage};

/// Serves `instance` until the local side goes away.
///
/// Requests run one after another (a Python interpreter is single-threaded),
/// but the local side may pipeline them: each reply carries its request's id.
pub(crate) fn serve_session(instance: &mut Instance) {
    // Whether the last request already did what shutdown does (a script's
    // end does), so that the session's end need not do it again.
    let mut shut_down = false;
    while let Some(message) = instance.link().recv() {
        match message {
            ClientMessage::Request { id, op } => {
                shut_down = matches!(op, Op::RunScript { .. } | Op::Shutdown);
                let result = instance.dispatch(op);
                // Nested requests (made by callbacks) the call did not answer
                // are answered now, innermost first: their callers wait too.
                // A call that ended the instance ended them; guest code that
                // drove the host's imports itself may have dropped them.
                let nested = instance.take_nested_requests();
                if !nested.is_empty() {
                    let failure = match &result {
                        Err(failure) => failure.clone(),
                        Ok(_) => Failure::BadRequest(
                            "the sandbox's code returned without answering this request \
                             (made from a callback)"
                                .into(),
                        ),
                    };
                    let answered = nested.into_iter().rev().all(|nested| {
                        instance.link().send(ServerMessage::Response {
                            id: nested,
                            result: Err(failure.clone()),
                        })
                    });
                    if !answered {
                        break;
                    }
                }
                if !instance.link().send(ServerMessage::Response { id, result }) {
                    break;
                }
                let deferred = instance.take_deferred_releases();
                if !deferred.is_empty() && !instance.is_dead() {
                    let _ = instance.dispatch(Op::Release(deferred));
                }
            }
            ClientMessage::Release(entries) => {
                if !instance.is_dead() {
                    // A release cannot fail in a way the local side could act on.
                    let _ = instance.dispatch(Op::Release(entries));
                }
            }
            ClientMessage::CallbackReply { call, .. } => {
                tracing::debug!(call, "callback reply while no callback runs; ignored");
            }
            // Nothing runs: nothing to interrupt. A repeated handshake is ignored.
            ClientMessage::Interrupt
            | ClientMessage::Hello { .. }
            | ClientMessage::AuthProof { .. }
            | ClientMessage::Limits(_)
            | ClientMessage::Input(_) => {}
        }
    }
    // The local side is gone: what an interpreter does when it exits, so
    // that files the code left open keep what it wrote.
    if !shut_down {
        instance.finish();
    }
}
