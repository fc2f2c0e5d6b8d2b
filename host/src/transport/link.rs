//! The host's end of a byte-stream transport, driven synchronously by the
//! session thread itself: it reads frames straight off the pipe or socket
//! and writes replies straight back, with no thread hand-off per message.
//! The server's handshake is in [`super::accept`], the session's view of
//! the link (requests, replies, the interrupt scan) in [`super::session_link`].

use std::collections::VecDeque;

use std::time::{Duration, Instant};

use bytes::BytesMut;
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use tokio_util::codec::Decoder;

use super::codec::OutFrames;
use super::stream::LinkStream;
use super::{Timeout, TransportError, WireCodec};
use crate::protocol::{ClientMessage, ServerMessage};

/// Timeouts and sizes of a host-side link.
#[derive(Clone, Debug)]
pub(crate) struct LinkLimits {
    /// Longest wait for the next message between calls (`None`: forever).
    pub idle_timeout: Option<Duration>,
    /// Longest time a started frame may take to arrive completely.
    pub frame_timeout: Duration,
    /// Largest frame accepted.
    pub max_frame: usize,
}

impl Default for LinkLimits {
    fn default() -> Self {
        LinkLimits {
            idle_timeout: None,
            frame_timeout: Duration::from_secs(30),
            max_frame: super::DEFAULT_MAX_FRAME,
        }
    }
}

/// Most read at once.
const MAX_READ: usize = 256 * 1024;
/// Less spare room than this (with a partial frame smaller than
/// [`REGROW_BELOW`]) makes the read buffer grow before a read.
const MIN_READ: usize = 4096;
/// How far the read buffer grows when it runs low between frames.
const REGROW_BELOW: usize = 64 * 1024;

pub(crate) struct BlockingLink<S> {
    stream: S,
    codec: WireCodec<ClientMessage, ServerMessage>,
    read_buf: BytesMut,
    out: OutFrames,
    /// Messages read while looking for an interrupt, in order.
    pub(super) pending: VecDeque<ClientMessage>,
    limits: LinkLimits,
    /// When the frame now in `read_buf` started to arrive.
    frame_started: Option<Instant>,
    /// Why the link stopped, once it did.
    pub(super) failed: Option<TransportError>,
    /// How long to poll before blocking (see [`super::spin`]).
    spin: Duration,
    /// The limit the stream's reads were last given by `time_reads`
    /// (`None`: not arranged, or the stream cannot).
    timed_reads: Option<Option<Duration>>,
}

impl<S: LinkStream> BlockingLink<S> {
    pub(crate) fn new(stream: S, limits: LinkLimits) -> Self {
        BlockingLink {
            stream,
            codec: WireCodec::new(limits.max_frame),
            read_buf: BytesMut::with_capacity(64 * 1024),
            out: OutFrames::default(),
            pending: VecDeque::new(),
            limits,
            frame_started: None,
            failed: None,
            spin: super::spin::budget(super::spin::DEFAULT_SERVER_SPIN),
            timed_reads: None,
        }
    }

    /// New timeouts, e.g. once the handshake is done.
    pub(crate) fn set_limits(&mut self, limits: LinkLimits) {
        self.codec = WireCodec::new(limits.max_frame);
        self.limits = limits;
    }

    /// Waits until the reader has data, at most `timeout`; polls for up to
    /// the spin budget first (see [`super::spin`]).
    pub(super) fn wait_readable(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<bool, TransportError> {
        if self.stream.buffered() {
            return Ok(true);
        }
        if timeout != Some(Duration::ZERO) && self.spin_until_readable()? {
            return Ok(true);
        }
        let spec = timeout.map(|t| Timespec {
            tv_sec: t.as_secs() as _,
            tv_nsec: t.subsec_nanos() as _,
        });
        self.poll_once(spec.as_ref())
    }

    /// Polls without sleeping for up to the spin budget; whether data came.
    fn spin_until_readable(&mut self) -> Result<bool, TransportError> {
        if self.spin.is_zero() {
            return Ok(false);
        }
        let Some(_permit) = super::spin::permit() else {
            return Ok(false);
        };
        let started = Instant::now();
        loop {
            if self.poll_once(Some(&Timespec::default()))? {
                return Ok(true);
            }
            let spun = started.elapsed();
            if spun >= self.spin {
                return Ok(false);
            }
            if spun >= super::spin::YIELD_AFTER {
                // A peer sharing this CPU gets to run.
                std::thread::yield_now();
            }
        }
    }

    /// Arranges for reads to block at most `timeout`, if the stream can;
    /// the socket option is set only when the limit changes.
    fn time_reads(&mut self, timeout: Option<Duration>) -> bool {
        if self.timed_reads == Some(timeout) {
            return true;
        }
        self.timed_reads = None;
        if self.stream.time_reads(timeout) {
            self.timed_reads = Some(timeout);
            return true;
        }
        false
    }

    fn poll_once(&mut self, timeout: Option<&Timespec>) -> Result<bool, TransportError> {
        let mut fds = [PollFd::from_borrowed_fd(
            self.stream.poll_fd(),
            PollFlags::IN,
        )];
        loop {
            match poll(&mut fds, timeout) {
                Ok(n) => return Ok(n > 0),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(TransportError::Io(e.into())),
            }
        }
    }

    /// Reads once, straight into the frame buffer; `false` on end of stream.
    ///
    /// Once a frame's length is known the codec has reserved room for all of
    /// it, so a large payload lands where it is decoded from: no copy, no
    /// regrowth, and (for sockets and pipes) no zeroing beforehand.
    pub(super) fn fill(&mut self) -> Result<bool, TransportError> {
        let start = self.read_buf.len();
        let spare = self.read_buf.capacity() - start;
        // Inside a large frame the spare room is exactly what the frame still
        // needs: regrow only when there is none, or little while what would
        // be moved is small.
        if spare == 0 || (spare < MIN_READ && start < REGROW_BELOW) {
            self.read_buf.reserve(REGROW_BELOW);
        }
        let spare = self.read_buf.spare_capacity_mut();
        let room = spare.len().min(MAX_READ);
        let n = loop {
            match self.stream.read_uninit(&mut spare[..room]) {
                Ok(n) => break n.min(room),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(TransportError::Io(e)),
            }
        };
        // SAFETY: `read_uninit` initialised the first `n` bytes of the spare
        // capacity, which follow the `start` bytes already there.
        unsafe { self.read_buf.set_len(start + n) };
        if n == 0 {
            return Ok(false);
        }
        if self.frame_started.is_none() {
            self.frame_started = Some(Instant::now());
        }
        Ok(true)
    }

    /// Between frames: waits (at most the idle timeout) for the next request
    /// and reads it. Where the stream can time its reads, the read itself is
    /// the wait — one system call per request, not two.
    fn fill_when_requested(&mut self) -> Result<bool, TransportError> {
        let idle = self.limits.idle_timeout;
        let idle_too_long = || TransportError::Timeout(Timeout::Idle);
        if !self.time_reads(idle) {
            if !self.wait_readable(idle)? {
                return Err(idle_too_long());
            }
            return self.fill();
        }
        // Whether or not spinning sees the request come, the read below
        // takes it; spinning only spares a sleeping thread's late wake-up.
        self.spin_until_readable()?;
        match self.fill() {
            Err(TransportError::Io(error))
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err(idle_too_long())
            }
            other => other,
        }
    }

    pub(super) fn decode(&mut self) -> Result<Option<ClientMessage>, TransportError> {
        let message = self.codec.decode(&mut self.read_buf)?;
        if message.is_some() {
            self.frame_started = if self.read_buf.is_empty() {
                None
            } else {
                Some(Instant::now())
            };
        }
        Ok(message)
    }

    /// The next message; `Ok(None)` on a clean end of stream.
    pub(crate) fn read_message(&mut self) -> Result<Option<ClientMessage>, TransportError> {
        if let Some(message) = self.pending.pop_front() {
            return Ok(Some(message));
        }
        loop {
            if let Some(message) = self.decode()? {
                return Ok(Some(message));
            }
            let filled = match self.frame_started {
                Some(started) => {
                    let left = self
                        .limits
                        .frame_timeout
                        .checked_sub(started.elapsed())
                        .ok_or(TransportError::Timeout(Timeout::Frame))?;
                    if !self.wait_readable(Some(left))? {
                        return Err(TransportError::Timeout(Timeout::Frame));
                    }
                    self.fill()?
                }
                None => self.fill_when_requested()?,
            };
            if !filled {
                return if self.read_buf.is_empty() {
                    Ok(None)
                } else {
                    Err(TransportError::EofMidFrame)
                };
            }
        }
    }

    pub(crate) fn write_message(&mut self, message: ServerMessage) -> Result<(), TransportError> {
        self.out.clear();
        self.codec.encode_frames(&message, &mut self.out)?;
        // Large payloads go to the stream from where they lie, uncopied.
        for piece in self.out.pieces() {
            self.stream.write_all(piece)?;
        }
        self.stream.flush()?;
        // Let go of the payloads now rather than at the next message.
        self.out.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Node, Op, WireValue};
    use bytes::Bytes;
    use std::io::{Read, Write};
    use std::os::fd::{AsFd, BorrowedFd};
    use tokio_util::codec::Encoder;

    /// Hands out its bytes in chunks of awkward sizes, never more than asked.
    struct Trickle {
        data: Vec<u8>,
        at: usize,
        chunks: std::iter::Cycle<std::vec::IntoIter<usize>>,
        fd: std::fs::File,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let want = self.chunks.next().unwrap().min(buf.len());
            let n = want.min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    // SAFETY: the default `read_uninit` is kept.
    unsafe impl LinkStream for Trickle {
        fn poll_fd(&self) -> BorrowedFd<'_> {
            self.fd.as_fd()
        }
        fn buffered(&mut self) -> bool {
            // Never wait on the descriptor: everything is in memory.
            true
        }
    }

    fn request(id: u64, payload: Bytes) -> ClientMessage {
        ClientMessage::Request {
            id,
            op: Op::Call {
                target: 1,
                args: WireValue(vec![Node::Tuple(1), Node::Bytes(payload)]),
                kwargs: Vec::new(),
            },
        }
    }

    #[test]
    fn frames_arriving_in_odd_pieces_are_read_whole_and_in_order() {
        let large: Bytes = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
        let messages = vec![
            ClientMessage::Interrupt,
            request(1, large.clone()),
            request(2, Bytes::from_static(b"small")),
            request(3, large.slice(5..)),
            ClientMessage::Interrupt,
        ];
        let mut codec = WireCodec::<ServerMessage, ClientMessage>::default();
        let mut wire = BytesMut::new();
        for message in &messages {
            codec.encode(message.clone(), &mut wire).unwrap();
        }
        for chunks in [vec![1, 3, 7, 70_000, 5], vec![1 << 20], vec![4096, 3]] {
            let stream = Trickle {
                data: wire.to_vec(),
                at: 0,
                chunks: chunks.clone().into_iter().cycle(),
                fd: std::fs::File::open("/dev/null").unwrap(),
            };
            let mut link = BlockingLink::new(stream, LinkLimits::default());
            for expected in &messages {
                let got = link.read_message().unwrap();
                assert_eq!(got.as_ref(), Some(expected), "chunks {chunks:?}");
            }
            assert_eq!(link.read_message().unwrap(), None, "chunks {chunks:?}");
        }
    }

    /// Claims to have read more than it was given room for.
    struct Liar(std::fs::File);

    impl Read for Liar {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            Ok(buf.len() + 10)
        }
    }

    impl Write for Liar {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    // SAFETY: the default `read_uninit` is kept.
    unsafe impl LinkStream for Liar {
        fn poll_fd(&self) -> BorrowedFd<'_> {
            self.0.as_fd()
        }
        fn buffered(&mut self) -> bool {
            true
        }
    }

    #[test]
    fn a_read_that_claims_more_than_its_buffer_is_an_error() {
        let liar = Liar(std::fs::File::open("/dev/null").unwrap());
        let mut link = BlockingLink::new(liar, LinkLimits::default());
        assert!(matches!(link.read_message(), Err(TransportError::Io(_))));
    }

    #[test]
    fn a_stream_ending_inside_a_frame_is_an_error_not_a_message() {
        let mut codec = WireCodec::<ServerMessage, ClientMessage>::default();
        let mut wire = BytesMut::new();
        codec
            .encode(request(1, Bytes::from(vec![9u8; 100_000])), &mut wire)
            .unwrap();
        wire.truncate(wire.len() - 1);
        let stream = Trickle {
            data: wire.to_vec(),
            at: 0,
            chunks: vec![65_536].into_iter().cycle(),
            fd: std::fs::File::open("/dev/null").unwrap(),
        };
        let mut link = BlockingLink::new(stream, LinkLimits::default());
        assert!(matches!(
            link.read_message(),
            Err(TransportError::EofMidFrame)
        ));
    }

    #[test]
    fn a_socket_idle_past_its_timeout_is_a_timeout_and_a_request_in_time_is_read() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let limits = LinkLimits {
            idle_timeout: Some(Duration::from_millis(300)),
            ..LinkLimits::default()
        };
        let mut link = BlockingLink::new(server, limits);
        // A request that arrives in time is read (the read is the wait).
        let mut wire = BytesMut::new();
        WireCodec::<ServerMessage, ClientMessage>::default()
            .encode(ClientMessage::Interrupt, &mut wire)
            .unwrap();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            client.write_all(&wire).unwrap();
            client
        });
        assert_eq!(link.read_message().unwrap(), Some(ClientMessage::Interrupt));
        let _client = writer.join().unwrap();
        // Then nothing: the blocked read ends at the idle timeout, typed.
        let started = Instant::now();
        let err = link.read_message().unwrap_err();
        assert!(
            matches!(&err, TransportError::Timeout(Timeout::Idle)),
            "{err:?}"
        );
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
    }
}
