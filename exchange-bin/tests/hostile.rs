//! Hostile clients against the real `rtb-exchange` binary on loopback: slowloris heads and
//! bodies, thousands of idle connections, heads and bodies over every limit, request smuggling
//! framings, invalid chunk sizes, pipelined garbage, gzip bombs, deeply nested and non-UTF-8
//! JSON, duplicate keys.
//!
//! Every case must end in a 4xx or a close within its timeout while (a) the exchange's memory
//! stays bounded (peak RSS, `VmHWM`, at most [`RSS_GROWTH_MAX_KIB`] above the RSS before the
//! attack), (b) a concurrent well-behaved client keeps getting answers within
//! [`VALID_LATENCY_MAX`], and (c) the process is still alive and `/healthz` answers afterwards.
//! The cases run one at a time (a lock), since they measure memory and latency on a shared
//! 2-core machine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use common::*;
use test_support::{
    http::{split_replies, try_request},
    procfs,
    wire::{chunked, gzip},
};

/// Peak RSS growth allowed during one attack, KiB.
const RSS_GROWTH_MAX_KIB: u64 = 64 * 1024;
/// Slowest answer the concurrent valid client may get.
const VALID_LATENCY_MAX: Duration = Duration::from_millis(100);
/// Pause between the valid client's requests.
const VALID_PERIOD: Duration = Duration::from_millis(10);
/// The idle-connection count the issue asks for; fewer when RLIMIT_NOFILE does not allow it.
const IDLE_CONNECTIONS_WANTED: usize = 10_000;
/// Memory an idle client connection may cost the exchange, KiB. Measured 8.8 KiB (its 4 KiB
/// read buffer, task and socket; 12.8 KiB before the write buffer became lazy): 10,000 of them
/// exceed the flat 64 MiB budget, so this case is bounded per connection instead.
const IDLE_CONNECTION_KIB_MAX: u64 = 12;
/// Slowest valid answer while thousands of connections are being opened at once.
const IDLE_FLOOD_LATENCY_MAX: Duration = Duration::from_secs(1);
/// File descriptors kept free for everything else in the test process and the exchange.
const FD_HEADROOM: usize = 512;

static SERIAL: Mutex<()> = Mutex::new(());

fn proc_status_kib(pid: u32, key: &str) -> u64 {
    procfs::status_kib(pid, key).unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

/// What the valid client saw while an attack ran.
#[derive(Debug, Default)]
struct ProbeReport {
    answered: usize,
    failures: Vec<String>,
    latencies: Vec<Duration>,
}

impl ProbeReport {
    fn max(&self) -> Duration {
        self.latencies.iter().copied().max().unwrap_or_default()
    }
}

/// A well-behaved client: one bid request per [`VALID_PERIOD`], each on a new connection (so
/// the accept path is exercised too), expecting 204 (the fake DSP never bids).
struct Prober {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<ProbeReport>,
}

fn valid_call(addr: SocketAddr, body: &[u8]) -> Result<u16, String> {
    let headers = [("content-type", "application/json")];
    try_request(addr, "POST", "/openrtb2/auction", &headers, body).map(|r| r.status)
}

impl Prober {
    fn start(addr: SocketAddr) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = thread::spawn(move || {
            let mut report = ProbeReport::default();
            let body = bid_request("probe", 2, 100, 0.1);
            while !flag.load(Ordering::Acquire) {
                let t0 = Instant::now();
                match valid_call(addr, &body) {
                    Ok(204) => {
                        report.answered += 1;
                        report.latencies.push(t0.elapsed());
                    }
                    Ok(status) => report.failures.push(format!("status {status}")),
                    Err(e) => report.failures.push(e),
                }
                thread::sleep(VALID_PERIOD);
            }
            report
        });
        Prober { stop, handle }
    }

    fn stop(self) -> ProbeReport {
        self.stop.store(true, Ordering::Release);
        self.handle.join().unwrap()
    }
}

/// One exchange under attack, with a no-bid DSP onboarded and the valid client running.
struct Hostile {
    ex: Exchange,
    _dsp: FakeDsp,
    pid: u32,
    rss_before_kib: u64,
    prober: Option<Prober>,
    started: Instant,
    _serial: MutexGuard<'static, ()>,
}

impl Hostile {
    fn start(extra: &[&str]) -> Hostile {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        // These tests are about what hostile input gets, not overload. A debug build takes
        // over 10 ms on a megabyte of brackets, and a lagging worker sheds the next request
        // before decoding it (204, README "Overload"), so the lag and queue-wait thresholds
        // are set out of reach.
        let args: Vec<&str> = ["--shed-lag-ms", "10000", "--shed-queue-wait-ms", "10000"]
            .iter()
            .chain(extra)
            .copied()
            .collect();
        let ex = Exchange::start(&args);
        let dsp = FakeDsp::start(Behaviour::NoBid);
        let r = ex.onboard("nobid", dsp.addr);
        assert_eq!(r.status, 201, "{}", r.text());
        // Every worker has applied the registry once a run of requests all get 204.
        let warm = bid_request("warm", 2, 100, 0.1);
        assert!(
            eventually(Duration::from_secs(5), || (0..8)
                .all(|_| ex.auction(&warm).status == 204)),
            "exchange never answered 204 to a valid request"
        );
        let pid = ex.pid();
        let rss_before_kib = proc_status_kib(pid, "VmRSS:");
        let prober = Some(Prober::start(ex.addr));
        // Let the valid client's baseline start before the attack.
        thread::sleep(Duration::from_millis(50));
        Hostile {
            ex,
            _dsp: dsp,
            pid,
            rss_before_kib,
            prober,
            started: Instant::now(),
            _serial: serial,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.ex.addr
    }

    /// Checks liveness, `/healthz`, the valid client's record and the memory peak.
    fn finish(self, case: &str) {
        self.finish_within(case, VALID_LATENCY_MAX, RSS_GROWTH_MAX_KIB);
    }

    /// [`Hostile::finish`] with other bounds on the valid client's latency and on RSS growth.
    fn finish_within(mut self, case: &str, latency_max: Duration, rss_growth_max_kib: u64) {
        let report = self.prober.take().unwrap().stop();
        assert!(self.ex.process.is_alive(), "{case}: the exchange died");
        for addr in [self.ex.addr, self.ex.debug] {
            let r = request(addr, "GET", "/healthz", &[], b"");
            assert_eq!(r.status, 200, "{case}: /healthz on {addr}");
        }
        let peak = proc_status_kib(self.pid, "VmHWM:");
        let growth = peak.saturating_sub(self.rss_before_kib);
        let mut sorted = report.latencies.clone();
        sorted.sort();
        let p99 = sorted
            .get(sorted.len().saturating_sub(1) * 99 / 100)
            .copied()
            .unwrap_or_default();
        println!(
            "{case}: {:.1}s, valid client: {} answers, {} failures, p99 {:?}, max {:?}; \
             RSS before {} KiB, peak {} KiB (+{} KiB)",
            self.started.elapsed().as_secs_f64(),
            report.answered,
            report.failures.len(),
            p99,
            report.max(),
            self.rss_before_kib,
            peak,
            growth
        );
        assert!(
            report.failures.is_empty(),
            "{case}: valid client failed: {:?}",
            report.failures
        );
        assert!(report.answered > 0, "{case}: valid client got no answer");
        assert!(
            report.max() < latency_max,
            "{case}: valid client waited {:?}",
            report.max()
        );
        assert!(
            growth < rss_growth_max_kib,
            "{case}: peak RSS grew by {growth} KiB"
        );
    }
}

/// What came back for raw bytes sent on a fresh connection.
#[derive(Debug)]
struct Raw {
    bytes: Vec<u8>,
    /// The server closed (EOF or reset) before `limit`.
    closed: bool,
    elapsed: Duration,
}

impl Raw {
    fn replies(&self) -> Vec<Reply> {
        split_replies(&self.bytes)
    }

    fn status(&self) -> u16 {
        self.replies()
            .first()
            .unwrap_or_else(|| panic!("no reply in {:?}", String::from_utf8_lossy(&self.bytes)))
            .status
    }
}

/// Sends `wire` (writes that fail are ignored: the server may stop reading), then reads until
/// the server closes or `limit` passes.
fn send_raw(addr: SocketAddr, wire: &[u8], limit: Duration) -> Raw {
    let t0 = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_write_timeout(Some(limit)).unwrap();
    let _ = s.write_all(wire);
    read_until_close(&mut s, t0, limit)
}

fn read_until_close(s: &mut TcpStream, t0: Instant, limit: Duration) -> Raw {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let closed = loop {
        let left = limit.saturating_sub(t0.elapsed());
        if left.is_zero() {
            break false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break false
            }
            Err(_) => break true,
        }
    };
    Raw {
        bytes,
        closed,
        elapsed: t0.elapsed(),
    }
}

fn post_head(extra: &str) -> String {
    format!("POST /openrtb2/auction HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{extra}\r\n")
}

/// Asserts a 4xx with the given status, then a close, within `limit`.
#[track_caller]
fn expect_reject(raw: &Raw, status: u16, case: &str) {
    assert_eq!(
        raw.status(),
        status,
        "{case}: {:?}",
        String::from_utf8_lossy(&raw.bytes[..raw.bytes.len().min(300)])
    );
    assert!(raw.closed, "{case}: connection not closed after {status}");
    let reply = &raw.replies()[0];
    assert_eq!(reply.header("connection"), Some("close"), "{case}");
    println!("{case}: {status} and close after {:?}", raw.elapsed);
}

/// Sends `wire` one byte per `period` on a new connection, reading between bytes; returns
/// what came back.
fn trickle(addr: SocketAddr, wire: &[u8], period: Duration, limit: Duration) -> Raw {
    let t0 = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap();
    s.set_nodelay(true).unwrap();
    trickle_on(&mut s, wire, period, t0, limit)
}

/// [`trickle`] on an already open stream: `wire` repeated, one byte per `period`, until the
/// server answers or closes, or `limit` (from `t0`) passes.
fn trickle_on(
    s: &mut TcpStream,
    wire: &[u8],
    period: Duration,
    t0: Instant,
    limit: Duration,
) -> Raw {
    let mut buf = [0u8; 4096];
    for &b in wire.iter().cycle() {
        if t0.elapsed() > limit {
            return Raw {
                bytes: Vec::new(),
                closed: false,
                elapsed: t0.elapsed(),
            };
        }
        if s.write_all(&[b]).is_err() {
            break;
        }
        // The read doubles as the pause between bytes.
        s.set_read_timeout(Some(period)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => {
                return Raw {
                    bytes: Vec::new(),
                    closed: true,
                    elapsed: t0.elapsed(),
                }
            }
            Ok(n) => {
                // Answered: stop sending, wait for the close.
                let mut rest = read_until_close(s, t0, limit);
                let mut bytes = buf[..n].to_vec();
                bytes.append(&mut rest.bytes);
                rest.bytes = bytes;
                return rest;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    // The server stopped taking bytes or reset: whatever it sent before is the answer.
    let mut rest = read_until_close(s, t0, limit);
    rest.closed = true;
    rest
}

/// Runs `n` copies of `f` at once and returns their results.
fn concurrently<T: Send + 'static>(n: usize, f: impl Fn() -> T + Send + Sync + 'static) -> Vec<T> {
    let f = Arc::new(f);
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let f = f.clone();
            thread::spawn(move || f())
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

const SLOW_CLIENTS: usize = 20;
/// How long a slow client keeps trickling at most.
const TRICKLE_LIMIT: Duration = Duration::from_secs(5);

#[test]
fn slowloris_heads_get_408_after_the_header_timeout() {
    let h = Hostile::start(&["--header-timeout-ms", "500"]);
    let addr = h.addr();
    // A head that never ends: one more header byte every 100 ms.
    let results = concurrently(SLOW_CLIENTS, move || {
        trickle(
            addr,
            b"POST /openrtb2/auction HTTP/1.1\r\nx-pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            Duration::from_millis(100),
            TRICKLE_LIMIT,
        )
    });
    for raw in &results {
        expect_reject(raw, 408, "slow head");
        // 500 ms timeout, answered on the next timer tick; the close follows after the
        // lingering drain (500 ms) at most.
        assert!(
            raw.elapsed < Duration::from_millis(1_600),
            "{:?}",
            raw.elapsed
        );
    }
    h.finish("slowloris heads");
}

#[test]
fn slowloris_bodies_get_408_after_the_body_timeout() {
    let h = Hostile::start(&["--body-timeout-ms", "500"]);
    let addr = h.addr();
    let results = concurrently(SLOW_CLIENTS, move || {
        let mut wire = post_head("content-length: 1000\r\n").into_bytes();
        let t0 = Instant::now();
        let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap();
        s.write_all(&wire).unwrap();
        wire.clear();
        // The body, one byte per 100 ms.
        let mut raw = trickle_on(&mut s, b"{", Duration::from_millis(100), t0, TRICKLE_LIMIT);
        raw.elapsed = t0.elapsed();
        raw
    });
    for raw in &results {
        expect_reject(raw, 408, "slow body");
        assert!(
            raw.elapsed < Duration::from_millis(1_600),
            "{:?}",
            raw.elapsed
        );
    }
    // Chunked: each chunk arrives in time, the body as a whole does not.
    let raw = {
        let t0 = Instant::now();
        let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap();
        s.write_all(post_head("transfer-encoding: chunked\r\n").as_bytes())
            .unwrap();
        trickle_on(
            &mut s,
            b"1\r\na\r\n",
            Duration::from_millis(100),
            t0,
            TRICKLE_LIMIT,
        )
    };
    expect_reject(&raw, 408, "slow chunked body");
    h.finish("slowloris bodies");
}

/// Raises this process's RLIMIT_NOFILE soft limit to the hard one; returns the soft limit.
fn raise_nofile() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read the plain struct we pass; no other memory.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        let wanted = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
            lim = wanted;
        }
    }
    usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
}

#[test]
fn ten_thousand_idle_connections_do_not_stop_valid_clients() {
    // Before the exchange starts, so it inherits the raised limit too.
    let nofile = raise_nofile();
    let n = IDLE_CONNECTIONS_WANTED.min(nofile.saturating_sub(FD_HEADROOM));
    println!(
        "RLIMIT_NOFILE {nofile}: opening {n} idle connections (wanted {IDLE_CONNECTIONS_WANTED})"
    );
    let mut h = Hostile::start(&[]);
    let mut idle = Vec::with_capacity(n);
    for _ in 0..n {
        idle.push(TcpStream::connect_timeout(&h.addr(), IO_TIMEOUT).unwrap());
    }
    let open = |h: &Hostile| sample(&h.ex.metrics(), "rtb_connections_open");
    assert!(
        eventually(Duration::from_secs(10), || open(&h) >= n as f64),
        "rtb_connections_open {} < {n}",
        open(&h)
    );
    // While they were being opened (10k accepts and tasks on 2 workers), the valid client was
    // still served, if more slowly.
    let flood = h.prober.take().unwrap().stop();
    println!(
        "during the connection flood: {} answers, {} failures, max {:?}",
        flood.answered,
        flood.failures.len(),
        flood.max()
    );
    assert!(flood.failures.is_empty(), "{:?}", flood.failures);
    assert!(flood.max() < IDLE_FLOOD_LATENCY_MAX, "{:?}", flood.max());
    // Once open, they stay (idle timeout 60 s) and the valid client is served as usual.
    let steady = Prober::start(h.addr());
    thread::sleep(Duration::from_secs(1));
    let steady = steady.stop();
    println!(
        "with {n} idle connections open: {} answers, {} failures, max {:?}",
        steady.answered,
        steady.failures.len(),
        steady.max()
    );
    assert!(steady.failures.is_empty(), "{:?}", steady.failures);
    assert!(steady.answered > 0);
    assert!(steady.max() < VALID_LATENCY_MAX, "{:?}", steady.max());
    assert!(open(&h) >= n as f64, "idle connections were closed early");
    let rss = proc_status_kib(h.pid, "VmRSS:");
    let per_conn_kib = rss.saturating_sub(h.rss_before_kib) as f64 / n as f64;
    println!("{n} idle connections: RSS {rss} KiB, {per_conn_kib:.1} KiB per connection");
    drop(idle);
    assert!(
        eventually(Duration::from_secs(10), || open(&h) < 10.0),
        "connections not released: {}",
        open(&h)
    );
    h.prober = Some(Prober::start(h.addr()));
    thread::sleep(Duration::from_millis(200));
    // Memory here is per connection, not a flat budget: see IDLE_CONNECTION_KIB_MAX.
    h.finish_within(
        "idle connections",
        VALID_LATENCY_MAX,
        IDLE_CONNECTION_KIB_MAX * n as u64,
    );
}

#[test]
fn heads_over_the_limits_get_431() {
    let h = Hostile::start(&[]);
    let limit = Duration::from_secs(3);
    let long_value = "a".repeat(9 * 1024);
    let cases = [
        (
            "long header",
            format!("GET /healthz HTTP/1.1\r\nx-long: {long_value}\r\n\r\n"),
        ),
        ("long target", format!("GET /{long_value} HTTP/1.1\r\n\r\n")),
        (
            "65 headers",
            format!("GET /healthz HTTP/1.1\r\n{}\r\n", "x-h: 1\r\n".repeat(65)),
        ),
        // A head that never ends must not be buffered past the limit either.
        (
            "endless head",
            format!("GET /healthz HTTP/1.1\r\nx: {}", "b".repeat(64 * 1024)),
        ),
    ];
    for (case, wire) in cases {
        let raw = send_raw(h.addr(), wire.as_bytes(), limit);
        expect_reject(&raw, 431, case);
    }
    h.finish("heads over limits");
}

#[test]
fn bodies_over_the_limits_get_413() {
    let h = Hostile::start(&[]);
    let limit = Duration::from_secs(3);
    // Declared too large: refused from the head alone, before any body byte.
    let raw = send_raw(
        h.addr(),
        post_head("content-length: 70000\r\n").as_bytes(),
        limit,
    );
    expect_reject(&raw, 413, "content-length over body_bytes_max");
    // Chunked, growing past the limit.
    let mut wire = post_head("transfer-encoding: chunked\r\n").into_bytes();
    wire.extend_from_slice(&chunked(&vec![b' '; 70_000], 8_000));
    expect_reject(
        &send_raw(h.addr(), &wire, limit),
        413,
        "chunked over body_bytes_max",
    );
    // Gzip within the body limit, over the decompressed limit (256 KiB) once inflated.
    let big = gzip(&vec![b' '; 300 * 1024]);
    assert!(big.len() < 64 * 1024);
    let mut wire = post_head(&format!(
        "content-encoding: gzip\r\ncontent-length: {}\r\n",
        big.len()
    ))
    .into_bytes();
    wire.extend_from_slice(&big);
    expect_reject(
        &send_raw(h.addr(), &wire, limit),
        413,
        "gzip over decompressed max",
    );
    // The gzip codec is right: a small gzipped valid request is served.
    let small = gzip(&bid_request("gz", 2, 100, 0.1));
    let mut wire = post_head(&format!(
        "content-encoding: gzip\r\ncontent-length: {}\r\nconnection: close\r\n",
        small.len()
    ))
    .into_bytes();
    wire.extend_from_slice(&small);
    assert_eq!(
        send_raw(h.addr(), &wire, limit).status(),
        204,
        "small gzip request"
    );
    h.finish("bodies over limits");
}

#[test]
fn gzip_bombs_get_413_fast_without_a_memory_spike() {
    // 10 MB of zeros gzip to about 10 KB: within the default body limit (64 KiB), so it is the
    // decompressed limit (256 KiB default) that must stop it.
    let h = Hostile::start(&[]);
    let zeros = vec![0u8; 10 * 1024 * 1024];
    let bomb = gzip(&zeros);
    println!("gzip bomb: {} bytes -> {} bytes", zeros.len(), bomb.len());
    assert!(bomb.len() < 64 * 1024);
    for framing in ["length", "chunked"] {
        let mut wire;
        if framing == "length" {
            let extra = format!(
                "content-encoding: gzip\r\ncontent-length: {}\r\n",
                bomb.len()
            );
            wire = post_head(&extra).into_bytes();
            wire.extend_from_slice(&bomb);
        } else {
            wire =
                post_head("content-encoding: gzip\r\ntransfer-encoding: chunked\r\n").into_bytes();
            wire.extend_from_slice(&chunked(&bomb, 4096));
        }
        let wire = Arc::new(wire);
        let addr = h.addr();
        // Several at once: memory must stay bounded by limits, not by the bombs' sizes.
        let results = concurrently(8, move || send_raw(addr, &wire, Duration::from_secs(3)));
        for raw in &results {
            expect_reject(raw, 413, framing);
            // Answered fast: inflating stops at the limit, not at the end of the bomb.
            let answered = raw.elapsed;
            assert!(answered < Duration::from_secs(1), "{framing}: {answered:?}");
        }
    }
    h.finish("gzip bombs");
}

#[test]
fn smuggling_framings_and_bad_chunks_get_400_and_close() {
    let h = Hostile::start(&[]);
    let limit = Duration::from_secs(3);
    let cases: [(&str, &[u8]); 11] = [
        ("CL then TE", b"content-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("TE then CL", b"transfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n0\r\n\r\n"),
        ("two CLs", b"content-length: 5\r\ncontent-length: 6\r\n\r\nhello!"),
        ("CL with sign", b"content-length: +5\r\n\r\nhello"),
        ("TE gzip, chunked", b"transfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
        ("TE twice", b"transfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("chunk size not hex", b"transfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
        ("negative chunk size", b"transfer-encoding: chunked\r\n\r\n-1\r\nhello\r\n0\r\n\r\n"),
        ("chunk size overflow", b"transfer-encoding: chunked\r\n\r\nffffffffffffffffffff\r\nx\r\n"),
        ("chunk without CRLF", b"transfer-encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"),
        ("endless chunk extension", b"transfer-encoding: chunked\r\n\r\n5;aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
    ];
    for (case, rest) in cases {
        let mut wire = b"POST /openrtb2/auction HTTP/1.1\r\nhost: x\r\n".to_vec();
        wire.extend_from_slice(rest);
        let raw = send_raw(h.addr(), &wire, limit);
        expect_reject(&raw, 400, case);
        let body = raw.replies()[0].json();
        assert!(body["error"].is_string(), "{case}: {body}");
    }
    h.finish("smuggling and chunks");
}

#[test]
fn pipelined_garbage_after_a_valid_request_is_answered_in_order_then_closed() {
    let h = Hostile::start(&[]);
    let body = bid_request("pipe", 2, 100, 0.1);
    let mut wire = post_head(&format!("content-length: {}\r\n", body.len())).into_bytes();
    wire.extend_from_slice(&body);
    wire.extend_from_slice(b"\x00\x01GARBAGE \xff\xfe HTTP/9\r\n\r\n");
    let raw = send_raw(h.addr(), &wire, Duration::from_secs(3));
    let replies = raw.replies();
    assert_eq!(
        replies.len(),
        2,
        "{:?}",
        String::from_utf8_lossy(&raw.bytes)
    );
    assert_eq!(replies[0].status, 204, "the valid request first");
    assert_eq!(replies[1].status, 400, "then the garbage");
    assert_eq!(replies[1].header("connection"), Some("close"));
    assert!(raw.closed, "closed after the garbage");
    h.finish("pipelined garbage");
}

#[test]
fn a_million_brackets_get_400_fast_without_overflowing_the_stack() {
    let h = Hostile::start(&[
        "--body-bytes-max",
        "2000000",
        "--decompressed-bytes-max",
        "2000000",
    ]);
    for (case, body) in [
        ("arrays", vec![b'['; 1_000_000]),
        ("objects", b"{\"a\":".repeat(200_000)),
        ("in a field", {
            let mut b = br#"{"id":"x","imp":[{"id":"1","banner":{},"ext":"#.to_vec();
            b.extend(std::iter::repeat_n(b'[', 1_000_000));
            b
        }),
    ] {
        let extra = format!("content-length: {}\r\nconnection: close\r\n", body.len());
        let mut wire = post_head(&extra).into_bytes();
        wire.extend_from_slice(&body);
        let raw = send_raw(h.addr(), &wire, Duration::from_secs(5));
        let reply = &raw.replies()[0];
        assert_eq!(reply.status, 400, "{case}: {}", reply.text());
        assert!(
            raw.elapsed < Duration::from_secs(1),
            "{case}: {:?}",
            raw.elapsed
        );
        assert!(reply.json()["error"].is_string(), "{case}");
    }
    // A worker parses a body start to end before serving its other connections
    // (thread-per-core): a 1 MB body costs ~1 ms in a release build but ~130 ms in the debug
    // build the tests run, so the bound is relaxed there only.
    let bound = if cfg!(debug_assertions) {
        Duration::from_millis(400)
    } else {
        VALID_LATENCY_MAX
    };
    h.finish_within("deep nesting", bound, RSS_GROWTH_MAX_KIB);
}

#[test]
fn non_utf8_strings_get_400_naming_malformed_json() {
    let h = Hostile::start(&[]);
    let bodies: [&[u8]; 3] = [
        b"{\"id\":\"\xff\xfe\",\"imp\":[{\"id\":\"1\",\"banner\":{}}]}",
        b"{\"id\":\"a\",\"imp\":[{\"id\":\"\xc3\x28\",\"banner\":{}}]}",
        // A lone surrogate escape is not a Unicode scalar value either.
        b"{\"id\":\"\\ud800\",\"imp\":[{\"id\":\"1\",\"banner\":{}}]}",
    ];
    for body in bodies {
        let r = h.ex.auction(body);
        assert_eq!(r.status, 400, "{}", r.text());
        let json = r.json();
        assert_eq!(json["rule"], "malformed JSON", "{json}");
        assert!(
            json["error"].as_str().unwrap().contains("malformed JSON"),
            "{json}"
        );
    }
    h.finish("non-UTF-8");
}

#[test]
fn duplicate_top_level_keys_get_400() {
    let h = Hostile::start(&[]);
    let cases: [(&[u8], &str); 2] = [
        (
            br#"{"id":"a","id":"b","imp":[{"id":"1","banner":{}}]}"#,
            "id: duplicate",
        ),
        (
            br#"{"id":"a","tmax":50,"tmax":5000,"imp":[{"id":"1","banner":{}}]}"#,
            "tmax: duplicate",
        ),
    ];
    for (body, error) in cases {
        let r = h.ex.auction(body);
        assert_eq!(r.status, 400, "{error}: {}", r.text());
        assert_eq!(r.json()["error"], error, "{}", r.text());
    }
    h.finish("duplicate keys");
}

#[test]
fn duplicate_keys_inside_an_imp_get_400() {
    let h = Hostile::start(&[]);
    let r =
        h.ex.auction(br#"{"id":"a","imp":[{"id":"1","id":"2","banner":{}}]}"#);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"], "imp[0].id: duplicate", "{}", r.text());
    h.finish("duplicate imp keys");
}
