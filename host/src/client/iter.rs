//! Iteration over remote iterables, a batch of items per round trip.

use std::collections::VecDeque;

use super::{Connection, Error, RemoteObject, Value};
use crate::protocol::Op;

/// An iterator over a remote iterable; fetches `batch` items per round trip
/// (RPyC makes one round trip per item).
pub struct RemoteIter {
    connection: Connection,
    iterator: Option<RemoteObject>,
    buffer: VecDeque<Value>,
    batch: u32,
}

impl std::fmt::Debug for RemoteIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteIter")
            .field("buffered", &self.buffer.len())
            .field("done", &self.iterator.is_none())
            .finish()
    }
}

fn protocol_error(what: &'static str) -> Error {
    Error::Protocol(super::ProtocolViolation::MalformedReply(what))
}

impl RemoteIter {
    pub(crate) async fn start(object: &RemoteObject, batch: u32) -> Result<Self, Error> {
        let batch = batch.max(1);
        let connection = object.connection();
        let reply = connection
            .call_op(Op::Iter {
                target: object.id(),
                max_items: batch,
            })
            .await?;
        let Value::Tuple(mut parts) = reply else {
            return Err(protocol_error("iter"));
        };
        if parts.len() != 3 {
            return Err(protocol_error("iter"));
        }
        let done = matches!(parts[2], Value::Bool(true));
        let Value::Tuple(items) = std::mem::replace(&mut parts[1], Value::None) else {
            return Err(protocol_error("iter"));
        };
        let iterator = match std::mem::replace(&mut parts[0], Value::None) {
            Value::Object(o) if !done => Some(o),
            _ => None,
        };
        Ok(RemoteIter {
            connection,
            iterator,
            buffer: items.into(),
            batch,
        })
    }

    /// The next item; `None` at the end.
    pub async fn next(&mut self) -> Option<Result<Value, Error>> {
        if let Some(item) = self.buffer.pop_front() {
            return Some(Ok(item));
        }
        let iterator = self.iterator.as_ref()?;
        let reply = self
            .connection
            .call_op(Op::Next {
                target: iterator.id(),
                max_items: self.batch,
            })
            .await;
        let parts = match reply {
            Ok(Value::Tuple(parts)) if parts.len() == 2 => parts,
            Ok(_) => return Some(Err(protocol_error("next"))),
            Err(e) => {
                self.iterator = None;
                return Some(Err(e));
            }
        };
        let mut parts = parts.into_iter();
        let (Some(Value::Tuple(items)), Some(done)) = (parts.next(), parts.next()) else {
            return Some(Err(protocol_error("next")));
        };
        if matches!(done, Value::Bool(true)) {
            self.iterator = None;
        }
        self.buffer = items.into();
        self.buffer.pop_front().map(Ok)
    }

    /// All remaining items.
    pub async fn collect_all(mut self) -> Result<Vec<Value>, Error> {
        let mut items = Vec::new();
        while let Some(item) = self.next().await {
            items.push(item?);
        }
        Ok(items)
    }
}
