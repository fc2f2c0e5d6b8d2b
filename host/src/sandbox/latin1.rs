//! Bytes the guest sends as latin-1 text (the cheapest way across the
//! component boundary for bytes), decoded in place.

/// Bytes the guest sent as latin-1 text, one char per byte (see `bytes-text`
/// and `emit-output` in wit/agent.wit). A hostile guest may send chars above
/// U+00FF: they are clamped, never trusted.
///
/// Decoded in place: a char's UTF-8 form is never shorter than its byte, so
/// the bytes fit in the string's own buffer, and ASCII text costs nothing.
pub(crate) fn to_bytes(text: String) -> Vec<u8> {
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    let mut bytes = text.into_bytes();
    let Some(mut read) = ascii_prefix(&bytes) else {
        return bytes;
    };
    let mut write = read;
    let len = bytes.len();
    while read < len {
        // Eight ASCII bytes at a time where they come in runs.
        if let Some(word) = bytes.get(read..read + 8)
            && u64::from_ne_bytes(word.try_into().unwrap_or([0x80; 8])) & HIGH_BITS == 0
        {
            bytes.copy_within(read..read + 8, write);
            read += 8;
            write += 8;
            continue;
        }
        let lead = bytes[read];
        // `text` was valid UTF-8, so a lead >= 0x80 starts a 2-, 3- or 4-byte char.
        let (byte, width) = match lead {
            0x00..=0x7F => (lead, 1),
            0xC0..=0xDF => {
                let next = bytes.get(read + 1).copied().unwrap_or(0);
                let code = (u32::from(lead & 0x1F) << 6) | u32::from(next & 0x3F);
                (code.min(255) as u8, 2)
            }
            0xE0..=0xEF => (255, 3),
            _ => (255, 4),
        };
        bytes[write] = byte;
        write += 1;
        read += width;
    }
    bytes.truncate(write);
    bytes
}

/// Length of the leading ASCII run, `None` if it is all ASCII. Checks
/// blocks with the word-at-a-time `is_ascii` before looking at bytes.
fn ascii_prefix(bytes: &[u8]) -> Option<usize> {
    const BLOCK: usize = 256;
    let mut start = 0;
    for block in bytes.chunks(BLOCK) {
        if !block.is_ascii() {
            return block.iter().position(|&b| b >= 0x80).map(|at| start + at);
        }
        start += block.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::to_bytes;

    #[test]
    fn latin1_text_decodes_to_every_byte_value() {
        let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        let text: String = all.iter().map(|&b| char::from(b)).collect();
        assert_eq!(to_bytes(text), all);
        let ascii = "plain ascii".to_owned();
        assert_eq!(to_bytes(ascii), b"plain ascii");
    }

    #[test]
    fn agrees_with_decoding_char_by_char() {
        let naive =
            |text: &str| -> Vec<u8> { text.chars().map(|c| u32::from(c).min(255) as u8).collect() };
        let mut seed = 0x9e37_79b9_u32;
        for length in [0, 1, 7, 8, 9, 15, 16, 17, 300, 5000] {
            for ascii_share in [0, 50, 95, 100] {
                let text: String = (0..length)
                    .map(|_| {
                        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                        let roll = seed >> 8;
                        if roll % 100 < ascii_share {
                            char::from((roll >> 8) as u8 & 0x7f)
                        } else if roll.is_multiple_of(7) {
                            '\u{20ac}'
                        } else {
                            char::from((roll >> 8) as u8 | 0x80)
                        }
                    })
                    .collect();
                assert_eq!(to_bytes(text.clone()), naive(&text), "{text:?}");
            }
        }
    }

    #[test]
    fn chars_beyond_latin1_are_clamped_not_trusted() {
        assert_eq!(
            to_bytes("a\u{100}b\u{20ac}c\u{1f600}".into()),
            b"a\xffb\xffc\xff"
        );
        assert_eq!(to_bytes("\u{7ff}".into()), b"\xff");
    }
}
