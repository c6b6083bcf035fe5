//! Owns [`BodyPool`]: response bodies built per request without allocating. A handler copies
//! its body into one of a few per-worker buffers and hands rtb-io a `Bytes` that shares the
//! buffer's allocation; once every response cut from a buffer has been written (and dropped),
//! the buffer's space is reclaimed in place for the next ones.

use bytes::{Bytes, BytesMut};

/// Buffers in a worker's pool.
pub const BODY_POOL_BUFFERS_DEFAULT: usize = 8;
/// Bytes per buffer.
pub const BODY_POOL_BUFFER_BYTES_DEFAULT: usize = 16 * 1024;

/// A few reusable buffers that bodies are cut from.
#[derive(Debug)]
pub struct BodyPool {
    buffers: Vec<BytesMut>,
    next: usize,
    /// Bodies that found no free buffer and were copied into a fresh allocation.
    pub fallbacks: u64,
}

impl BodyPool {
    /// `count` buffers of `bytes` each (at least one).
    pub fn new(count: usize, bytes: usize) -> Self {
        Self {
            buffers: (0..count.max(1))
                .map(|_| BytesMut::with_capacity(bytes))
                .collect(),
            next: 0,
            fallbacks: 0,
        }
    }

    /// `body` as `Bytes`, copied into a pooled buffer with room for it; a fresh allocation only
    /// when every buffer is still shared with responses not yet written, or the body is larger
    /// than a buffer (counted in [`BodyPool::fallbacks`]).
    pub fn bytes(&mut self, body: &[u8]) -> Bytes {
        let count = self.buffers.len();
        for step in 0..count {
            let index = (self.next + step) % count;
            let buf = &mut self.buffers[index];
            if buf.capacity() >= body.len() || buf.try_reclaim(body.len()) {
                self.next = index;
                buf.extend_from_slice(body);
                return buf.split().freeze();
            }
        }
        self.fallbacks += 1;
        Bytes::copy_from_slice(body)
    }
}

impl Default for BodyPool {
    fn default() -> Self {
        Self::new(BODY_POOL_BUFFERS_DEFAULT, BODY_POOL_BUFFER_BYTES_DEFAULT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_share_buffers_and_reclaim_them_once_dropped() {
        let mut pool = BodyPool::new(2, 64);
        let a = pool.bytes(&[1; 40]);
        let b = pool.bytes(&[2; 40]); // does not fit behind `a`: the second buffer
        assert_eq!((a.len(), b.len(), pool.fallbacks), (40, 40, 0));
        let c = pool.bytes(&[3; 40]); // both buffers held: a fresh allocation
        assert_eq!(pool.fallbacks, 1);
        drop((a, b, c));
        for round in 0..100u8 {
            let body = [round; 48];
            let bytes = pool.bytes(&body);
            assert_eq!(&bytes[..], &body[..]);
        }
        assert_eq!(pool.fallbacks, 1, "dropped bodies free their space");
        let big = pool.bytes(&[0; 100]);
        assert_eq!((big.len(), pool.fallbacks), (100, 2));
    }
}
