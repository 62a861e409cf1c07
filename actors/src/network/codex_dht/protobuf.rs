//! The little protobuf that Codex's DHT messages need, written by hand.
//!
//! Why not prost: nim-libp2p's `minprotobuf` writes every field, defaults included, and its
//! readers insist on "required" fields being present (a PING without `sprSeq`, or a TALKRESP
//! without `response`, is refused). prost leaves out zero values, which Codex would then
//! reject. The reader here is strict in the other direction too: bounded lengths, no
//! allocation beyond the input, an error for every truncation.

use super::error::MessageError;

/// Protobuf wire types used here.
const VARINT: u8 = 0;
const LEN: u8 = 2;

/// Appends fields in the order written; every field is written, even when empty or zero.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty message.
    pub fn new() -> Self {
        Writer::default()
    }

    fn key(&mut self, field: u32, wire: u8) {
        put_varint(&mut self.buf, (u64::from(field) << 3) | u64::from(wire));
    }

    /// A varint field (`uint64`/`uint32` in minprotobuf).
    pub fn varint(&mut self, field: u32, value: u64) -> &mut Self {
        self.key(field, VARINT);
        put_varint(&mut self.buf, value);
        self
    }

    /// A length-delimited field (bytes, strings, nested messages).
    pub fn bytes(&mut self, field: u32, value: &[u8]) -> &mut Self {
        self.key(field, LEN);
        put_varint(&mut self.buf, value.len() as u64);
        self.buf.extend_from_slice(value);
        self
    }

    /// The encoded message.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// One field as read: its number and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field<'a> {
    /// A varint field.
    Varint(u32, u64),
    /// A length-delimited field, borrowing the input.
    Bytes(u32, &'a [u8]),
}

/// Reads a varint from the front of `input`; returns the value and the bytes used.
fn get_varint(input: &[u8]) -> Result<(u64, usize), MessageError> {
    let mut value = 0u64;
    for (i, &b) in input.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err(MessageError::Protobuf("bad varint"))
}

/// All fields of one message, in order. Fixed 32/64-bit fields (never used by Codex) are
/// skipped; groups and unknown wire types are errors.
pub fn fields(mut input: &[u8]) -> Result<Vec<Field<'_>>, MessageError> {
    let mut out = Vec::new();
    while !input.is_empty() {
        let (key, used) = get_varint(input)?;
        input = &input[used..];
        let field = u32::try_from(key >> 3).map_err(|_| MessageError::Protobuf("field number"))?;
        match (key & 7) as u8 {
            VARINT => {
                let (v, used) = get_varint(input)?;
                input = &input[used..];
                out.push(Field::Varint(field, v));
            }
            LEN => {
                let (len, used) = get_varint(input)?;
                input = &input[used..];
                let len = usize::try_from(len).map_err(|_| MessageError::Protobuf("length"))?;
                if len > input.len() {
                    return Err(MessageError::Protobuf("truncated field"));
                }
                out.push(Field::Bytes(field, &input[..len]));
                input = &input[len..];
            }
            1 => {
                input = input
                    .get(8..)
                    .ok_or(MessageError::Protobuf("truncated fixed64"))?
            }
            5 => {
                input = input
                    .get(4..)
                    .ok_or(MessageError::Protobuf("truncated fixed32"))?
            }
            _ => return Err(MessageError::Protobuf("wire type")),
        }
    }
    Ok(out)
}

/// The last varint field `n` (minprotobuf reads the last occurrence too).
pub fn varint(fields: &[Field<'_>], n: u32) -> Option<u64> {
    fields.iter().rev().find_map(|f| match f {
        Field::Varint(k, v) if *k == n => Some(*v),
        _ => None,
    })
}

/// The last length-delimited field `n`.
pub fn bytes<'a>(fields: &[Field<'a>], n: u32) -> Option<&'a [u8]> {
    fields.iter().rev().find_map(|f| match f {
        Field::Bytes(k, v) if *k == n => Some(*v),
        _ => None,
    })
}

/// Every length-delimited field `n`, in order.
pub fn repeated<'a>(fields: &[Field<'a>], n: u32) -> Vec<&'a [u8]> {
    fields
        .iter()
        .filter_map(|f| match f {
            Field::Bytes(k, v) if *k == n => Some(*v),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_defaults_and_reads_them_back() {
        let msg = Writer::new()
            .varint(1, 0)
            .bytes(2, b"")
            .varint(3, 300)
            .finish();
        assert_eq!(msg, [0x08, 0x00, 0x12, 0x00, 0x18, 0xac, 0x02]);
        let f = fields(&msg).unwrap();
        assert_eq!(varint(&f, 1), Some(0));
        assert_eq!(bytes(&f, 2), Some(&b""[..]));
        assert_eq!(varint(&f, 3), Some(300));
        assert_eq!(varint(&f, 4), None);
    }

    #[test]
    fn truncation_and_garbage_are_errors() {
        assert!(fields(&[0x12, 0x05, 1, 2]).is_err());
        assert!(fields(&[0x08]).is_err());
        assert!(
            fields(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err()
        );
        assert!(fields(&[0x0b]).is_err()); // group start
        assert!(fields(&[0x09, 1, 2]).is_err());
    }
}
