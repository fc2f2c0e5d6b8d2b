//! The output stream of a file in the scratch directory: every write is
//! checked against the quota before it reaches the file.
//!
//! The guest's preview-1 adapter writes files through these streams (one per
//! descriptor, used with `check-write`, `write` and `flush`). Writes are
//! done at once on the calling thread, so the stream is always ready. As
//! with wasmtime-wasi's file streams, a failed write is reported by the next
//! `check-write` or `flush` (the adapter looks there, and asks
//! `filesystem-error-code` what it was); unlike them, a write refused by the
//! limit leaves the stream open, so that the file can be written again once
//! space was freed.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

use super::wrapper::{Shared, no_space};

/// What a write through the stream may offer at once.
const WRITE_CAPACITY: usize = 1 << 20;

/// Where the stream writes.
#[derive(Clone, Copy)]
pub(super) enum Position {
    At(u64),
    Append,
}

pub(super) struct QuotaStream {
    file: Arc<cap_std::fs::File>,
    position: Position,
    shared: Arc<Mutex<Shared>>,
    /// The last write's error, not yet reported.
    failed: Option<std::io::Error>,
    closed: bool,
}

impl QuotaStream {
    pub(super) fn new(
        file: Arc<cap_std::fs::File>,
        position: Position,
        shared: Arc<Mutex<Shared>>,
    ) -> QuotaStream {
        QuotaStream {
            file,
            position,
            shared,
            failed: None,
            closed: false,
        }
    }

    fn write_checked(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let size = self.file.metadata()?.len();
        let offset = match self.position {
            Position::At(offset) => offset,
            Position::Append => size,
        };
        let len = bytes.len() as u64;
        let growth = super::growth(size, offset, len).ok_or_else(no_space)?;
        if !Shared::lock(&self.shared).reserve(growth) {
            return Err(no_space());
        }
        let mut written = 0;
        while written < bytes.len() {
            let at = offset + written as u64;
            match rustix::io::pwrite(&*self.file, &bytes[written..], at) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(rustix::io::Errno::INTR) => {}
                Err(errno) => return Err(errno.into()),
            }
        }
        if let Position::At(offset) = &mut self.position {
            *offset += len;
        }
        Ok(())
    }
}

impl QuotaStream {
    /// The last write's error, once; an I/O error other than the limit's
    /// closes the stream, as wasmtime-wasi's do.
    fn report(&mut self) -> StreamResult<()> {
        if self.closed {
            return Err(StreamError::Closed);
        }
        match self.failed.take() {
            None => Ok(()),
            Some(error) => {
                self.closed = error.raw_os_error() != Some(libc::ENOSPC);
                Err(StreamError::LastOperationFailed(error.into()))
            }
        }
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for QuotaStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.report()?;
        if let Err(error) = self.write_checked(&bytes) {
            self.failed = Some(error);
        }
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.report()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.report().map(|()| WRITE_CAPACITY)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for QuotaStream {
    async fn ready(&mut self) {}
}
