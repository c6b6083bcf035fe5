//! Owns the request body that several calls of one fan-out send: copied once per fan-out into
//! a per-worker buffer, then written by each call together with its own head in one `writev`,
//! instead of being copied into every connection's write buffer (issue 19: at 30 DSPs that
//! copy was a 3.5 KB memmove per DSP into a cold buffer).
//!
//! The one other module of rtb-io with `unsafe` (beside [`crate::pinned`]): [`HeadAndBody`]
//! hands the kernel two iovecs that point into buffers it owns.

use std::{cell::RefCell, io, rc::Rc};

use monoio::{
    buf::IoVecBuf,
    io::{AsyncWriteRent, AsyncWriteRentExt},
};

/// Below this size a body is copied into each call's buffer as before: the copy costs less
/// than the second iovec and the shared buffer's bookkeeping.
pub const SHARED_BODY_BYTES_MIN: usize = 512;

/// A body shared by the calls of one fan-out: a cheap clone (a non-atomic count) per call.
#[derive(Debug, Clone)]
pub(crate) struct SharedBody(Rc<Vec<u8>>);

impl SharedBody {
    /// The bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

thread_local! {
    /// This worker's buffer for shared bodies. A fan-out takes it and gives it back; a write
    /// still in the kernel after its call was dropped (a timeout) keeps its clone alive, and
    /// the next fan-out then starts a new buffer rather than touch bytes being sent.
    static WORKER_BUFFER: RefCell<Option<Rc<Vec<u8>>>> = const { RefCell::new(None) };
}

/// `body` copied into this worker's shared buffer (reused when no earlier write still holds it).
pub(crate) fn share(body: &[u8]) -> SharedBody {
    let mut rc = WORKER_BUFFER
        .with(|slot| slot.borrow_mut().take())
        .unwrap_or_default();
    if Rc::get_mut(&mut rc).is_none() {
        rc = Rc::new(Vec::with_capacity(body.len()));
    }
    let buffer = Rc::get_mut(&mut rc).expect("a fresh or unshared Rc");
    buffer.clear();
    buffer.extend_from_slice(body);
    SharedBody(rc)
}

/// Gives the buffer back to the worker once the fan-out's calls are done with it.
pub(crate) fn release(shared: SharedBody) {
    WORKER_BUFFER.with(|slot| *slot.borrow_mut() = Some(shared.0));
}

/// The body that most calls share (by address and length), if at least two do and it is at
/// least [`SHARED_BODY_BYTES_MIN`] long.
pub(crate) fn most_shared<'b>(bodies: impl Iterator<Item = &'b [u8]> + Clone) -> Option<&'b [u8]> {
    let same = |a: &[u8], b: &[u8]| std::ptr::eq(a, b);
    let mut best: Option<(&[u8], usize)> = None;
    for body in bodies.clone() {
        if body.len() < SHARED_BODY_BYTES_MIN || best.is_some_and(|(b, _)| same(b, body)) {
            continue;
        }
        let count = bodies.clone().filter(|other| same(other, body)).count();
        if count >= 2 && best.is_none_or(|(_, n)| count > n) {
            best = Some((body, count));
        }
    }
    best.map(|(body, _)| body)
}

/// A request head (the connection's own write buffer) and a shared body, as two iovecs.
struct HeadAndBody {
    head: Vec<u8>,
    body: SharedBody,
    iovecs: [libc::iovec; 2],
}

impl HeadAndBody {
    fn new(head: Vec<u8>, body: SharedBody) -> Self {
        let iovecs = [
            libc::iovec {
                iov_base: head.as_ptr() as *mut libc::c_void,
                iov_len: head.len(),
            },
            libc::iovec {
                iov_base: body.bytes().as_ptr() as *mut libc::c_void,
                iov_len: body.bytes().len(),
            },
        ];
        Self { head, body, iovecs }
    }
}

// SAFETY: the iovecs point into the heap buffers of `head` and `body`, which this value owns
// and never resizes nor frees while it lives (moving the value moves neither buffer); both
// iovecs are valid, and there are exactly two.
unsafe impl IoVecBuf for HeadAndBody {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        self.iovecs.as_ptr()
    }

    fn read_iovec_len(&self) -> usize {
        self.iovecs.len()
    }
}

/// Writes `head` then `body` whole, in one `writev` when the socket takes it all (the usual
/// case); a short write finishes from a copy of what is left into `head`'s buffer. Gives the
/// head buffer back for reuse.
pub(crate) async fn write_head_and_body<S: AsyncWriteRent>(
    stream: &mut S,
    head: Vec<u8>,
    body: &SharedBody,
) -> (io::Result<()>, Vec<u8>) {
    let total = head.len() + body.bytes().len();
    let (res, written) = stream.writev(HeadAndBody::new(head, body.clone())).await;
    let HeadAndBody { mut head, body, .. } = written;
    let n = match res {
        Ok(n) if n == total => return (Ok(()), head),
        Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), head),
        Ok(n) => n,
        Err(e) => return (Err(e), head),
    };
    let rest_of_body = n.saturating_sub(head.len());
    head.drain(..n.min(head.len()));
    head.extend_from_slice(&body.bytes()[rest_of_body..]);
    let (res, head) = stream.write_all(head).await;
    (res.map(drop), head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_shared_picks_the_body_most_calls_send() {
        let plan = vec![b'p'; 600];
        let own = vec![b'o'; 600];
        let gz = vec![b'g'; 600];
        let bodies = [&own[..], &gz, &plan, &plan, &gz, &plan];
        let picked = most_shared(bodies.iter().copied()).unwrap();
        assert!(std::ptr::eq(picked, &plan[..]));
    }

    #[test]
    fn nothing_shared_below_two_calls_or_the_size_floor() {
        let a = vec![b'a'; 600];
        let b = vec![b'b'; 600];
        assert!(most_shared([&a[..], &b[..]].into_iter()).is_none());
        let small = vec![b's'; SHARED_BODY_BYTES_MIN - 1];
        assert!(most_shared([&small[..], &small[..]].into_iter()).is_none());
    }

    #[test]
    fn the_worker_buffer_is_reused_unless_a_write_still_holds_it() {
        let first = share(b"first body");
        let address = first.bytes().as_ptr();
        release(first);
        let second = share(b"second");
        assert_eq!(second.bytes(), b"second");
        assert_eq!(second.bytes().as_ptr(), address, "reused");
        let held_by_a_write = second.clone();
        release(second);
        let third = share(b"third");
        assert_ne!(third.bytes().as_ptr(), address, "a new buffer");
        assert_eq!(held_by_a_write.bytes(), b"second", "untouched");
        release(third);
    }

    /// A body far larger than the socket's send buffer, on the epoll driver (which returns
    /// short writes): every byte arrives once, in order.
    #[test]
    fn a_short_writev_finishes_with_the_rest() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = monoio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let reader = monoio::spawn(async move {
                let (mut peer, _) = listener.accept().await.unwrap();
                let mut got = Vec::new();
                loop {
                    let (n, buf) =
                        monoio::io::AsyncReadRent::read(&mut peer, vec![0u8; 65536]).await;
                    match n.unwrap() {
                        0 => return got,
                        n => got.extend_from_slice(&buf[..n]),
                    }
                }
            });
            let mut stream = monoio::net::TcpStream::connect(addr).await.unwrap();
            let body: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
            let shared = share(&body);
            let (res, head) = write_head_and_body(&mut stream, b"HEAD\r\n".to_vec(), &shared).await;
            res.unwrap();
            // The rest went out of the head's buffer: the short-write path ran.
            assert!(head.len() > 6, "one writev took all {} bytes", body.len());
            drop(stream);
            let got = reader.await;
            assert_eq!(&got[..6], b"HEAD\r\n");
            assert!(got[6..] == body[..], "{} bytes arrived", got.len());
        });
    }
}
