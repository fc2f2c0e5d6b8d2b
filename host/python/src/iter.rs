//! Iteration over a remote iterable: the first batch comes with the
//! iterator (`Op::Iter`), the next ones (`Op::Next`) double in size up to a
//! bound, so a long iteration costs few round trips and a short one no more
//! than the items it has.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use pushy::protocol::Op;
use pushy::{RemoteObject, Value};
use pyo3::prelude::*;

use crate::convert;
use crate::proxy::{handle, state_of};
use crate::session::State;
use crate::waiting;

/// First batch size of an iteration; it doubles up to the largest.
const FIRST_BATCH: u32 = 256;
const LARGEST_BATCH: u32 = 4096;

struct Iteration {
    /// The remote iterator, until it is exhausted.
    iterator: Option<RemoteObject>,
    buffer: VecDeque<Py<PyAny>>,
    batch: u32,
}

/// Iteration over a remote iterable, many items per round trip.
#[pyclass(frozen, module = "pushy._core")]
pub(crate) struct RemoteIterator {
    state: Arc<State>,
    iteration: Mutex<Iteration>,
}

fn protocol_error(what: &'static str) -> pushy::Error {
    pushy::Error::Protocol(pushy::ProtocolViolation::MalformedReply(what))
}

impl RemoteIterator {
    fn fill(
        &self,
        py: Python<'_>,
        items: Vec<Value>,
        done: bool,
        iterator: Option<RemoteObject>,
    ) -> PyResult<()> {
        let items = items
            .into_iter()
            .map(|item| convert::to_py(py, &self.state, item))
            .collect::<PyResult<Vec<_>>>()?;
        let mut iteration = self.iteration.lock().expect("iteration");
        iteration.buffer.extend(items);
        iteration.batch = (iteration.batch * 2).min(LARGEST_BATCH);
        if done {
            iteration.iterator = None;
        } else if iterator.is_some() {
            iteration.iterator = iterator;
        }
        Ok(())
    }
}

#[pymethods]
impl RemoteIterator {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let (iterator, batch) = {
            let mut iteration = self.iteration.lock().expect("iteration");
            if let Some(item) = iteration.buffer.pop_front() {
                return Ok(Some(item));
            }
            match &iteration.iterator {
                Some(iterator) => (iterator.clone(), iteration.batch),
                None => return Ok(None),
            }
        };
        let value = waiting::wait(py, &self.state, async move {
            let op = Op::Next {
                target: iterator.id(),
                max_items: batch,
            };
            let value = iterator.connection().request_op(op).await;
            drop(iterator);
            value
        })?;
        let Value::Tuple(parts) = value else {
            return Err(crate::errors::to_py(
                py,
                Some(&self.state),
                protocol_error("next"),
            ));
        };
        let mut parts = parts.into_iter();
        let (Some(Value::Tuple(items)), Some(done)) = (parts.next(), parts.next()) else {
            return Err(crate::errors::to_py(
                py,
                Some(&self.state),
                protocol_error("next"),
            ));
        };
        self.fill(py, items, matches!(done, Value::Bool(true)), None)?;
        Ok(self.iteration.lock().expect("iteration").buffer.pop_front())
    }
}

/// `iter(proxy)`: the first batch comes with the iterator.
#[pyfunction]
pub(crate) fn iterate(py: Python<'_>, proxy: &Bound<'_, PyAny>) -> PyResult<RemoteIterator> {
    let state = state_of(proxy)?;
    let value = waiting::wait(py, &state, {
        let object = handle(proxy)?.object.clone();
        async move {
            let op = Op::Iter {
                target: object.id(),
                max_items: FIRST_BATCH,
            };
            let value = object.connection().request_op(op).await;
            drop(object);
            value
        }
    })?;
    let malformed = || crate::errors::to_py(py, Some(&state), protocol_error("iter"));
    let Value::Tuple(parts) = value else {
        return Err(malformed());
    };
    let mut parts = parts.into_iter();
    let (Some(iterator), Some(Value::Tuple(items)), Some(done)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    let iterator = match iterator {
        Value::Object(object) => Some(object),
        _ => None,
    };
    let done = matches!(done, Value::Bool(true)) || iterator.is_none();
    let remote = RemoteIterator {
        state: state.clone(),
        iteration: Mutex::new(Iteration {
            iterator: None,
            buffer: VecDeque::new(),
            batch: FIRST_BATCH,
        }),
    };
    remote.fill(py, items, done, iterator)?;
    Ok(remote)
}
