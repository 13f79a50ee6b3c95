//! Reading the replies scripts pack with `cmsgpack.pack`.
//!
//! A script that returns many values (a snapshot with its fields and results, the candidates
//! of a poll) packs them into one MessagePack string: redis-rs parses every element of an
//! array reply on its own, which for small fields costs more than the fields themselves,
//! while a packed reply is one bulk string read here in place. Strings come back as slices of
//! that one buffer, so task outputs are not copied again.

use bytes::Bytes;
use redis::Value;
use rmp::Marker;
use sayiir_persistence::BackendError;

use crate::error::{self, At};

/// The values of a packed reply, taken one by one.
#[derive(Debug)]
pub(crate) struct Packed<'a> {
    buffer: Bytes,
    position: usize,
    at: At<'a>,
}

impl<'a> Packed<'a> {
    /// The packed values of `value`, which must be a bulk string.
    pub(crate) fn new(value: Value, at: At<'a>) -> Result<Self, BackendError> {
        match value {
            Value::BulkString(raw) => Ok(Self::from_bytes(Bytes::from(raw), at)),
            _ => Err(error::reply(&at, "expected a packed reply")),
        }
    }

    pub(crate) fn from_bytes(buffer: Bytes, at: At<'a>) -> Self {
        Self { buffer, position: 0, at }
    }

    /// An error about this reply.
    pub(crate) fn error(&self, what: &str) -> BackendError {
        error::reply(&self.at, &format!("packed reply: {what}"))
    }

    fn truncated(&self) -> BackendError {
        self.error("truncated")
    }

    fn take(&mut self, len: usize) -> Result<std::ops::Range<usize>, BackendError> {
        let start = self.position;
        let end = start.checked_add(len).filter(|end| *end <= self.buffer.len());
        let end = end.ok_or_else(|| self.truncated())?;
        self.position = end;
        Ok(start..end)
    }

    fn byte(&mut self) -> Result<u8, BackendError> {
        let range = self.take(1)?;
        Ok(self.buffer[range.start])
    }

    /// A big-endian length of `width` bytes.
    fn length(&mut self, width: usize) -> Result<usize, BackendError> {
        let range = self.take(width)?;
        let len = self.buffer[range].iter().fold(0_usize, |len, b| (len << 8) | usize::from(*b));
        Ok(len)
    }

    fn marker(&mut self) -> Result<Marker, BackendError> {
        Ok(Marker::from_u8(self.byte()?))
    }

    fn unexpected(&self, marker: Marker, wanted: &str) -> BackendError {
        error::reply(&self.at, &format!("packed reply: expected {wanted}, found {marker:?}"))
    }

    /// The next value as bytes: a string, or `None` for nil and `false` (a Lua `false`).
    pub(crate) fn bytes(&mut self) -> Result<Option<Bytes>, BackendError> {
        let len = match self.marker()? {
            Marker::Null | Marker::False => return Ok(None),
            Marker::FixStr(len) => usize::from(len),
            Marker::Str8 | Marker::Bin8 => self.length(1)?,
            Marker::Str16 | Marker::Bin16 => self.length(2)?,
            Marker::Str32 | Marker::Bin32 => self.length(4)?,
            other => return Err(self.unexpected(other, "a string")),
        };
        let range = self.take(len)?;
        Ok(Some(self.buffer.slice(range)))
    }

    /// The next value as text, `None` for nil and `false`.
    pub(crate) fn text(&mut self) -> Result<Option<String>, BackendError> {
        let at = self.at;
        self.bytes()?
            .map(|raw| {
                String::from_utf8(raw.to_vec())
                    .map_err(|_| error::reply(&at, "packed reply: text is not UTF-8"))
            })
            .transpose()
    }

    /// The next `N` bytes.
    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], BackendError> {
        let range = self.take(N)?;
        let mut out = [0_u8; N];
        out.copy_from_slice(&self.buffer[range]);
        Ok(out)
    }

    /// The next value as an integer (a Lua number, or decimal text), `None` for nil and
    /// `false`.
    pub(crate) fn int(&mut self) -> Result<Option<i64>, BackendError> {
        let start = self.position;
        let too_large = |at: &At<'_>| error::reply(at, "packed reply: integer out of range");
        let value = match self.marker()? {
            Marker::Null | Marker::False => return Ok(None),
            Marker::FixPos(n) => i64::from(n),
            Marker::FixNeg(n) => i64::from(n),
            Marker::U8 => i64::from(u8::from_be_bytes(self.fixed()?)),
            Marker::U16 => i64::from(u16::from_be_bytes(self.fixed()?)),
            Marker::U32 => i64::from(u32::from_be_bytes(self.fixed()?)),
            Marker::U64 => {
                i64::try_from(u64::from_be_bytes(self.fixed()?)).map_err(|_| too_large(&self.at))?
            }
            Marker::I8 => i64::from(i8::from_be_bytes(self.fixed()?)),
            Marker::I16 => i64::from(i16::from_be_bytes(self.fixed()?)),
            Marker::I32 => i64::from(i32::from_be_bytes(self.fixed()?)),
            Marker::I64 => i64::from_be_bytes(self.fixed()?),
            _ => {
                // Decimal text, as hash fields come back.
                self.position = start;
                let at = self.at;
                return self
                    .text()?
                    .map(|text| {
                        text.parse()
                            .map_err(|_| error::reply(&at, "packed reply: expected an integer"))
                    })
                    .transpose();
            }
        };
        Ok(Some(value))
    }

    /// The number of elements of the next value, an array (an empty Lua table may come as an
    /// empty map).
    pub(crate) fn array(&mut self) -> Result<usize, BackendError> {
        match self.marker()? {
            Marker::FixArray(len) => Ok(usize::from(len)),
            Marker::Array16 => self.length(2),
            Marker::Array32 => self.length(4),
            Marker::FixMap(0) => Ok(0),
            other => Err(self.unexpected(other, "an array")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::at;

    fn packed(build: impl FnOnce(&mut Vec<u8>)) -> Packed<'static> {
        let mut raw = Vec::new();
        build(&mut raw);
        Packed::from_bytes(Bytes::from(raw), at("test"))
    }

    #[test]
    fn reads_what_cmsgpack_writes() {
        let long = vec![7_u8; 70_000];
        let mut p = packed(|w| {
            rmp::encode::write_str(w, "st").unwrap();
            rmp::encode::write_nil(w).unwrap();
            rmp::encode::write_bool(w, false).unwrap();
            rmp::encode::write_array_len(w, 3).unwrap();
            rmp::encode::write_str_len(w, u32::try_from(long.len()).unwrap()).unwrap();
            w.extend_from_slice(&long);
            rmp::encode::write_bin(w, b"\x00\xff").unwrap();
            rmp::encode::write_sint(w, -300).unwrap();
            rmp::encode::write_uint(w, 1 << 40).unwrap();
            rmp::encode::write_str(w, "1700000000").unwrap();
            rmp::encode::write_map_len(w, 0).unwrap();
        });
        assert_eq!(p.text().unwrap().as_deref(), Some("st"));
        assert_eq!(p.bytes().unwrap(), None);
        assert_eq!(p.int().unwrap(), None);
        assert_eq!(p.array().unwrap(), 3);
        assert_eq!(p.bytes().unwrap().unwrap(), &long[..]);
        assert_eq!(p.bytes().unwrap().unwrap(), &b"\x00\xff"[..]);
        assert_eq!(p.int().unwrap(), Some(-300));
        assert_eq!(p.int().unwrap(), Some(1 << 40));
        assert_eq!(p.int().unwrap(), Some(1_700_000_000));
        assert_eq!(p.array().unwrap(), 0);
        assert!(p.bytes().unwrap_err().to_string().contains("truncated"));
    }

    #[test]
    fn damaged_replies_are_errors() {
        let mut cut = packed(|w| {
            rmp::encode::write_str_len(w, 10).unwrap();
            w.extend_from_slice(b"abc");
        });
        assert!(cut.bytes().unwrap_err().to_string().contains("truncated"));
        let mut wrong = packed(|w| {
            rmp::encode::write_array_len(w, 1).unwrap();
        });
        assert!(wrong.bytes().unwrap_err().to_string().contains("expected a string"));
        let mut not_a_number = packed(|w| rmp::encode::write_str(w, "x1").unwrap());
        assert!(not_a_number.int().unwrap_err().to_string().contains("expected an integer"));
        assert!(Packed::new(Value::Int(1), at("test")).is_err());
    }
}
