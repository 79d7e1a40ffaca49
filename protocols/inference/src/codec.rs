//! Canonical little-endian encoding and a stable 64-bit hash over it.
//!
//! One encoder writes to a [`Sink`]; the same code feeds bytes (snapshots) and the hasher
//! (digests), so a digest is always a hash of exactly what a snapshot would contain. The hash
//! is not cryptographic: it detects accidents and honest divergence, not a forger who can
//! choose colliding states.

use dst_sim::decision::splitmix64;

/// Where canonical encodings go.
pub trait Sink {
    /// Appends raw bytes.
    fn put_bytes(&mut self, bytes: &[u8]);

    fn put_u8(&mut self, value: u8) {
        self.put_bytes(&[value]);
    }
    fn put_u32(&mut self, value: u32) {
        self.put_bytes(&value.to_le_bytes());
    }
    fn put_u64(&mut self, value: u64) {
        self.put_bytes(&value.to_le_bytes());
    }
    /// Floats by their exact bit patterns (NaN payloads and signed zeros included).
    fn put_f32s(&mut self, values: &[f32]) {
        for value in values {
            self.put_bytes(&value.to_bits().to_le_bytes());
        }
    }
}

impl Sink for Vec<u8> {
    fn put_bytes(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Counts bytes without storing them (state sizes for the benchmark).
#[derive(Default)]
pub struct ByteCounter(pub u64);

impl Sink for ByteCounter {
    fn put_bytes(&mut self, bytes: &[u8]) {
        self.0 += bytes.len() as u64;
    }
}

/// Stable hash of a byte stream: 8-byte little-endian words folded through SplitMix64, then
/// the length. Independent of how the stream was cut into `put_bytes` calls.
#[derive(Clone, Debug)]
pub struct StableHasher {
    state: u64,
    pending: [u8; 8],
    pending_len: usize,
    total_len: u64,
}

impl StableHasher {
    /// A hasher whose output also depends on `domain` (so different kinds of object differ).
    pub fn new(domain: u64) -> Self {
        StableHasher {
            state: splitmix64(domain),
            pending: [0; 8],
            pending_len: 0,
            total_len: 0,
        }
    }

    /// The hash of everything written so far.
    pub fn finish(&self) -> u64 {
        let mut state = self.state;
        if self.pending_len > 0 {
            let mut word = [0u8; 8];
            word[..self.pending_len].copy_from_slice(&self.pending[..self.pending_len]);
            state = splitmix64(state ^ u64::from_le_bytes(word));
        }
        splitmix64(state ^ self.total_len)
    }

    fn fold(&mut self, word: u64) {
        self.state = splitmix64(self.state ^ word);
    }
}

impl Sink for StableHasher {
    fn put_bytes(&mut self, mut bytes: &[u8]) {
        self.total_len += bytes.len() as u64;
        if self.pending_len > 0 {
            let take = (8 - self.pending_len).min(bytes.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&bytes[..take]);
            self.pending_len += take;
            bytes = &bytes[take..];
            if self.pending_len < 8 {
                return;
            }
            self.fold(u64::from_le_bytes(self.pending));
            self.pending_len = 0;
        }
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.fold(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        self.pending[..rest.len()].copy_from_slice(rest);
        self.pending_len = rest.len();
    }
}

/// Reads a canonical encoding; every method fails instead of panicking on short input.
pub struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, position: 0 }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    pub fn bytes(&mut self, len: usize, what: &str) -> Result<&'a [u8], String> {
        if self.remaining() < len {
            return Err(format!(
                "truncated at byte {} reading {what}: need {len}, have {}",
                self.position,
                self.remaining()
            ));
        }
        let slice = &self.bytes[self.position..self.position + len];
        self.position += len;
        Ok(slice)
    }

    pub fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.bytes(1, what)?[0])
    }

    pub fn u32(&mut self, what: &str) -> Result<u32, String> {
        let mut word = [0u8; 4];
        word.copy_from_slice(self.bytes(4, what)?);
        Ok(u32::from_le_bytes(word))
    }

    pub fn u64(&mut self, what: &str) -> Result<u64, String> {
        let mut word = [0u8; 8];
        word.copy_from_slice(self.bytes(8, what)?);
        Ok(u64::from_le_bytes(word))
    }

    /// `count` floats; the length is checked against the input before allocating, so a forged
    /// count cannot make us allocate more than the input holds.
    pub fn f32s(&mut self, count: usize, what: &str) -> Result<Vec<f32>, String> {
        let len = count
            .checked_mul(4)
            .ok_or_else(|| format!("{what}: float count {count} overflows"))?;
        let raw = self.bytes(len, what)?;
        Ok(raw
            .chunks_exact(4)
            .map(|chunk| {
                f32::from_bits(u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
            })
            .collect())
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<(), String> {
        if self.remaining() != 0 {
            return Err(format!("{} trailing bytes", self.remaining()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_does_not_depend_on_how_the_stream_is_cut() {
        let data: Vec<u8> = (0..100u8).collect();
        let mut whole = StableHasher::new(1);
        whole.put_bytes(&data);
        let mut pieces = StableHasher::new(1);
        for piece in data.chunks(3) {
            pieces.put_bytes(piece);
        }
        assert_eq!(whole.finish(), pieces.finish());
        let mut shorter = StableHasher::new(1);
        shorter.put_bytes(&data[..99]);
        assert_ne!(whole.finish(), shorter.finish(), "length must matter");
        let mut other_domain = StableHasher::new(2);
        other_domain.put_bytes(&data);
        assert_ne!(whole.finish(), other_domain.finish());
    }

    #[test]
    fn reader_rejects_short_input_and_trailing_bytes() {
        let mut reader = Reader::new(&[1, 2, 3]);
        assert!(reader.u32("word").is_err());
        assert!(reader.f32s(usize::MAX, "floats").is_err());
        let mut reader = Reader::new(&[1, 0, 0, 0, 9]);
        assert_eq!(reader.u32("word"), Ok(1));
        assert!(reader.finish().is_err());
    }
}
