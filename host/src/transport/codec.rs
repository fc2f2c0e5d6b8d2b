//! Frames: a big-endian u32 length prefix (tokio-util's codec, which checks
//! the maximum before allocating) around one postcard-encoded message.

use std::marker::PhantomData;

use bytes::{BufMut, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

use super::TransportError;

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
        let (message, rest) = postcard::take_from_bytes(&frame)
            .map_err(|e| TransportError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(TransportError::Malformed(format!(
                "{} trailing bytes after the message",
                rest.len()
            )));
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

/// Postcard output appended straight to the frame buffer: no intermediate
/// `Vec`, so a large payload is copied once on its way to the stream.
struct AppendTo<'a>(&'a mut BytesMut);

impl postcard::ser_flavors::Flavor for AppendTo<'_> {
    type Output = ();

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.put_u8(data);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

impl<In, Out: Serialize> Encoder<Out> for WireCodec<In, Out> {
    type Error = TransportError;

    fn encode(&mut self, message: Out, dst: &mut BytesMut) -> Result<(), TransportError> {
        // The same framing as `LengthDelimitedCodec` (u32, big-endian),
        // sized first so that the buffer grows once and an oversized message
        // is refused before anything is written.
        let length = postcard::experimental::serialized_size(&message)
            .map_err(|e| TransportError::Malformed(e.to_string()))?;
        if length > self.max_frame {
            return Err(TransportError::FrameTooLarge {
                limit: self.max_frame,
            });
        }
        let start = dst.len();
        dst.reserve(4 + length);
        dst.put_u32(length as u32);
        if let Err(e) = postcard::serialize_with_flavor(&message, AppendTo(dst)) {
            dst.truncate(start);
            return Err(TransportError::Malformed(e.to_string()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ClientMessage, Op, ServerMessage};

    type Host = WireCodec<ClientMessage, ServerMessage>;
    type Client = WireCodec<ServerMessage, ClientMessage>;

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
        assert!(
            matches!(host.decode(&mut framed), Err(TransportError::Malformed(m)) if m.contains("trailing"))
        );
        let mut cut = BytesMut::from(&[0, 0, 0, 9, 1, 2][..]);
        assert!(matches!(
            host.decode_eof(&mut cut),
            Err(TransportError::EofMidFrame)
        ));
    }
}
