//! The byte streams a host-side link reads and writes: a socket, this
//! process's stdio, a TLS stream ([`super::tls`]).

use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

/// A duplex byte stream a session thread can block on.
///
/// # Safety
///
/// [`LinkStream::read_uninit`] must return `Ok(n)` only with `n <= buf.len()`
/// and the first `n` elements of `buf` initialised: the link then treats them
/// as bytes without looking (it reads large frames straight into spare
/// capacity). The default implementation keeps this promise.
pub(crate) unsafe trait LinkStream: Read + Write + Send {
    /// The descriptor to wait on for readability.
    fn poll_fd(&self) -> BorrowedFd<'_>;
    /// Whether bytes are already buffered above the descriptor (TLS).
    fn buffered(&mut self) -> bool {
        false
    }
    /// Makes reads block for at most `timeout` (`None`: without limit), so
    /// that waiting for the next request is the read itself, with no
    /// `poll(2)` before it; a read that times out then fails with
    /// `WouldBlock` or `TimedOut`. `false`: this stream cannot, poll first.
    fn time_reads(&mut self, _timeout: Option<Duration>) -> bool {
        false
    }
    /// Reads once into `buf`, which need not be initialised; returns how
    /// many bytes at its start now are. The default zeroes `buf` first.
    fn read_uninit(&mut self, buf: &mut [MaybeUninit<u8>]) -> std::io::Result<usize> {
        buf.fill(MaybeUninit::new(0));
        // SAFETY: every element was just initialised, and `MaybeUninit<u8>`
        // has the layout of `u8`.
        let buf = unsafe { &mut *(buf as *mut [MaybeUninit<u8>] as *mut [u8]) };
        // `Read::read` may claim more than the buffer holds: never pass that on.
        let n = self.read(buf)?;
        if n > buf.len() {
            return Err(std::io::Error::other(
                "a read claimed more bytes than its buffer holds",
            ));
        }
        Ok(n)
    }
}

/// One `read(2)` on `fd` into possibly uninitialised memory: the kernel
/// writes what it returns, so nothing needs zeroing first.
fn read_fd(fd: BorrowedFd<'_>, buf: &mut [MaybeUninit<u8>]) -> std::io::Result<usize> {
    let (filled, _) = rustix::io::read(fd, buf)?;
    Ok(filled.len())
}

// SAFETY: `read_uninit` is `read(2)`, which returns how many bytes it wrote.
unsafe impl LinkStream for std::net::TcpStream {
    fn poll_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }

    fn time_reads(&mut self, timeout: Option<Duration>) -> bool {
        // SO_RCVTIMEO; zero would mean "no limit" to the kernel.
        timeout != Some(Duration::ZERO) && self.set_read_timeout(timeout).is_ok()
    }

    fn read_uninit(&mut self, buf: &mut [MaybeUninit<u8>]) -> std::io::Result<usize> {
        read_fd(self.as_fd(), buf)
    }
}

/// This process's stdin and stdout as one stream.
pub(crate) struct Stdio {
    pub(crate) input: std::fs::File,
    pub(crate) output: std::io::BufWriter<std::fs::File>,
}

impl Read for Stdio {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Stdio {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.output.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.output.flush()
    }
}

// SAFETY: `read_uninit` is `read(2)`, which returns how many bytes it wrote.
unsafe impl LinkStream for Stdio {
    fn poll_fd(&self) -> BorrowedFd<'_> {
        self.input.as_fd()
    }

    fn time_reads(&mut self, timeout: Option<Duration>) -> bool {
        // A pipe read can only block without limit.
        timeout.is_none()
    }

    fn read_uninit(&mut self, buf: &mut [MaybeUninit<u8>]) -> std::io::Result<usize> {
        read_fd(self.input.as_fd(), buf)
    }
}
