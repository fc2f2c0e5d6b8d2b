//! Frames: a big-endian u32 length prefix (tokio-util's codec, which checks
//! the maximum before allocating) around one postcard-encoded message.

use std::marker::PhantomData;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

use super::{Malformed, TransportError};
use crate::protocol::payload;

/// Default largest frame: a 256 MiB value plus room for the message around it.
pub const DEFAULT_MAX_FRAME: usize = (256 << 20) + (1 << 20);

/// Decodes `In` messages and encodes `Out` messages.
#[derive(Debug)]
pub struct WireCodec<In, Out> {
    frames: LengthDelimitedCodec,
    max_frame: usize,
    _messages: PhantomData<fn(Out) -> In>,
}

impl<In, Out> WireCodec<In, Out> {
    /// A codec refusing frames longer than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        WireCodec {
            frames: LengthDelimitedCodec::builder()
                .length_field_type::<u32>()
                .max_frame_length(max_frame)
                .new_codec(),
            max_frame,
            _messages: PhantomData,
        }
    }
}

impl<In, Out> Clone for WireCodec<In, Out> {
    fn clone(&self) -> Self {
        WireCodec::new(self.max_frame)
    }
}

impl<In, Out> Default for WireCodec<In, Out> {
    fn default() -> Self {
        WireCodec::new(DEFAULT_MAX_FRAME)
    }
}

impl<In: DeserializeOwned, Out> Decoder for WireCodec<In, Out> {
    type Item = In;
    type Error = TransportError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, TransportError> {
        let frame = match self.frames.decode(src) {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(TransportError::FrameTooLarge {
                    limit: self.max_frame,
                });
            }
            Err(e) => return Err(TransportError::Io(e)),
        };
        // Large `bytes` payloads become slices of the frame, not copies.
        let frame = frame.freeze();
        let (message, trailing) = payload::decode_sharing(&frame, |bytes| {
            postcard::take_from_bytes::<In>(bytes).map(|(message, rest)| (message, rest.len()))
        })
        .map_err(Malformed::Postcard)?;
        if trailing != 0 {
            return Err(Malformed::TrailingBytes(trailing).into());
        }
        Ok(Some(message))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<In>, TransportError> {
        match self.decode(src)? {
            Some(message) => Ok(Some(message)),
            None if src.is_empty() => Ok(None),
            None => Err(TransportError::EofMidFrame),
        }
    }
}

/// Encoded frames waiting to be written: the frame bytes with every large
/// `bytes` payload left out, and those payloads by reference with the
/// position they belong at. Writing the pieces in order sends exactly what
/// [`Encoder::encode`] would, without first copying the payloads.
#[derive(Debug, Default)]
pub struct OutFrames {
    head: BytesMut,
    payloads: Vec<(usize, Bytes)>,
}

impl OutFrames {
    /// Nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.head.is_empty() && self.payloads.is_empty()
    }

    /// Bytes waiting, payloads included.
    pub fn len(&self) -> usize {
        self.head.len() + self.payloads.iter().map(|(_, p)| p.len()).sum::<usize>()
    }

    /// Forgets what was written; keeps the buffer for the next frames.
    pub fn clear(&mut self) {
        self.head.clear();
        self.payloads.clear();
    }

    /// The bytes to write, in order: each stretch of the head, then the
    /// payload that follows it.
    pub fn pieces(&self) -> impl Iterator<Item = &[u8]> {
        use std::iter::once;
        let offsets = self.payloads.iter().map(|(at, _)| *at);
        let starts = once(0).chain(offsets.clone());
        let ends = offsets.chain(once(self.head.len()));
        let payloads = self.payloads.iter().map(|(_, payload)| Some(&payload[..]));
        starts
            .zip(ends)
            .zip(payloads.chain(once(None)))
            .flat_map(|((start, end), payload)| once(&self.head[start..end]).chain(payload))
            .filter(|piece| !piece.is_empty())
    }
}

/// Postcard output for [`OutFrames`]: payloads claimed by reference, the
/// rest appended to the head buffer.
struct Gather<'a>(&'a mut OutFrames);

impl postcard::ser_flavors::Flavor for Gather<'_> {
    type Output = ();

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.head.put_u8(data);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        match payload::claim(data) {
            Some(payload) => self.0.payloads.push((self.0.head.len(), payload)),
            None => self.0.head.extend_from_slice(data),
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

impl<In, Out: Serialize> WireCodec<In, Out> {
    /// Appends `message` as a frame to `out`, leaving large payloads where
    /// they are (see [`OutFrames`]). The same checks as [`Encoder::encode`].
    pub fn encode_frames(
        &mut self,
        message: &Out,
        out: &mut OutFrames,
    ) -> Result<(), TransportError> {
        let length = self.checked_length(message)?;
        let (start, payloads) = (out.head.len(), out.payloads.len());
        out.head.put_u32(length as u32);
        let encoded = payload::encode_gathering(|| {
            postcard::serialize_with_flavor(message, Gather(&mut *out))
        });
        if let Err(e) = encoded {
            out.head.truncate(start);
            out.payloads.truncate(payloads);
            return Err(Malformed::Postcard(e).into());
        }
        Ok(())
    }

    fn checked_length(&self, message: &Out) -> Result<usize, TransportError> {
        let length =
            postcard::experimental::serialized_size(message).map_err(Malformed::Postcard)?;
        if length > self.max_frame {
            return Err(TransportError::FrameTooLarge {
                limit: self.max_frame,
            });
        }
        Ok(length)
    }
}

impl<In, Out: Serialize> Encoder<Out> for WireCodec<In, Out> {
    type Error = TransportError;

    fn encode(&mut self, message: Out, dst: &mut BytesMut) -> Result<(), TransportError> {
        // The frame of `encode_frames` in one buffer (for `FramedWrite` in
        // the handshake, and tests); the links write the pieces themselves.
        // An oversized message is refused before anything is written.
        let mut out = OutFrames::default();
        self.encode_frames(&message, &mut out)?;
        dst.reserve(out.len());
        for piece in out.pieces() {
            dst.extend_from_slice(piece);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ClientMessage, Op, ServerMessage};
    use proptest::prelude::{TestCaseError, prop_assert, prop_assert_eq};

    type Host = WireCodec<ClientMessage, ServerMessage>;
    type Client = WireCodec<ServerMessage, ClientMessage>;

    /// What an independent reading of the length prefixes says the codec
    /// must make of the frame at the front of `input`.
    #[derive(Debug, PartialEq)]
    enum Expect {
        /// Less than a whole frame is there: wait.
        More,
        /// The length prefix is over the limit.
        TooLarge,
        /// A whole frame of this many body bytes: a message, or Malformed.
        Frame(usize),
    }

    fn expect_at(input: &[u8], max: usize) -> Expect {
        let Some(head) = input.get(..4) else {
            return Expect::More;
        };
        let length = u32::from_be_bytes(head.try_into().unwrap()) as usize;
        if length > max {
            Expect::TooLarge
        } else if input.len() - 4 < length {
            Expect::More
        } else {
            Expect::Frame(length)
        }
    }

    /// Feeds `input` to a codec whole and checks every outcome against the
    /// prefixes: frames are taken whole and in order, an oversized prefix is
    /// refused before any allocation, a message decoded re-encodes to one
    /// that decodes the same.
    fn check_stream<In, Out>(input: &[u8], max: usize) -> Result<(), TestCaseError>
    where
        In: DeserializeOwned + Serialize + std::fmt::Debug + Clone,
    {
        let mut decoder = WireCodec::<In, Out>::new(max);
        let mut buf = BytesMut::from(input);
        let mut at = 0;
        loop {
            let expect = expect_at(&input[at..], max);
            match (decoder.decode(&mut buf), &expect) {
                (Ok(None), Expect::More) => return Ok(()),
                (Err(TransportError::FrameTooLarge { limit }), Expect::TooLarge) => {
                    prop_assert_eq!(limit, max);
                    return Ok(());
                }
                (Err(TransportError::Malformed(_)), Expect::Frame(length)) => {
                    prop_assert_eq!(buf.len(), input.len() - at - 4 - length);
                    return Ok(());
                }
                (Ok(Some(message)), Expect::Frame(length)) => {
                    at += 4 + length;
                    prop_assert_eq!(buf.len(), input.len() - at);
                    let mut again = BytesMut::new();
                    WireCodec::<Out, In>::new(max)
                        .encode(message.clone(), &mut again)
                        .unwrap();
                    let back = decoder.decode(&mut again).unwrap().unwrap();
                    prop_assert_eq!(format!("{back:?}"), format!("{message:?}"));
                }
                (got, _) => prop_assert!(false, "expected {:?} at {}, got {:?}", expect, at, got),
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: crate::protocol::strategies::cases(256),
            ..Default::default()
        })]

        #[test]
        fn random_bytes_decode_as_their_length_prefixes_say(
            input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
        ) {
            check_stream::<ClientMessage, ServerMessage>(&input, 4096)?;
            check_stream::<ServerMessage, ClientMessage>(&input, 4096)?;
        }

        #[test]
        fn whole_frames_of_random_bodies_are_a_message_or_malformed(
            bodies in proptest::collection::vec(
                proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64), 1..6),
        ) {
            let mut input = Vec::new();
            for body in &bodies {
                input.extend_from_slice(&(body.len() as u32).to_be_bytes());
                input.extend_from_slice(body);
            }
            check_stream::<ClientMessage, ServerMessage>(&input, DEFAULT_MAX_FRAME)?;
        }

        #[test]
        fn every_request_round_trips(id in proptest::prelude::any::<u64>(),
                                     op in crate::protocol::strategies::op()) {
            let message = ClientMessage::Request { id, op };
            let mut buf = BytesMut::new();
            Client::default().encode(message.clone(), &mut buf).unwrap();
            let decoded = Host::default().decode(&mut buf).unwrap().unwrap();
            // Compared through the debug form: NaN != NaN under PartialEq.
            prop_assert_eq!(format!("{decoded:?}"), format!("{message:?}"));
            prop_assert!(buf.is_empty());
        }
    }

    #[test]
    fn round_trips_and_waits_for_whole_frames() {
        let mut client = Client::default();
        let mut host = Host::default();
        let mut buf = BytesMut::new();
        let message = ClientMessage::Request {
            id: 7,
            op: Op::Eval("1 + 1".into()),
        };
        client.encode(message.clone(), &mut buf).unwrap();
        let mut partial = buf.split_to(3);
        assert!(host.decode(&mut partial).unwrap().is_none());
        partial.unsplit(buf);
        assert_eq!(host.decode(&mut partial).unwrap(), Some(message));
        assert!(partial.is_empty());
    }

    #[test]
    fn appends_frames_and_refuses_oversized_messages_without_writing() {
        let mut client = Client::new(64);
        let mut buf = BytesMut::new();
        client.encode(ClientMessage::Interrupt, &mut buf).unwrap();
        let before = buf.clone();
        let big = ClientMessage::Request {
            id: 1,
            op: Op::Eval("x".repeat(100)),
        };
        let err = client.encode(big, &mut buf).unwrap_err();
        assert!(
            matches!(err, TransportError::FrameTooLarge { limit: 64 }),
            "{err:?}"
        );
        assert_eq!(buf, before);
        let ping = ClientMessage::Request {
            id: 2,
            op: Op::Ping,
        };
        client.encode(ping.clone(), &mut buf).unwrap();
        let mut host = Host::new(64);
        assert_eq!(
            host.decode(&mut buf).unwrap(),
            Some(ClientMessage::Interrupt)
        );
        assert_eq!(host.decode(&mut buf).unwrap(), Some(ping));
        assert!(buf.is_empty());
    }

    #[test]
    fn gathered_frames_write_the_same_bytes_without_copying_payloads() {
        use crate::protocol::{Node, WireValue};
        let payload = bytes::Bytes::from(vec![3u8; 1 << 20]);
        let call = |id, data: &bytes::Bytes| ClientMessage::Request {
            id,
            op: Op::Call {
                target: 9,
                args: WireValue(vec![
                    Node::Tuple(2),
                    Node::Bytes(data.clone()),
                    Node::Int(1),
                ]),
                kwargs: Vec::new(),
            },
        };
        let small = bytes::Bytes::from_static(b"small");
        let messages = [call(1, &payload), ClientMessage::Interrupt, call(2, &small)];
        let mut copied = BytesMut::new();
        let mut out = OutFrames::default();
        for message in &messages {
            // The reference: a u32 big-endian length, then postcard's bytes.
            let plain = postcard::to_allocvec(message).unwrap();
            copied.put_u32(plain.len() as u32);
            copied.extend_from_slice(&plain);
            Client::default().encode_frames(message, &mut out).unwrap();
        }
        let pieces: Vec<&[u8]> = out.pieces().collect();
        assert_eq!(pieces.concat(), copied.to_vec());
        assert_eq!(out.len(), copied.len());
        // The large payload is written from its own buffer; the rest is copied.
        assert!(pieces.iter().any(|p| p.as_ptr() == payload.as_ptr()));
        assert_eq!(pieces.len(), 3);
        let mut tiny = OutFrames::default();
        let err = Client::new(64)
            .encode_frames(&messages[0], &mut tiny)
            .unwrap_err();
        assert!(matches!(err, TransportError::FrameTooLarge { limit: 64 }));
        assert!(tiny.is_empty());
    }

    #[test]
    fn refuses_huge_length_prefixes_before_allocating() {
        let mut host = Host::new(1024);
        let mut buf = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
        let err = host.decode(&mut buf).unwrap_err();
        assert!(
            matches!(err, TransportError::FrameTooLarge { limit: 1024 }),
            "{err:?}"
        );
        assert!(buf.capacity() < 1 << 20);
    }

    #[test]
    fn refuses_garbage_trailing_bytes_and_eof_inside_a_frame() {
        let mut host = Host::default();
        let mut buf = BytesMut::from(&[0, 0, 0, 3, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            host.decode(&mut buf),
            Err(TransportError::Malformed(_))
        ));
        // A valid message followed by junk inside the same frame.
        let mut body = postcard::to_allocvec(&ClientMessage::Interrupt).unwrap();
        body.push(0);
        let mut framed = BytesMut::from(&(body.len() as u32).to_be_bytes()[..]);
        framed.extend_from_slice(&body);
        assert!(matches!(
            host.decode(&mut framed),
            Err(TransportError::Malformed(Malformed::TrailingBytes(_)))
        ));
        let mut cut = BytesMut::from(&[0, 0, 0, 9, 1, 2][..]);
        assert!(matches!(
            host.decode_eof(&mut cut),
            Err(TransportError::EofMidFrame)
        ));
    }
}
