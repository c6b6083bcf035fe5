//! Client pool and fan-out tests against blocking test upstreams on loopback. The client runs
//! on a runtime built by `rtb_io::driver::block_on` with the driver from `RTB_IO_DRIVER`; run
//! again with `MONOIO_FORCE_LEGACY_DRIVER=1` for epoll.
#![allow(clippy::unwrap_used)]

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    rc::Rc,
    sync::atomic::Ordering,
    thread,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::uri::PathAndQuery;
use rtb_io::{
    driver::{block_on, driver_from_env},
    fan_out, CallError, ClientConfig, ClientRequest, FanOutCall, RequestParts, Upstream,
};
use test_support::{
    fake::{reset, FakeServer},
    http::read_request,
    procfs::open_fds,
    wire::chunked,
};

/// Slack over a deadline that a loaded 2-core CI machine may add to a timer wake-up.
const DEADLINE_SLACK: Duration = Duration::from_millis(20);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// 200 with Content-Length echoing the body.
    Ok,
    /// 200 chunked echo.
    Chunked,
    /// Reads the request, never answers, closes when the client does.
    Hang,
    /// Reads the request, then resets the connection.
    Reset,
    /// Answers bytes that are not HTTP.
    Garbage,
    /// Answers 10 MB.
    Huge,
    /// Answers 204 with `connection: close`, then closes.
    NoContentClose,
}

fn serve(mut s: TcpStream, mode: Mode) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    while let Some(body) = read_request(&mut s, &mut buf).map(|r| r.body) {
        let ok = match mode {
            Mode::Ok => {
                let mut out = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len())
                    .into_bytes();
                out.extend_from_slice(&body);
                s.write_all(&out).is_ok()
            }
            Mode::Chunked => {
                // In two chunks (one when the body has a single byte).
                let mut out = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
                out.extend_from_slice(&chunked(&body, body.len().div_ceil(2).max(1)));
                s.write_all(&out).is_ok()
            }
            Mode::Hang => {
                let mut sink = [0u8; 1024];
                while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
                return;
            }
            Mode::Reset => {
                reset(s);
                return;
            }
            Mode::Garbage => {
                let _ = s.write_all(b"SSH-2.0-OpenSSH\r\n\r\n\x00\x01\x02");
                return;
            }
            Mode::Huge => {
                let size = 10 * 1024 * 1024;
                let _ = s.write_all(
                    format!("HTTP/1.1 200 OK\r\ncontent-length: {size}\r\n\r\n").as_bytes(),
                );
                let _ = s.write_all(&vec![b'a'; size]);
                return;
            }
            Mode::NoContentClose => {
                let _ = s.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n");
                return;
            }
        };
        if !ok {
            return;
        }
    }
}

/// A test upstream on loopback answering as `mode` says; stops on drop.
fn upstream(mode: Mode) -> FakeServer {
    FakeServer::start(move |s, _| serve(s, mode))
}

fn req(body: &'static [u8]) -> ClientRequest {
    ClientRequest::openrtb_post(PathAndQuery::from_static("/bid"), Bytes::from_static(body))
}

/// Tests share one process's fd table; the fd-leak check needs the others quiet.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn run<F: std::future::Future>(fut: F) -> F::Output {
    block_on(driver_from_env(), fut).unwrap().0
}

fn pool(addr: SocketAddr) -> Rc<Upstream> {
    Upstream::new(addr, "dsp.test", ClientConfig::default())
}

/// What a fan-out call ended with, copied out of the callback.
type Gathered = Result<(u16, Vec<u8>), CallError>;

/// Runs one fan-out of `body` to every pool and gathers each call's result, checking that each
/// is reported exactly once and that completion times are in order.
async fn gather(pools: &[Rc<Upstream>], body: &[u8], deadline: Instant) -> Vec<Gathered> {
    let calls: Vec<FanOutCall<'_>> = pools
        .iter()
        .map(|p| FanOutCall {
            upstream: p,
            request: RequestParts::openrtb_post("/bid", body),
        })
        .collect();
    let mut results: Vec<Option<Gathered>> = vec![None; calls.len()];
    let mut last = Instant::now() - Duration::from_secs(1);
    fan_out(&calls, deadline, |i, result, at| {
        assert!(results[i].is_none(), "call {i} reported twice");
        assert!(at >= last, "completion times go forward");
        last = at;
        results[i] = Some(result.map(|a| (a.status.as_u16(), a.body.to_vec())));
    })
    .await;
    results
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.unwrap_or_else(|| panic!("call {i} never reported")))
        .collect()
}

#[test]
fn pool_reuses_connections_after_warmup() {
    let _serial = serial();
    let up = upstream(Mode::Ok);
    let accepted = up.accepted_counter();
    run(async move {
        let pool = pool(up.addr);
        assert_eq!(pool.prewarm(2).await, 2);
        for _ in 0..20 {
            let r = pool
                .call(
                    &req(b"{\"id\":\"1\"}"),
                    Instant::now() + Duration::from_secs(1),
                )
                .await
                .unwrap();
            assert_eq!(r.status, 200);
            assert_eq!(&r.body[..], b"{\"id\":\"1\"}");
            assert!(r.reused_connection);
        }
        // Two concurrent calls fit the two warm connections.
        for _ in 0..5 {
            let pools = [pool.clone(), pool.clone()];
            let results = gather(&pools, b"ab", Instant::now() + Duration::from_secs(1)).await;
            assert_eq!(
                results,
                [Ok((200, b"ab".to_vec())), Ok((200, b"ab".to_vec()))]
            );
        }
        assert_eq!(pool.idle_count(), 2);
    });
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[test]
fn chunked_and_no_content_responses() {
    let _serial = serial();
    let up = upstream(Mode::Chunked);
    let nc = upstream(Mode::NoContentClose);
    let nc_accepted = nc.accepted_counter();
    run(async move {
        let pool = pool(up.addr);
        for _ in 0..3 {
            let r = pool
                .call(
                    &req(b"chunked body"),
                    Instant::now() + Duration::from_secs(1),
                )
                .await
                .unwrap();
            assert_eq!(&r.body[..], b"chunked body");
        }
        assert_eq!(pool.idle_count(), 1);
        let pool = self::pool(nc.addr);
        for _ in 0..2 {
            let r = pool
                .call(&req(b"x"), Instant::now() + Duration::from_secs(1))
                .await
                .unwrap();
            assert_eq!(r.status, 204);
            assert!(r.body.is_empty());
            // `connection: close` answers are never pooled.
            assert_eq!(pool.idle_count(), 0);
        }
    });
    assert_eq!(nc_accepted.load(Ordering::SeqCst), 2);
}

#[test]
fn hanging_upstream_times_out_at_deadline_and_is_not_reused() {
    let _serial = serial();
    let up = upstream(Mode::Hang);
    let accepted = up.accepted_counter();
    let fds_before = open_fds();
    let worst = run(async move {
        let pool = pool(up.addr);
        pool.prewarm(1).await;
        let mut worst = Duration::ZERO;
        for _ in 0..10 {
            let deadline_in = Duration::from_millis(30);
            let start = Instant::now();
            let r = pool.call(&req(b"x"), start + deadline_in).await;
            let took = start.elapsed();
            assert_eq!(r.unwrap_err(), CallError::Timeout);
            assert!(took >= deadline_in, "{took:?}");
            worst = worst.max(took - deadline_in);
            assert_eq!(
                pool.idle_count(),
                0,
                "a timed-out connection went back to the pool"
            );
        }
        worst
    });
    eprintln!("hang: worst lateness past deadline {worst:?}");
    assert!(worst < DEADLINE_SLACK, "{worst:?}");
    // Each call after the first needed a fresh connection.
    assert_eq!(accepted.load(Ordering::SeqCst), 10);
    // Closed client sockets let the upstream threads close theirs; no fd is leaked.
    let settle = Instant::now();
    while open_fds() > fds_before + 1 && settle.elapsed() < Duration::from_secs(2) {
        thread::sleep(Duration::from_millis(10));
    }
    assert!(
        open_fds() <= fds_before + 1,
        "{} > {fds_before}",
        open_fds()
    );
}

#[test]
fn reset_garbage_and_huge_are_errors() {
    let _serial = serial();
    let reset = upstream(Mode::Reset);
    let garbage = upstream(Mode::Garbage);
    let huge = upstream(Mode::Huge);
    run(async move {
        let deadline = || Instant::now() + Duration::from_secs(2);
        let r = pool(reset.addr).call(&req(b"x"), deadline()).await;
        assert_eq!(r.unwrap_err(), CallError::Closed);
        let r = pool(garbage.addr).call(&req(b"x"), deadline()).await;
        assert_eq!(r.unwrap_err(), CallError::ProtocolError);
        let r = pool(huge.addr).call(&req(b"x"), deadline()).await;
        assert_eq!(r.unwrap_err(), CallError::TooLarge);
    });
}

#[test]
fn connect_refused_is_connect_error() {
    let _serial = serial();
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    run(async move {
        let r = pool(addr)
            .call(&req(b"x"), Instant::now() + Duration::from_secs(1))
            .await;
        assert_eq!(r.unwrap_err(), CallError::ConnectError);
    });
}

#[test]
fn fan_out_returns_by_deadline_with_mixed_upstreams() {
    let _serial = serial();
    let ok = upstream(Mode::Ok);
    let hang = upstream(Mode::Hang);
    let garbage = upstream(Mode::Garbage);
    let chunked = upstream(Mode::Chunked);
    let lateness = run(async move {
        let pools = [
            pool(ok.addr),
            pool(hang.addr),
            pool(garbage.addr),
            pool(chunked.addr),
        ];
        for p in &pools {
            p.prewarm(1).await;
        }
        let mut worst = Duration::ZERO;
        for _ in 0..5 {
            let budget = Duration::from_millis(40);
            let start = Instant::now();
            let results = gather(&pools, b"{}", start + budget).await;
            let took = start.elapsed();
            worst = worst.max(took.saturating_sub(budget));
            assert_eq!(
                results,
                [
                    Ok((200, b"{}".to_vec())),
                    Err(CallError::Timeout),
                    Err(CallError::ProtocolError),
                    Ok((200, b"{}".to_vec())),
                ]
            );
        }
        worst
    });
    eprintln!("fan-out: worst lateness past deadline {lateness:?}");
    assert!(lateness < DEADLINE_SLACK, "{lateness:?}");
}

#[test]
fn stale_pooled_connection_is_retried() {
    let _serial = serial();
    // An upstream that answers once per connection, then closes without `connection: close`.
    let up = FakeServer::start(|mut s, _| {
        if read_request(&mut s, &mut Vec::new()).is_some() {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        }
        thread::sleep(Duration::from_millis(20));
    });
    let accepted = up.accepted_counter();
    run(async move {
        let pool = pool(up.addr);
        let r = pool
            .call(&req(b"x"), Instant::now() + Duration::from_secs(1))
            .await;
        assert_eq!(r.unwrap().status, 200);
        assert_eq!(pool.idle_count(), 1);
        monoio::time::sleep(Duration::from_millis(100)).await;
        let r = pool
            .call(&req(b"x"), Instant::now() + Duration::from_secs(1))
            .await;
        assert_eq!(r.unwrap().status, 200);
    });
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "the stale connection was replaced"
    );
}
