//! CRC-64/XZ (Go's `crc64.ECMA` with pre/post inversion), as used in mongodump EOF headers.
//!
//! Reflected polynomial 0xC96C5795D7870F42, init !0, xorout !0; slicing-by-8 so that the
//! checksum is not the bottleneck of the generator. The tables are built at compile time.

const POLY: u64 = 0xC96C_5795_D787_0F42;

const fn make_tables() -> [[u64; 256]; 8] {
    let mut t = [[0u64; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u64;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut s = 1;
    while s < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[s - 1][i];
            t[s][i] = (prev >> 8) ^ t[0][(prev & 0xFF) as usize];
            i += 1;
        }
        s += 1;
    }
    t
}

static TABLES: [[u64; 256]; 8] = make_tables();

/// A running CRC-64/XZ.
#[derive(Clone, Copy, Debug)]
pub struct Crc64 {
    state: u64,
}

impl Default for Crc64 {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc64 {
    pub const fn new() -> Self {
        Crc64 { state: !0 }
    }

    pub fn update(&mut self, data: &[u8]) {
        let t = &TABLES;
        let mut c = self.state;
        let mut chunks = data.chunks_exact(8);
        for ch in &mut chunks {
            let v = c ^ u64::from_le_bytes([ch[0], ch[1], ch[2], ch[3], ch[4], ch[5], ch[6], ch[7]]);
            c = t[7][(v & 0xFF) as usize]
                ^ t[6][((v >> 8) & 0xFF) as usize]
                ^ t[5][((v >> 16) & 0xFF) as usize]
                ^ t[4][((v >> 24) & 0xFF) as usize]
                ^ t[3][((v >> 32) & 0xFF) as usize]
                ^ t[2][((v >> 40) & 0xFF) as usize]
                ^ t[1][((v >> 48) & 0xFF) as usize]
                ^ t[0][(v >> 56) as usize];
        }
        for &b in chunks.remainder() {
            c = (c >> 8) ^ t[0][((c ^ b as u64) & 0xFF) as usize];
        }
        self.state = c;
    }

    pub fn finish(&self) -> u64 {
        !self.state
    }
}

/// CRC-64/XZ of one buffer.
pub fn crc64(data: &[u8]) -> u64 {
    let mut c = Crc64::new();
    c.update(data);
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytewise(data: &[u8]) -> u64 {
        let mut c = !0u64;
        for &b in data {
            c ^= b as u64;
            for _ in 0..8 {
                c = if c & 1 == 1 { (c >> 1) ^ POLY } else { c >> 1 };
            }
        }
        !c
    }

    #[test]
    fn check_value() {
        assert_eq!(crc64(b"123456789"), 0x995d_c9bb_df19_39fa);
        assert_eq!(crc64(b""), 0);
        assert_eq!(crc64(b"hello world!"), 0x8483_c0fa_3260_7d61);
    }

    #[test]
    fn sliced_equals_bitwise_and_incremental() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for len in [0usize, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 999, 1000] {
            assert_eq!(crc64(&data[..len]), bytewise(&data[..len]), "len {len}");
            for split in [0, len / 3, len / 2, len] {
                let mut c = Crc64::new();
                c.update(&data[..split]);
                c.update(&data[split..len]);
                assert_eq!(c.finish(), bytewise(&data[..len]));
            }
        }
    }

    #[test]
    fn real_mongodump_crc() {
        // The one data document of test.bar in mongo-tools' test.bar.archive (bytes 796..831);
        // its EOF header stores CRC 0x9369f0f35bec50d9.
        let doc: [u8; 35] = [
            0x23, 0x00, 0x00, 0x00, 0x07, 0x5f, 0x69, 0x64, 0x00, 0x58, 0xff, 0xb1, 0x24, 0xb7, 0x21, 0xbc, 0x6c, 0x32,
            0x34, 0x33, 0x3c, 0x02, 0x66, 0x6f, 0x6f, 0x00, 0x04, 0x00, 0x00, 0x00, 0x62, 0x61, 0x72, 0x00, 0x00,
        ];
        assert_eq!(crc64(&doc), 0x9369_f0f3_5bec_50d9);
    }
}
