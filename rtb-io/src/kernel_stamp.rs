//! Owns the kernel's receive timestamps on server connections: when a request's bytes reached
//! this host, not when the worker got round to reading them.
//!
//! Why: under overload requests wait in the socket's receive buffer before the worker reads
//! them (17 to 38 ms measured, BENCHMARKS "Overload with the exchange as the bottleneck"), and
//! a deadline counted from the read cannot see that wait: the client's clock can. With
//! `SO_TIMESTAMPNS` on the listener (accepted sockets inherit it), every `recvmsg` returns the
//! receive time of the last segment it read as a control message; the read's age is then
//! "now minus that stamp" on the same clock (`CLOCK_REALTIME`), moved onto `Instant`.
//!
//! monoio's own read (an io_uring read, or a read on epoll readiness) cannot return control
//! messages, so a stamped read is our own non-blocking `recvmsg`, and the wait for data is
//! monoio's `readable` (a poll op, or epoll readiness confirmed by `poll`). Measured cost:
//! BENCHMARKS "Kernel arrival stamps".
//!
//! This module and `pinned` are rtb-io's only `unsafe`: `setsockopt` and `recvmsg` with a
//! control buffer, and the read buffer's length set to what the kernel wrote.

use std::{
    io,
    mem::{size_of, size_of_val, MaybeUninit},
    os::fd::AsRawFd,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::BytesMut;

/// Ages above this are taken for a clock step (the wall clock moved), not a wait: no stamp.
pub const STAMP_AGE_MAX: Duration = Duration::from_secs(10);

/// Room for one `SCM_TIMESTAMPNS` control message (and a spare one), aligned for `cmsghdr`.
const CONTROL_WORDS: usize = 16;

/// Turns on receive timestamps on a listening socket; connections accepted from it inherit
/// them. The kernel starts stamping received segments host-wide a moment later (deferred
/// work): the first requests after the first listener's `enable` may come unstamped.
pub fn enable(listener: &impl AsRawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid fd borrowed for the call, and a pointer to a c_int with its length.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// What one stamped read returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StampedRead {
    /// Bytes appended to the buffer; 0: the peer closed.
    pub len: usize,
    /// How long the last of those bytes had been waiting in the kernel when they were read;
    /// `None` without a stamp (timestamps off, or the clock stepped).
    pub age: Option<Duration>,
}

/// One non-blocking `recvmsg` into the spare capacity of `buf` (at least `spare` bytes
/// offered). `WouldBlock` when nothing is there yet.
pub fn recv_stamped(
    socket: &impl AsRawFd,
    buf: &mut BytesMut,
    spare: usize,
) -> io::Result<StampedRead> {
    if buf.capacity() - buf.len() < spare {
        buf.reserve(spare);
    }
    let room = buf.spare_capacity_mut();
    let mut iov = libc::iovec {
        iov_base: room.as_mut_ptr().cast(),
        iov_len: room.len(),
    };
    let mut control = [MaybeUninit::<u64>::uninit(); CONTROL_WORDS];
    // SAFETY: an all-zero msghdr is a valid empty one; the fields set below point at live
    // buffers (`iov` into `buf`'s spare capacity, `control`) that outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control) as _;
    // SAFETY: a valid fd borrowed for the call and the msghdr above.
    let read = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    let len = usize::try_from(read).map_err(|_| io::Error::last_os_error())?;
    // SAFETY: the kernel wrote `len` bytes at the start of the spare capacity.
    unsafe { buf.set_len(buf.len() + len) };
    let stamp = stamp_of(&msg);
    Ok(StampedRead {
        len,
        age: stamp.and_then(|at| age_of(at, SystemTime::now())),
    })
}

/// The `SCM_TIMESTAMPNS` stamp among the control messages `recvmsg` filled in, if any.
fn stamp_of(msg: &libc::msghdr) -> Option<SystemTime> {
    let mut stamp = None;
    // SAFETY: `msg` was filled by recvmsg, so the CMSG macros walk the control bytes it wrote
    // (msg_controllen) and return null past them; each header read is within that range.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(msg) };
    while !cmsg.is_null() {
        // SAFETY: non-null headers from CMSG_FIRSTHDR/NXTHDR lie within the control buffer.
        let header = unsafe { &*cmsg };
        // SAFETY: CMSG_LEN only computes a length.
        let full = unsafe { libc::CMSG_LEN(size_of::<libc::timespec>() as u32) } as usize;
        let is_stamp =
            header.cmsg_level == libc::SOL_SOCKET && header.cmsg_type == libc::SCM_TIMESTAMPNS;
        if is_stamp && header.cmsg_len as usize >= full {
            // SAFETY: an SCM_TIMESTAMPNS message carries one timespec; read unaligned.
            let ts: libc::timespec =
                unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast()) };
            stamp = wall_time(ts.tv_sec, ts.tv_nsec);
        }
        // SAFETY: as above.
        cmsg = unsafe { libc::CMSG_NXTHDR(msg, cmsg) };
    }
    stamp
}

/// A kernel `timespec` as a wall-clock time; `None` for one before the epoch or malformed.
fn wall_time(secs: i64, nanos: i64) -> Option<SystemTime> {
    let secs = u64::try_from(secs).ok()?;
    let nanos = u32::try_from(nanos).ok().filter(|n| *n < 1_000_000_000)?;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

/// How long before `now` the kernel stamped the bytes: 0 when the stamp is ahead of `now` (the
/// two clocks read a few ns apart), `None` past [`STAMP_AGE_MAX`] (the wall clock stepped).
fn age_of(stamp: SystemTime, now: SystemTime) -> Option<Duration> {
    let age = now.duration_since(stamp).unwrap_or(Duration::ZERO);
    (age <= STAMP_AGE_MAX).then_some(age)
}

#[cfg(test)]
mod tests {
    use std::{
        io::Write,
        net::{TcpListener, TcpStream},
        thread::sleep,
    };

    use super::*;

    fn pair(stamped: bool) -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        if stamped {
            enable(&listener).unwrap();
            // The kernel turns receive stamping on for the whole host through deferred work:
            // the first segments after the first `enable` may come unstamped.
            sleep(Duration::from_millis(50));
        }
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    #[test]
    fn a_read_carries_how_long_its_bytes_waited_in_the_kernel() {
        let (mut client, server) = pair(true);
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        sleep(Duration::from_millis(30));
        let mut buf = BytesMut::with_capacity(8);
        let read = recv_stamped(&server, &mut buf, 64).unwrap();
        assert_eq!(&buf[..], b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(read.len, buf.len());
        let age = read.age.expect("a stamp");
        assert!(age >= Duration::from_millis(30), "{age:?}");
        assert!(age < Duration::from_secs(2), "{age:?}");
    }

    #[test]
    fn without_timestamps_a_read_has_no_age_and_nothing_there_would_block() {
        let (mut client, server) = pair(false);
        let mut buf = BytesMut::new();
        let empty = recv_stamped(&server, &mut buf, 64).unwrap_err();
        assert_eq!(empty.kind(), io::ErrorKind::WouldBlock);
        client.write_all(b"abc").unwrap();
        sleep(Duration::from_millis(5));
        let read = recv_stamped(&server, &mut buf, 64).unwrap();
        assert_eq!((read.len, read.age, &buf[..]), (3, None, &b"abc"[..]));
        drop(client);
        sleep(Duration::from_millis(5));
        let closed = recv_stamped(&server, &mut buf, 64).unwrap();
        assert_eq!((closed.len, &buf[..]), (0, &b"abc"[..]));
    }

    #[test]
    fn ages_are_clamped_at_zero_and_refused_past_a_clock_step() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let ms = Duration::from_millis(1);
        assert_eq!(age_of(now - 7 * ms, now), Some(7 * ms));
        assert_eq!(age_of(now + ms, now), Some(Duration::ZERO));
        assert_eq!(age_of(now - STAMP_AGE_MAX - ms, now), None);
        assert_eq!(wall_time(-1, 0), None);
        assert_eq!(wall_time(1, 1_000_000_000), None);
        assert_eq!(wall_time(1, 5), Some(UNIX_EPOCH + Duration::new(1, 5)));
    }
}
