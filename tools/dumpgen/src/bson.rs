//! A minimal BSON encoder writing straight into a reused byte buffer.
//!
//! Only the element types the generator needs (double, string, document, array, ObjectId,
//! bool, UTC datetime, int32, int64). Lengths are patched in when a document or string is
//! closed, so no intermediate allocation is made. Field names must not contain NUL.

pub const DOUBLE: u8 = 0x01;
pub const STRING: u8 = 0x02;
pub const DOCUMENT: u8 = 0x03;
pub const ARRAY: u8 = 0x04;
pub const OBJECT_ID: u8 = 0x07;
pub const BOOL: u8 = 0x08;
pub const DATETIME: u8 = 0x09;
pub const INT32: u8 = 0x10;
pub const INT64: u8 = 0x12;

/// Encoder over a caller-owned buffer. Open documents and strings are identified by the
/// offset returned from their `begin` call; they must be closed in LIFO order.
pub struct Encoder<'a> {
    pub buf: &'a mut Vec<u8>,
}

/// Offset of an open document or string length field.
#[derive(Clone, Copy, Debug)]
#[must_use]
pub struct Open(usize);

impl<'a> Encoder<'a> {
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        Encoder { buf }
    }

    /// Starts a top-level document (or the value of a document/array element).
    pub fn begin_doc(&mut self) -> Open {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        Open(at)
    }

    /// Closes a document: writes the trailing NUL and patches the int32 total length.
    pub fn end_doc(&mut self, open: Open) {
        self.buf.push(0);
        let len = (self.buf.len() - open.0) as i32;
        self.buf[open.0..open.0 + 4].copy_from_slice(&len.to_le_bytes());
    }

    #[inline]
    fn key(&mut self, ty: u8, name: &str) {
        debug_assert!(!name.as_bytes().contains(&0));
        self.buf.push(ty);
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
    }

    /// Element key for array position `i` ("0", "1", ...).
    fn index_key(&mut self, ty: u8, i: usize) {
        self.buf.push(ty);
        let mut digits = [0u8; 20];
        let mut n = i;
        let mut k = digits.len();
        loop {
            k -= 1;
            digits[k] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.buf.extend_from_slice(&digits[k..]);
        self.buf.push(0);
    }

    pub fn double(&mut self, name: &str, v: f64) {
        self.key(DOUBLE, name);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn string(&mut self, name: &str, s: &str) {
        let o = self.begin_string(name);
        self.buf.extend_from_slice(s.as_bytes());
        self.end_string(o);
    }

    /// Starts a string element whose UTF-8 content the caller appends to `buf` directly.
    pub fn begin_string(&mut self, name: &str) -> Open {
        self.key(STRING, name);
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        Open(at)
    }

    /// Closes a string: NUL terminator, and the int32 length counting that NUL.
    pub fn end_string(&mut self, open: Open) {
        self.buf.push(0);
        let len = (self.buf.len() - open.0 - 4) as i32;
        self.buf[open.0..open.0 + 4].copy_from_slice(&len.to_le_bytes());
    }

    pub fn begin_subdoc(&mut self, name: &str) -> Open {
        self.key(DOCUMENT, name);
        self.begin_doc()
    }

    pub fn begin_array(&mut self, name: &str) -> Open {
        self.key(ARRAY, name);
        self.begin_doc()
    }

    /// A string element of an array, at position `i`.
    pub fn array_string(&mut self, i: usize, s: &str) {
        self.index_key(STRING, i);
        self.buf.extend_from_slice(&((s.len() + 1) as i32).to_le_bytes());
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }

    pub fn object_id(&mut self, name: &str, oid: &[u8; 12]) {
        self.key(OBJECT_ID, name);
        self.buf.extend_from_slice(oid);
    }

    pub fn bool(&mut self, name: &str, v: bool) {
        self.key(BOOL, name);
        self.buf.push(u8::from(v));
    }

    /// UTC datetime in milliseconds since the Unix epoch.
    pub fn datetime(&mut self, name: &str, millis: i64) {
        self.key(DATETIME, name);
        self.buf.extend_from_slice(&millis.to_le_bytes());
    }

    pub fn int32(&mut self, name: &str, v: i32) {
        self.key(INT32, name);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn int64(&mut self, name: &str, v: i64) {
        self.key(INT64, name);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_reference_encoding() {
        // {"foo": "bar"} as in mongo-tools' test.bar fixture (minus the _id).
        let mut buf = Vec::new();
        let mut e = Encoder::new(&mut buf);
        let d = e.begin_doc();
        e.string("foo", "bar");
        e.end_doc(d);
        assert_eq!(buf, b"\x12\x00\x00\x00\x02foo\x00\x04\x00\x00\x00bar\x00\x00");
    }

    #[test]
    fn nested_and_array_lengths() {
        let mut buf = Vec::new();
        let mut e = Encoder::new(&mut buf);
        let d = e.begin_doc();
        let a = e.begin_array("t");
        e.array_string(0, "x");
        e.array_string(10, "y");
        e.end_doc(a);
        let s = e.begin_subdoc("s");
        e.int32("i", -1);
        e.bool("b", true);
        e.end_doc(s);
        e.end_doc(d);
        // {t: {"0": "x", "10": "y"}, s: {i: -1, b: true}}
        let expect: &[u8] = b"\x33\x00\x00\x00\
            \x04t\x00\x18\x00\x00\x00\x020\x00\x02\x00\x00\x00x\x00\x0210\x00\x02\x00\x00\x00y\x00\x00\
            \x03s\x00\x10\x00\x00\x00\x10i\x00\xff\xff\xff\xff\x08b\x00\x01\x00\
            \x00";
        assert_eq!(buf, expect);
        assert_eq!(buf.len(), 0x33);
    }
}
