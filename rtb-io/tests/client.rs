//! Client pool and fan-out tests against blocking test upstreams on loopback. The client runs
//! on a runtime built by `rtb_io::driver::block_on` with the driver from `RTB_IO_DRIVER`; run
//! again with `MONOIO_FORCE_LEGACY_DRIVER=1` for epoll.
#![allow(clippy::unwrap_used)]

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    rc::Rc,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::uri::PathAndQuery;
use rtb_io::{
    driver::{block_on, driver_from_env},
    fan_out, CallError, ClientConfig, ClientRequest, FanOutCall, RequestParts, Upstream,
};
use test_support::procfs::open_fds;

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
    /// Echoes like `Ok`, but a body starting with `slow` only after this many ms.
    Late(u64),
}

struct TestUpstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    /// Connections the upstream saw end (its serving thread returned).
    ended: Arc<AtomicUsize>,
}

/// Reads one request (head and Content-Length body). None on EOF.
fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut chunk = [0u8; 8192];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(n)) = req.parse(buf) {
            let len = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map_or(0, |h| {
                    std::str::from_utf8(h.value)
                        .unwrap()
                        .parse::<usize>()
                        .unwrap()
                });
            if buf.len() >= n + len {
                let body = buf[n..n + len].to_vec();
                buf.drain(..n + len);
                return Some(body);
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    }
}

fn serve(mut s: TcpStream, mode: Mode) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    while let Some(body) = read_request(&mut s, &mut buf) {
        let ok = match mode {
            Mode::Late(ms) => {
                if body.starts_with(b"slow") {
                    thread::sleep(Duration::from_millis(ms));
                }
                let mut out = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len())
                    .into_bytes();
                out.extend_from_slice(&body);
                s.write_all(&out).is_ok()
            }
            Mode::Ok => {
                let mut out = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len())
                    .into_bytes();
                out.extend_from_slice(&body);
                s.write_all(&out).is_ok()
            }
            Mode::Chunked => {
                let half = body.len() / 2;
                let mut out = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
                for part in [&body[..half], &body[half..]] {
                    if !part.is_empty() {
                        out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                        out.extend_from_slice(part);
                        out.extend_from_slice(b"\r\n");
                    }
                }
                out.extend_from_slice(b"0\r\n\r\n");
                s.write_all(&out).is_ok()
            }
            Mode::Hang => {
                let mut sink = [0u8; 1024];
                while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
                return;
            }
            Mode::Reset => {
                socket2::SockRef::from(&s)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
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

fn upstream(mode: Mode) -> TestUpstream {
    upstream_on("127.0.0.1:0", mode)
}

/// A test upstream listening on `bind` (another loopback address, a port chosen before).
fn upstream_on(bind: &str, mode: Mode) -> TestUpstream {
    let listener = TcpListener::bind(bind).unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let ended = Arc::new(AtomicUsize::new(0));
    let (counter, end_counter) = (accepted.clone(), ended.clone());
    thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(s) = s else { return };
            counter.fetch_add(1, Ordering::SeqCst);
            let end_counter = end_counter.clone();
            thread::spawn(move || {
                serve(s, mode);
                end_counter.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    TestUpstream {
        addr,
        accepted,
        ended,
    }
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
    let accepted = up.accepted.clone();
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
    let nc_accepted = nc.accepted.clone();
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
    let accepted = up.accepted.clone();
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
        // Each timed-out connection drains, finds no answer by the drain limit and is closed.
        // (Drain tasks still pending when a monoio 0.2.4 runtime is dropped are leaked with
        // their sockets, so the test lets them end first.)
        wait_for(Duration::from_secs(2), || pool.draining_count() == 0).await;
        assert_eq!(pool.stats.drain_counts(), [10, 0, 10, 0, 0]);
        worst
    });
    eprintln!("hang: worst lateness past deadline {worst:?}");
    assert!(worst < DEADLINE_SLACK, "{worst:?}");
    // Each call after the first needed a fresh connection: the earlier ones were draining.
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
    // An upstream that answers once then closes without `connection: close`.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for s in listener.incoming().take(2) {
            let mut s = s.unwrap();
            let mut buf = Vec::new();
            if read_request(&mut s, &mut buf).is_some() {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
            }
            thread::sleep(Duration::from_millis(20));
        }
    });
    run(async move {
        let pool = pool(addr);
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
}

fn pool_with(addr: SocketAddr, config: ClientConfig) -> Rc<Upstream> {
    Upstream::new(addr, "dsp.test", config)
}

/// Waits (on the runtime) until `done` holds or `limit` passes.
async fn wait_for(limit: Duration, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() && start.elapsed() < limit {
        monoio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// One call of `body` that must time out after `deadline_in`.
async fn timed_out_call(pool: &Upstream, body: &str, deadline_in: Duration) {
    let r = pool
        .call_parts(
            RequestParts::openrtb_post("/bid", body.as_bytes()),
            Instant::now() + deadline_in,
        )
        .await;
    assert_eq!(r.err(), Some(CallError::Timeout));
}

#[test]
fn late_answers_are_drained_so_connections_stay_flat() {
    let _serial = serial();
    let up = upstream(Mode::Late(50));
    let accepted = up.accepted.clone();
    let (connects, drains) = run(async move {
        let pool = pool(up.addr);
        // Back to back: a call every ~20 ms, each answered 50 ms after it was sent.
        for i in 0..40 {
            timed_out_call(&pool, &format!("slow-{i}"), Duration::from_millis(20)).await;
        }
        wait_for(Duration::from_secs(2), || pool.draining_count() == 0).await;
        (pool.stats.connects.get(), pool.stats.drain_counts())
    });
    eprintln!("40 timeouts: {connects} connects, drains {drains:?}");
    // Each connection is busy 50 ms per 20 ms call: about three in turn, never one per call.
    assert!(connects <= 5, "{connects} connections for 40 timeouts");
    assert_eq!(accepted.load(Ordering::SeqCst) as u64, connects);
    let [started, reused, closed, refused, out_of_step] = drains;
    assert_eq!(started, 40, "every timed-out connection was drained");
    assert_eq!((reused, closed, refused, out_of_step), (40, 0, 0, 0));
}

#[test]
fn fan_out_timeouts_drain_too() {
    let _serial = serial();
    let up = upstream(Mode::Late(50));
    let connects = run(async move {
        let pools = [pool(up.addr)];
        for _ in 0..20 {
            let results = gather(&pools, b"slow", Instant::now() + Duration::from_millis(20)).await;
            assert_eq!(results, [Err(CallError::Timeout)]);
        }
        wait_for(Duration::from_secs(2), || pools[0].draining_count() == 0).await;
        assert_eq!(pools[0].stats.drains_reused.get(), 20);
        pools[0].stats.connects.get()
    });
    assert!(
        connects <= 5,
        "{connects} connections for 20 fan-out timeouts"
    );
}

#[test]
fn a_drained_answer_never_reaches_the_next_call() {
    let _serial = serial();
    let up = upstream(Mode::Late(40));
    let accepted = up.accepted.clone();
    run(async move {
        let pool = pool(up.addr);
        for i in 0..10 {
            let slow = format!("slow-{i}");
            timed_out_call(&pool, &slow, Duration::from_millis(10)).await;
            // Straight away, on another connection, while the first one drains.
            let fast = format!("fast-{i}-a");
            let r = pool
                .call(&req_owned(&fast), Instant::now() + Duration::from_secs(1))
                .await
                .unwrap();
            assert_eq!(r.body, fast.as_bytes());
            // Then on the drained connection, once it is back.
            wait_for(Duration::from_secs(1), || pool.draining_count() == 0).await;
            for suffix in ["b", "c"] {
                let fast = format!("fast-{i}-{suffix}");
                let r = pool
                    .call(&req_owned(&fast), Instant::now() + Duration::from_secs(1))
                    .await
                    .unwrap();
                assert!(r.reused_connection);
                assert_eq!(r.body, fast.as_bytes(), "the late answer of {slow} leaked");
            }
        }
        assert_eq!(pool.stats.drains_reused.get(), 10);
    });
    assert!(accepted.load(Ordering::SeqCst) <= 2);
}

fn req_owned(body: &str) -> ClientRequest {
    ClientRequest::openrtb_post(
        PathAndQuery::from_static("/bid"),
        Bytes::copy_from_slice(body.as_bytes()),
    )
}

#[test]
fn a_dsp_that_never_answers_is_closed_at_the_drain_limit() {
    let _serial = serial();
    let up = upstream(Mode::Hang);
    let ended = up.ended.clone();
    run(async move {
        let config = ClientConfig {
            drain_timeout: Duration::from_millis(100),
            ..ClientConfig::default()
        };
        let pool = pool_with(up.addr, config);
        let r = pool
            .call(&req(b"x"), Instant::now() + Duration::from_millis(20))
            .await;
        assert_eq!(r.unwrap_err(), CallError::Timeout);
        assert_eq!(pool.draining_count(), 1);
        monoio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(pool.draining_count(), 1, "still within the drain limit");
        assert_eq!(ended.load(Ordering::SeqCst), 0);
        wait_for(Duration::from_secs(1), || pool.draining_count() == 0).await;
        assert_eq!(pool.stats.drain_counts(), [1, 0, 1, 0, 0]);
        assert_eq!(pool.idle_count(), 0);
        // The upstream sees the close.
        wait_for(Duration::from_secs(1), || ended.load(Ordering::SeqCst) == 1).await;
        assert_eq!(ended.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn draining_set_is_bounded() {
    let _serial = serial();
    let up = upstream(Mode::Hang);
    run(async move {
        let config = ClientConfig {
            draining_max: 2,
            ..ClientConfig::default()
        };
        let pool = pool_with(up.addr, config);
        for _ in 0..4 {
            let r = pool
                .call(&req(b"x"), Instant::now() + Duration::from_millis(10))
                .await;
            assert_eq!(r.unwrap_err(), CallError::Timeout);
        }
        assert_eq!(pool.draining_count(), 2);
        assert_eq!(pool.stats.drain_counts(), [2, 0, 0, 2, 0]);
    });
}

#[test]
fn new_connections_are_paced() {
    let _serial = serial();
    let up = upstream(Mode::Hang);
    let accepted = up.accepted.clone();
    run(async move {
        let config = ClientConfig {
            connects_per_s: 1,
            connects_burst: 2,
            ..ClientConfig::default()
        };
        let pool = pool_with(up.addr, config);
        let mut results = Vec::new();
        for _ in 0..5 {
            let start = Instant::now();
            let r = pool
                .call(&req(b"x"), start + Duration::from_millis(10))
                .await;
            if r.as_ref().err() == Some(&CallError::ConnectPaced) {
                assert!(
                    start.elapsed() < Duration::from_millis(5),
                    "paced calls fail at once"
                );
            }
            results.push(r.err());
        }
        assert_eq!(
            results,
            [
                Some(CallError::Timeout),
                Some(CallError::Timeout),
                Some(CallError::ConnectPaced),
                Some(CallError::ConnectPaced),
                Some(CallError::ConnectPaced),
            ]
        );
        assert_eq!(pool.stats.connects.get(), 2);
        assert_eq!(pool.stats.connects_paced.get(), 3);
    });
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

/// A pool over two addresses of one "host" (127.0.0.1 and 127.0.0.2, one port) that opens a
/// connection per call (none kept idle), so each call shows where a new connection goes.
fn two_address_pool(addrs: [SocketAddr; 2], backoff: Duration) -> Rc<Upstream> {
    let config = ClientConfig {
        idle_connections_max: 0,
        addr_backoff: backoff,
        ..ClientConfig::default()
    };
    Upstream::with_addrs(&addrs, "dsp.test", config, None)
}

async fn calls_ok(pool: &Upstream, n: usize) {
    for _ in 0..n {
        let r = pool
            .call(&req(b"x"), Instant::now() + Duration::from_secs(2))
            .await;
        assert_eq!(r.unwrap().status, 200);
    }
}

#[test]
fn new_connections_skip_a_refusing_address_then_alternate_once_it_serves() {
    let _serial = serial();
    let live = upstream(Mode::Ok);
    // The same port on 127.0.0.2, where nothing listens yet: connects are refused.
    let dead: SocketAddr = SocketAddr::new([127, 0, 0, 2].into(), live.addr.port());
    let backoff = Duration::from_millis(300);
    let pool = two_address_pool([dead, live.addr], backoff);
    let accepted = live.accepted.clone();
    let pool_run = pool.clone();
    run(async move {
        // Every call succeeds: the refused connect is retried on the live address at once,
        // and the refusing one is skipped for the back-off.
        calls_ok(&pool_run, 6).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 6);
        assert_eq!(pool_run.usable_addr_count(Instant::now()), 1);
    });
    assert_eq!(pool.stats.failures.get(), 0);
    assert!(
        pool.stats.connect_failures.get() >= 1,
        "the refused connect is counted"
    );
    // The address comes alive; once its back-off ends, new connections alternate.
    let revived = upstream_on(&dead.to_string(), Mode::Ok);
    thread::sleep(backoff + Duration::from_millis(50));
    let before = live.accepted.load(Ordering::SeqCst);
    run(async move {
        assert_eq!(pool.usable_addr_count(Instant::now()), 2);
        calls_ok(&pool, 6).await;
    });
    assert_eq!(revived.accepted.load(Ordering::SeqCst), 3);
    assert_eq!(live.accepted.load(Ordering::SeqCst) - before, 3);
}

#[test]
fn prewarm_spreads_across_addresses_and_re_pointing_keeps_the_staying_ones() {
    let _serial = serial();
    let a = upstream(Mode::Ok);
    let b = upstream_on(&format!("127.0.0.2:{}", a.addr.port()), Mode::Ok);
    let config = ClientConfig {
        idle_connections_max: 8,
        ..ClientConfig::default()
    };
    let pool = Upstream::with_addrs(&[a.addr, b.addr], "dsp.test", config, None);
    run(async move {
        assert_eq!(pool.prewarm(4).await, 4);
        // A connect completes in the kernel before the test server's accept counts it.
        let both = || a.accepted.load(Ordering::SeqCst) + b.accepted.load(Ordering::SeqCst);
        wait_for(Duration::from_secs(2), || both() == 4).await;
        assert_eq!(a.accepted.load(Ordering::SeqCst), 2);
        assert_eq!(b.accepted.load(Ordering::SeqCst), 2);
        // b leaves the answer: its idle connections go, a's stay.
        pool.set_addrs(&[a.addr]);
        assert_eq!(pool.idle_count(), 2);
        assert_eq!(pool.addrs(), vec![a.addr]);
        calls_ok(&pool, 2).await;
        assert_eq!(
            pool.stats.connects.get(),
            4,
            "served by the pooled connections"
        );
    });
}

#[test]
fn prewarm_fills_past_a_refusing_address_and_stops_when_none_serves() {
    let _serial = serial();
    let live = upstream(Mode::Ok);
    let port = live.addr.port();
    let refusing = |last: u8| SocketAddr::new([127, 0, 0, last].into(), port);
    let config = ClientConfig {
        idle_connections_max: 8,
        addr_backoff: Duration::from_millis(1),
        ..ClientConfig::default()
    };
    let mixed = Upstream::with_addrs(&[refusing(2), live.addr], "dsp.test", config, None);
    let dead = Upstream::with_addrs(&[refusing(2), refusing(3)], "dsp.test", config, None);
    run(async move {
        assert_eq!(mixed.prewarm(4).await, 4);
        assert!(mixed.stats.connect_failures.get() >= 1);
        let started = Instant::now();
        assert_eq!(dead.prewarm(4).await, 0);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert!(dead.stats.connect_failures.get() <= 4);
    });
}

/// A listener whose accept queue is full: its connects hang until they time out.
fn listener_dropping_connects() -> (socket2::Socket, std::net::TcpStream, SocketAddr) {
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    listener
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    // A backlog of 0 holds one connection; with it queued, later SYNs are dropped.
    let queued = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).unwrap();
    (listener, queued, addr)
}

#[test]
fn prewarm_of_many_pools_keeps_connects_in_flight_to_its_lanes() {
    let _serial = serial();
    let up = upstream(Mode::Ok);
    let (_listener, _queued, silent) = listener_dropping_connects();
    run(async move {
        let config = ClientConfig {
            connect_timeout: Duration::from_millis(50),
            ..ClientConfig::default()
        };
        let serving: Vec<_> = (0..12).map(|_| pool_with(up.addr, config)).collect();
        rtb_io::spawn_prewarm(serving.iter().map(|p| (p.clone(), 2)).collect(), 3);
        wait_for(Duration::from_secs(5), || {
            serving.iter().all(|p| p.idle_count() == 2)
        })
        .await;
        assert!(serving.iter().all(|p| p.idle_count() == 2));
        // Connects that hang: at most three of twelve pools' connects are ever in flight.
        let hanging: Vec<_> = (0..12).map(|_| pool_with(silent, config)).collect();
        rtb_io::spawn_prewarm(hanging.iter().map(|p| (p.clone(), 2)).collect(), 3);
        let (mut most, started) = (0, Instant::now());
        while started.elapsed() < Duration::from_millis(1_500) {
            let now: usize = hanging.iter().map(|p| p.connects_in_flight()).sum();
            most = most.max(now);
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(most, 3, "connects in flight at most, across the pools");
        // Each pool tries three times (50 ms each, then a wait of 20, 40 and 60 ms), four
        // pools per lane: 1.1 s, then every pool has left the rotation.
        let left: usize = hanging.iter().map(|p| p.connects_in_flight()).sum();
        assert_eq!(left, 0, "each pool gave up after a few tries");
    });
}

#[test]
fn pool_size_follows_the_traffic_down_without_reconnecting() {
    let _serial = serial();
    let up = upstream(Mode::Ok);
    let ended = up.ended.clone();
    run(async move {
        let config = ClientConfig {
            pool_peak_half_life: Duration::from_millis(500),
            ..ClientConfig::default()
        };
        let pool = pool_with(up.addr, config);
        let burst: Vec<_> = (0..40).map(|_| pool.clone()).collect();
        let results = gather(&burst, b"b", Instant::now() + Duration::from_secs(2)).await;
        assert!(results.iter().all(|r| r.is_ok()));
        let opened = pool.stats.connects.get();
        assert!(
            opened >= 30,
            "a burst of 40 calls opened {opened} connections"
        );
        // One call at a time for 3.5 s: the remembered peak halves every 0.5 s, measured once
        // a second, so the target falls to a few connections (Little's law wants 2).
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(3_500) {
            let one = [pool.clone()];
            let r = gather(&one, b"one", Instant::now() + Duration::from_secs(1)).await;
            assert!(r[0].is_ok());
            monoio::time::sleep(Duration::from_millis(5)).await;
        }
        let target = pool.target_connections();
        assert!((2..=4).contains(&target), "target {target}");
        assert!(pool.open_count() <= target, "{} open", pool.open_count());
        assert!(pool.mean_in_flight() < 0.5, "L = {}", pool.mean_in_flight());
        assert_eq!(
            pool.stats.connects.get(),
            opened,
            "shrinking reopened nothing"
        );
        wait_for(Duration::from_secs(2), || {
            ended.load(Ordering::SeqCst) as u64 >= opened - target as u64
        })
        .await;
        assert!(ended.load(Ordering::SeqCst) as u64 >= opened - target as u64);
    });
}
