//! `bytes` payloads that share the buffer of the frame they arrived in.
//!
//! A 16 MiB `bytes` value decoded the ordinary serde way is copied out of
//! its frame into a fresh allocation, and on a VM a fresh 16 MiB costs more
//! in page faults (~8 ms here) than the copy itself (~2 ms). Decoding inside
//! [`decode_sharing`] instead makes every large payload a [`Bytes`] slice of
//! the frame: no copy, no allocation, and once the last slice is dropped the
//! reader reuses the same buffer for the next frame.
//!
//! The other direction works the same way: inside [`encode_gathering`] the
//! serializer hands each large payload to the output flavor by reference
//! ([`claim`]), so a writer can send it straight from where it lies instead
//! of copying it into the frame buffer first.
//!
//! The wire format is postcard's plain byte string either way; only the
//! decoding differs. Outside [`decode_sharing`], or for small payloads (a
//! small slice must not pin a large frame), the bytes are copied.

use std::cell::RefCell;

use bytes::Bytes;
use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;

/// Payloads at least this long share the frame; shorter ones are copied.
pub const SHARE_AT_LEAST: usize = 16 * 1024;

thread_local! {
    /// The frame being decoded on this thread, if any.
    static FRAME: RefCell<Option<Bytes>> = const { RefCell::new(None) };
    /// While encoding with [`encode_gathering`]: the large payloads
    /// serialized and not yet claimed by the output flavor.
    static GATHERED: RefCell<Option<Vec<Bytes>>> = const { RefCell::new(None) };
}

/// Puts a thread-local back the way it was, even on unwinding.
struct Restore<T: 'static> {
    key: &'static std::thread::LocalKey<RefCell<Option<T>>>,
    previous: Option<T>,
}

impl<T: 'static> Drop for Restore<T> {
    fn drop(&mut self) {
        let previous = self.previous.take();
        self.key.with(|slot| *slot.borrow_mut() = previous);
    }
}

/// Runs `decode` over `frame` so that large payloads it decodes become
/// slices of `frame` instead of copies.
pub fn decode_sharing<T>(frame: &Bytes, decode: impl FnOnce(&[u8]) -> T) -> T {
    let previous = FRAME.with(|f| f.borrow_mut().replace(frame.clone()));
    let _restore = Restore {
        key: &FRAME,
        previous,
    };
    decode(frame)
}

/// Runs `encode` (a serialization) so that the output flavor can [`claim`]
/// each large payload instead of copying it.
pub fn encode_gathering<T>(encode: impl FnOnce() -> T) -> T {
    let previous = GATHERED.with(|g| g.borrow_mut().replace(Vec::new()));
    let _restore = Restore {
        key: &GATHERED,
        previous,
    };
    encode()
}

/// Called by an output flavor with bytes it is asked to append: the
/// payload they are, if they are a large payload being serialized inside
/// [`encode_gathering`]. The flavor then refers to it instead of copying.
pub fn claim(data: &[u8]) -> Option<Bytes> {
    if data.len() < SHARE_AT_LEAST {
        return None;
    }
    GATHERED.with(|g| {
        let mut gathered = g.borrow_mut();
        let pending = gathered.as_mut()?;
        let last = pending.last()?;
        // The very bytes serialized just now, not merely equal ones.
        let same = last.as_ptr() == data.as_ptr() && last.len() == data.len();
        if same { pending.pop() } else { None }
    })
}

/// `data` as a slice of the frame being decoded, when it lies inside it.
fn share(data: &[u8]) -> Option<Bytes> {
    if data.len() < SHARE_AT_LEAST {
        return None;
    }
    FRAME.with(|f| {
        let frame = f.borrow();
        let frame = frame.as_ref()?;
        let start = frame.as_ptr() as usize;
        let at = data.as_ptr() as usize;
        // `slice_ref` panics on a slice from elsewhere: check first.
        let inside = at >= start && at + data.len() <= start + frame.len();
        inside.then(|| frame.slice_ref(data))
    })
}

/// Serializes like `serde_bytes` (a postcard byte string).
pub fn serialize<S: Serializer>(data: &Bytes, serializer: S) -> Result<S::Ok, S::Error> {
    if data.len() >= SHARE_AT_LEAST {
        GATHERED.with(|g| {
            if let Some(pending) = g.borrow_mut().as_mut() {
                pending.push(data.clone());
            }
        });
    }
    serializer.serialize_bytes(data)
}

/// Deserializes a byte string, sharing the frame where it can.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
    struct PayloadVisitor;

    impl<'de> Visitor<'de> for PayloadVisitor {
        type Value = Bytes;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_borrowed_bytes<E: de::Error>(self, data: &'de [u8]) -> Result<Bytes, E> {
            Ok(share(data).unwrap_or_else(|| Bytes::copy_from_slice(data)))
        }

        fn visit_bytes<E: de::Error>(self, data: &[u8]) -> Result<Bytes, E> {
            Ok(Bytes::copy_from_slice(data))
        }

        fn visit_byte_buf<E: de::Error>(self, data: Vec<u8>) -> Result<Bytes, E> {
            Ok(Bytes::from(data))
        }

        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
            // Self-describing formats may send bytes as a sequence.
            let mut data = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(byte) = seq.next_element::<u8>()? {
                data.push(byte);
            }
            Ok(Bytes::from(data))
        }
    }

    deserializer.deserialize_bytes(PayloadVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Holder {
        small: Vec<u8>,
        #[serde(with = "super")]
        big: Bytes,
        #[serde(with = "super")]
        little: Bytes,
    }

    fn sample() -> Holder {
        Holder {
            small: vec![1, 2, 3],
            big: Bytes::from(vec![7u8; SHARE_AT_LEAST * 2]),
            little: Bytes::from_static(b"abc"),
        }
    }

    #[test]
    fn same_wire_format_as_serde_bytes() {
        #[derive(serde::Serialize)]
        struct Plain<'a> {
            small: Vec<u8>,
            #[serde(with = "serde_bytes")]
            big: &'a [u8],
            #[serde(with = "serde_bytes")]
            little: &'a [u8],
        }
        let holder = sample();
        let plain = Plain {
            small: holder.small.clone(),
            big: &holder.big,
            little: &holder.little,
        };
        assert_eq!(
            postcard::to_allocvec(&holder).unwrap(),
            postcard::to_allocvec(&plain).unwrap()
        );
    }

    #[test]
    fn large_payloads_share_the_frame_and_small_ones_are_copied() {
        let frame = Bytes::from(postcard::to_allocvec(&sample()).unwrap());
        let range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
        let decoded: Holder = decode_sharing(&frame, |b| postcard::from_bytes(b).unwrap());
        assert_eq!(decoded, sample());
        assert!(range.contains(&(decoded.big.as_ptr() as usize)));
        assert!(!range.contains(&(decoded.little.as_ptr() as usize)));
        // Outside decode_sharing nothing is shared.
        let copied: Holder = postcard::from_bytes(&frame).unwrap();
        assert!(!range.contains(&(copied.big.as_ptr() as usize)));
    }

    #[test]
    fn large_payloads_are_claimed_by_reference_when_gathering() {
        struct Sink {
            copied: Vec<u8>,
            claimed: Vec<(usize, Bytes)>,
        }
        impl postcard::ser_flavors::Flavor for &mut Sink {
            type Output = ();
            fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
                self.copied.push(byte);
                Ok(())
            }
            fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
                match claim(data) {
                    Some(payload) => self.claimed.push((self.copied.len(), payload)),
                    None => self.copied.extend_from_slice(data),
                }
                Ok(())
            }
            fn finalize(self) -> postcard::Result<()> {
                Ok(())
            }
        }
        let holder = sample();
        let mut sink = Sink {
            copied: Vec::new(),
            claimed: Vec::new(),
        };
        encode_gathering(|| postcard::serialize_with_flavor(&holder, &mut sink)).unwrap();
        assert_eq!(sink.claimed.len(), 1);
        let (at, payload) = &sink.claimed[0];
        assert_eq!(payload.as_ptr(), holder.big.as_ptr());
        // Splicing the claimed payload back in gives the ordinary encoding.
        let mut whole = sink.copied[..*at].to_vec();
        whole.extend_from_slice(payload);
        whole.extend_from_slice(&sink.copied[*at..]);
        assert_eq!(whole, postcard::to_allocvec(&holder).unwrap());
        // Outside encode_gathering nothing is claimed.
        assert!(claim(&holder.big).is_none());
    }

    #[test]
    fn a_slice_from_another_buffer_is_copied_not_shared() {
        let frame = Bytes::from(vec![0u8; 8]);
        let other = postcard::to_allocvec(&sample()).unwrap();
        let decoded: Holder = decode_sharing(&frame, |_| postcard::from_bytes(&other).unwrap());
        assert_eq!(decoded, sample());
        let restored = FRAME.with(|f| f.borrow().is_none());
        assert!(restored, "the previous frame is restored afterwards");
    }
}
