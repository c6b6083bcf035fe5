//! Server integration tests on real loopback sockets. The driver comes from `RTB_IO_DRIVER`
//! (default auto); run again with `MONOIO_FORCE_LEGACY_DRIVER=1` for epoll.
#![allow(clippy::unwrap_used)]

use std::{
    io::Write,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::StatusCode;
use rtb_io::{
    body::gunzip_limited, driver::driver_from_env, Broadcast, Handler, Request, Response, Server,
    ServerConfig, ServerLimits, WorkerCtx,
};
use test_support::{
    http::{closed_by_peer, connect, read_response, roundtrip},
    wire::gzip,
};

/// How long `/block` holds its worker.
const BLOCK_FOR: Duration = Duration::from_millis(200);
/// Set by `/block` once it holds its worker.
static BLOCKING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Echoes the body; `/slow` waits 200 ms first; `/spin` keeps the worker's CPU 5 ms first;
/// `/block` blocks the worker's thread [`BLOCK_FOR`] first; `/waited` answers the request's kernel wait
/// and its age since arrival, us; `/worker` answers the worker index; `/panic` panics.
/// At once (`answer_now`, no future): `/now` answers "now", `/panic-now` panics.
struct Echo;

impl Handler for Echo {
    fn answer_now(&self, req: &Request, _ctx: &WorkerCtx) -> Option<Response> {
        match req.path() {
            "/now" => Some(Response::with_body(StatusCode::OK, "text/plain", "now")),
            "/panic-now" => panic!("a bug in answer_now"),
            _ => None,
        }
    }

    async fn handle(&self, req: Request, ctx: &WorkerCtx) -> Response {
        match req.path() {
            "/slow" => {
                monoio::time::sleep(Duration::from_millis(200)).await;
                Response::with_body(StatusCode::OK, "text/plain", req.body)
            }
            "/spin" => {
                let until = Instant::now() + Duration::from_millis(5);
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
                Response::with_body(StatusCode::OK, "text/plain", req.body)
            }
            "/block" => {
                // Holds the whole worker (not just this task): what a long turn does. Says so
                // first, so that a test sends what must wait only once the worker is held.
                BLOCKING.store(true, Ordering::Release);
                thread::sleep(BLOCK_FOR);
                Response::with_body(StatusCode::OK, "text/plain", req.body)
            }
            "/waited" => {
                let since_arrival = req.arrival.elapsed().as_micros();
                let kernel = req.kernel_wait.as_micros();
                let waited = format!("{kernel} {since_arrival}");
                Response::with_body(StatusCode::OK, "text/plain", waited)
            }
            "/panic" => panic!("a handler bug"),
            "/worker" => {
                Response::with_body(StatusCode::OK, "text/plain", ctx.info.index.to_string())
            }
            _ => Response::with_body(StatusCode::OK, "application/octet-stream", req.body),
        }
    }
}

fn start_with(limits: ServerLimits, workers: usize) -> Server {
    let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    config.workers = workers;
    config.pin_cores = false;
    config.driver = driver_from_env();
    config.limits = limits;
    config.shutdown_grace = Duration::from_secs(3);
    Server::start(config, |_ctx: &WorkerCtx| Echo).unwrap()
}

fn start() -> Server {
    start_with(ServerLimits::default(), 2)
}

fn post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut raw = format!(
        "POST {path} HTTP/1.1\r\nhost: t\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw
}

#[test]
fn reports_workers_and_drivers() {
    let server = start();
    assert_eq!(server.workers().len(), 2);
    for w in server.workers() {
        eprintln!("worker {} driver {}", w.index, w.driver);
    }
    assert_ne!(server.local_addr().port(), 0);
}

#[test]
fn a_handler_panic_is_a_500_and_the_worker_keeps_serving() {
    let server = start_with(ServerLimits::default(), 1);
    let mut s = connect(server.local_addr());
    let mut buf = Vec::new();
    s.write_all(&post("/panic", b"x")).unwrap();
    let r = read_response(&mut s, &mut buf).unwrap();
    assert_eq!(r.status, 500);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(closed_by_peer(&mut s, Duration::from_secs(2)));
    for i in 0..3 {
        let body = format!("after {i}");
        let r = roundtrip(server.local_addr(), &post("/echo", body.as_bytes())).unwrap();
        assert_eq!((r.status, r.body), (200, body.into_bytes()));
    }
    assert_eq!(server.stats().handler_panics, 1);
}

/// What `answer_now` answers is the answer (`handle`, which echoes, never runs), on a
/// connection that goes on serving both kinds; a panic there is a 500 like one in `handle`.
#[test]
fn an_answer_given_at_once_skips_the_handler_future_and_a_panic_there_is_a_500() {
    let server = start_with(ServerLimits::default(), 1);
    let mut s = connect(server.local_addr());
    let mut buf = Vec::new();
    for path in ["/now", "/echo", "/now"] {
        s.write_all(&post(path, b"echoed")).unwrap();
        let r = read_response(&mut s, &mut buf).unwrap();
        let expected: &[u8] = if path == "/now" { b"now" } else { b"echoed" };
        assert_eq!((r.status, &r.body[..]), (200, expected), "{path}");
    }
    s.write_all(&post("/panic-now", b"x")).unwrap();
    let r = read_response(&mut s, &mut buf).unwrap();
    assert_eq!(r.status, 500);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(closed_by_peer(&mut s, Duration::from_secs(2)));
    let r = roundtrip(server.local_addr(), &post("/now", b"x")).unwrap();
    assert_eq!((r.status, r.body), (200, b"now".to_vec()));
    assert_eq!(server.stats().handler_panics, 1);
}

#[test]
fn keep_alive_reuses_connection() {
    let server = start_with(ServerLimits::default(), 1);
    let mut s = connect(server.local_addr());
    let mut buf = Vec::new();
    for i in 0..5 {
        let body = format!("hello {i}");
        s.write_all(&post("/echo", body.as_bytes())).unwrap();
        let r = read_response(&mut s, &mut buf).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, body.as_bytes());
        assert_eq!(r.header("connection"), None);
    }
    assert_eq!(server.stats().connections_accepted, 1);
    assert_eq!(server.stats().requests_handled, 5);
}

#[test]
fn pipelined_requests_answer_in_order() {
    let server = start();
    let mut s = connect(server.local_addr());
    let mut raw = post("/slow", b"first");
    raw.extend_from_slice(&post("/echo", b"second"));
    raw.extend_from_slice(b"GET /echo HTTP/1.1\r\nhost: t\r\n\r\n");
    s.write_all(&raw).unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_response(&mut s, &mut buf).unwrap().body, b"first");
    assert_eq!(read_response(&mut s, &mut buf).unwrap().body, b"second");
    assert_eq!(read_response(&mut s, &mut buf).unwrap().body, b"");
}

#[test]
fn connection_close_closes() {
    let server = start();
    let mut s = connect(server.local_addr());
    s.write_all(b"GET / HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s, &mut Vec::new()).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(closed_by_peer(&mut s, Duration::from_secs(2)));
    // HTTP/1.0 without keep-alive closes too.
    let mut s = connect(server.local_addr());
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s, &mut Vec::new()).unwrap().status, 200);
    assert!(closed_by_peer(&mut s, Duration::from_secs(2)));
}

#[test]
fn chunked_body_is_decoded() {
    let server = start();
    let raw = b"POST /echo HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let r = roundtrip(server.local_addr(), raw).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello world");
}

#[test]
fn gzip_body_is_decoded() {
    let server = start();
    let plain = vec![b'x'; 100_000];
    let gz = gzip(&plain);
    let mut raw = format!(
        "POST /echo HTTP/1.1\r\nhost: t\r\ncontent-encoding: gzip\r\ncontent-length: {}\r\n\r\n",
        gz.len()
    )
    .into_bytes();
    raw.extend_from_slice(&gz);
    let r = roundtrip(server.local_addr(), &raw).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, plain);
}

#[test]
fn unsupported_content_encoding_is_415_and_the_connection_stays_usable() {
    let server = start_with(ServerLimits::default(), 1);
    let mut s = connect(server.local_addr());
    let mut buf = Vec::new();
    for coding in ["br", "deflate", "gzip, gzip", "identity, zstd"] {
        let raw = format!(
            "POST /echo HTTP/1.1\r\nhost: t\r\ncontent-encoding: {coding}\r\ncontent-length: 5\r\n\r\nxxxxx"
        );
        s.write_all(raw.as_bytes()).unwrap();
        let r = read_response(&mut s, &mut buf).unwrap();
        assert_eq!(r.status, 415, "{coding}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.body, br#"{"error":"unsupported content-encoding"}"#);
        assert_eq!(r.header("connection"), None, "{coding}: kept open");
    }
    // The same connection, in step: identity is decoded (as nothing), then a plain request.
    s.write_all(
        b"POST /echo HTTP/1.1\r\ncontent-encoding: identity\r\ncontent-length: 2\r\n\r\nok",
    )
    .unwrap();
    let r = read_response(&mut s, &mut buf).unwrap();
    assert_eq!((r.status, r.body), (200, b"ok".to_vec()));
    s.write_all(&post("/echo", b"after")).unwrap();
    let r = read_response(&mut s, &mut buf).unwrap();
    assert_eq!((r.status, r.body), (200, b"after".to_vec()));
    let stats = server.stats();
    assert_eq!(stats.rejected_unsupported_encoding, 4);
    assert_eq!((stats.requests_handled, stats.connections_accepted), (2, 1));
}

/// A request for `/echo` with `accept-encoding` (when given) and `body`.
fn post_accepting(accept: Option<&str>, body: &[u8]) -> Vec<u8> {
    let accept = accept.map_or(String::new(), |a| format!("accept-encoding: {a}\r\n"));
    let mut raw = format!(
        "POST /echo HTTP/1.1\r\nhost: t\r\n{accept}content-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw
}

#[test]
fn answers_are_gzipped_when_the_client_accepts_gzip_and_the_body_is_worth_it() {
    use rtb_io::gzip::{GZIP_RESPONSE_BYTES_MAX, GZIP_RESPONSE_BYTES_MIN};
    let limits = ServerLimits {
        body_bytes_max: 2 * GZIP_RESPONSE_BYTES_MAX,
        ..ServerLimits::default()
    };
    let server = start_with(limits, 1);
    let mut s = connect(server.local_addr());
    let mut buf = Vec::new();
    let answer: Vec<u8> =
        br#"{"id":"a","seatbid":[{"bid":[{"id":"1","impid":"1","price":1.5}]}]},"#.repeat(40);
    assert!(answer.len() > GZIP_RESPONSE_BYTES_MIN);
    for accept in ["gzip", "br, gzip;q=0.8", "*"] {
        s.write_all(&post_accepting(Some(accept), &answer)).unwrap();
        let r = read_response(&mut s, &mut buf).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-encoding"), Some("gzip"), "{accept}");
        assert_eq!(r.header("vary"), Some("accept-encoding"));
        assert!(r.body.len() < answer.len() / 4, "{} bytes", r.body.len());
        assert_eq!(gunzip_limited(&r.body, answer.len()).unwrap(), answer);
    }
    // Not asked for, refused, too small or too large: sent as is.
    let too_large = vec![b'a'; GZIP_RESPONSE_BYTES_MAX + 1];
    let small = &answer[..GZIP_RESPONSE_BYTES_MIN - 1];
    for (accept, body, vary) in [
        (None, &answer[..], Some("accept-encoding")),
        (Some("gzip;q=0"), &answer[..], Some("accept-encoding")),
        (Some("br"), &answer[..], Some("accept-encoding")),
        (Some("gzip"), small, None),
        (Some("gzip"), &too_large[..], None),
    ] {
        s.write_all(&post_accepting(accept, body)).unwrap();
        let r = read_response(&mut s, &mut buf).unwrap();
        assert_eq!(
            r.header("content-encoding"),
            None,
            "{accept:?} {}",
            body.len()
        );
        assert_eq!(r.header("vary"), vary, "{accept:?} {}", body.len());
        assert_eq!(r.body, body);
    }
    assert_eq!(server.stats().responses_gzipped, 3);
}

#[test]
fn head_split_at_every_byte() {
    let server = start_with(ServerLimits::default(), 1);
    let raw = post("/echo", b"split-body");
    let mut s = connect(server.local_addr());
    let mut buf = Vec::new();
    // One keep-alive connection; each request is written in two parts at every split index.
    for split in 1..raw.len() {
        s.write_all(&raw[..split]).unwrap();
        thread::sleep(Duration::from_millis(2));
        s.write_all(&raw[split..]).unwrap();
        let r = read_response(&mut s, &mut buf).unwrap();
        assert_eq!(r.status, 200, "split at {split}");
        assert_eq!(r.body, b"split-body", "split at {split}");
    }
}

#[test]
fn expect_continue() {
    let server = start();
    let mut s = connect(server.local_addr());
    s.write_all(
        b"POST /echo HTTP/1.1\r\nhost: t\r\nexpect: 100-continue\r\ncontent-length: 4\r\n\r\n",
    )
    .unwrap();
    let mut buf = Vec::new();
    let interim = read_response(&mut s, &mut buf).unwrap();
    assert_eq!(interim.status, 100);
    s.write_all(b"body").unwrap();
    let r = read_response(&mut s, &mut buf).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"body");
}

fn expect_reject(server: &Server, raw: &[u8], status: u16) {
    let mut s = connect(server.local_addr());
    // The server may stop reading early; a failed write is fine, the response must still come.
    let _ = s.write_all(raw);
    let r = read_response(&mut s, &mut Vec::new()).unwrap_or_else(|| {
        panic!(
            "no response for {:?}",
            String::from_utf8_lossy(&raw[..raw.len().min(60)])
        )
    });
    assert_eq!(r.status, status);
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.body.starts_with(b"{\"error\":\""));
    assert!(closed_by_peer(&mut s, Duration::from_secs(2)));
}

#[test]
fn limits_map_to_statuses() {
    let limits = ServerLimits {
        head_bytes_max: 1024,
        headers_count_max: 8,
        body_bytes_max: 1000,
        decompressed_bytes_max: 2000,
        ..ServerLimits::default()
    };
    let server = start_with(limits, 2);
    let big_header = format!("GET / HTTP/1.1\r\nx-big: {}\r\n\r\n", "a".repeat(2000));
    expect_reject(&server, big_header.as_bytes(), 431);
    let mut many = String::from("GET / HTTP/1.1\r\n");
    for i in 0..9 {
        many.push_str(&format!("x-h{i}: v\r\n"));
    }
    many.push_str("\r\n");
    expect_reject(&server, many.as_bytes(), 431);
    expect_reject(&server, &post("/echo", &[b'a'; 1001]), 413);
    let mut chunked = b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        chunked.extend_from_slice(b"190\r\n");
        chunked.extend_from_slice(&[b'a'; 400]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    expect_reject(&server, &chunked, 413);
    let bomb = gzip(&[b'a'; 2001]);
    let mut raw = format!(
        "POST / HTTP/1.1\r\ncontent-encoding: gzip\r\ncontent-length: {}\r\n\r\n",
        bomb.len()
    )
    .into_bytes();
    raw.extend_from_slice(&bomb);
    expect_reject(&server, &raw, 413);
    expect_reject(&server, b"POST / HTTP/1.1\r\nhost: t\r\n\r\n", 411);
    expect_reject(
        &server,
        b"POST / HTTP/1.1\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    );
    expect_reject(
        &server,
        b"POST / HTTP/1.1\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd",
        400,
    );
    expect_reject(
        &server,
        b"POST / HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
        400,
    );
    expect_reject(&server, b"GET / HTTP/2.0\r\n\r\n", 505);
    expect_reject(&server, b"\x16\x03\x01garbage\r\n\r\n", 400);
    let s = server.stats();
    assert_eq!(s.rejected_head_too_large, 2);
    assert_eq!(s.rejected_body_too_large, 3);
    assert_eq!(s.rejected_length_required, 1);
    assert_eq!(s.rejected_bad_request, 4);
    assert_eq!(s.rejected_bad_version, 1);
}

#[test]
fn slowloris_is_cut_while_others_are_served() {
    let limits = ServerLimits {
        header_read_timeout: Duration::from_millis(300),
        ..ServerLimits::default()
    };
    let server = start_with(limits, 1);
    let addr = server.local_addr();
    let slow = thread::spawn(move || {
        let mut s = connect(addr);
        let started = Instant::now();
        for b in b"GET / HTTP/1.1\r\nhost: slow\r\nx-pad: aaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n" {
            if s.write_all(&[*b]).is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(100));
            if started.elapsed() > Duration::from_millis(600) {
                break;
            }
        }
        let r = read_response(&mut s, &mut Vec::new());
        (r.map(|r| r.status), started.elapsed())
    });
    // Other clients are served normally meanwhile.
    for _ in 0..10 {
        let r = roundtrip(addr, &post("/echo", b"fast")).unwrap();
        assert_eq!(r.body, b"fast");
        thread::sleep(Duration::from_millis(20));
    }
    let (status, elapsed) = slow.join().unwrap();
    assert_eq!(status, Some(408));
    assert!(elapsed < Duration::from_millis(1000), "{elapsed:?}");
    assert_eq!(server.stats().rejected_timeout, 1);
}

#[test]
fn slow_body_gets_408() {
    let limits = ServerLimits {
        body_read_timeout: Duration::from_millis(200),
        ..ServerLimits::default()
    };
    let server = start_with(limits, 1);
    let started = Instant::now();
    expect_reject(
        &server,
        b"POST / HTTP/1.1\r\ncontent-length: 10\r\n\r\nabc",
        408,
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(server.stats().rejected_timeout, 1);
}

#[test]
fn idle_keepalive_timeout_closes() {
    let limits = ServerLimits {
        idle_keepalive_timeout: Duration::from_millis(200),
        ..ServerLimits::default()
    };
    let server = start_with(limits, 1);
    let mut s = connect(server.local_addr());
    s.write_all(&post("/echo", b"x")).unwrap();
    assert_eq!(read_response(&mut s, &mut Vec::new()).unwrap().status, 200);
    let t = Instant::now();
    assert!(closed_by_peer(&mut s, Duration::from_secs(2)));
    assert!(t.elapsed() >= Duration::from_millis(150));
}

#[test]
fn connection_limit_per_worker() {
    let limits = ServerLimits {
        connections_per_worker_max: 2,
        ..ServerLimits::default()
    };
    let server = start_with(limits, 1);
    let mut a = connect(server.local_addr());
    let mut b = connect(server.local_addr());
    let mut buf = Vec::new();
    a.write_all(&post("/", b"a")).unwrap();
    b.write_all(&post("/", b"b")).unwrap();
    assert_eq!(read_response(&mut a, &mut buf).unwrap().status, 200);
    assert_eq!(read_response(&mut b, &mut buf).unwrap().status, 200);
    let mut c = connect(server.local_addr());
    assert!(closed_by_peer(&mut c, Duration::from_secs(2)));
    assert_eq!(server.stats().connections_rejected_over_limit, 1);
    drop(a);
    thread::sleep(Duration::from_millis(50));
    let r = roundtrip(server.local_addr(), &post("/", b"d")).unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn ipv6_loopback() {
    let mut config = ServerConfig::new("[::1]:0".parse().unwrap());
    config.workers = 2;
    config.pin_cores = false;
    config.driver = driver_from_env();
    let server = match Server::start(config, |_ctx: &WorkerCtx| Echo) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("skipping: no IPv6 loopback here: {e}");
            return;
        }
    };
    let r = roundtrip(server.local_addr(), &post("/echo", b"v6")).unwrap();
    assert_eq!(r.body, b"v6");
}

#[test]
fn graceful_shutdown_answers_requests_pipelined_behind_the_one_in_flight() {
    let server = start_with(ServerLimits::default(), 1);
    let mut s = connect(server.local_addr());
    let mut raw = post("/slow", b"first");
    raw.extend_from_slice(&post("/echo", b"second"));
    raw.extend_from_slice(&post("/echo", b"third"));
    s.write_all(&raw).unwrap();
    thread::sleep(Duration::from_millis(80));
    server.shutdown_handle().trigger();
    let mut buf = Vec::new();
    let answers: Vec<_> = (0..3)
        .map(|_| {
            let r = read_response(&mut s, &mut buf).unwrap();
            (r.body.clone(), r.header("connection").map(str::to_owned))
        })
        .collect();
    assert_eq!(
        answers,
        [
            (b"first".to_vec(), None),
            (b"second".to_vec(), None),
            (b"third".to_vec(), Some("close".to_string())),
        ]
    );
    assert!(closed_by_peer(&mut s, Duration::from_secs(2)));
    server.join().unwrap();
}

#[test]
fn graceful_shutdown_loses_no_in_flight_request() {
    let server = start_with(ServerLimits::default(), 2);
    let addr: SocketAddr = server.local_addr();
    // An idle keep-alive connection that must be closed by shutdown.
    let mut idle = connect(addr);
    idle.write_all(&post("/echo", b"idle")).unwrap();
    assert_eq!(
        read_response(&mut idle, &mut Vec::new()).unwrap().status,
        200
    );

    let clients: Vec<_> = (0..8)
        .map(|i| {
            thread::spawn(move || {
                let mut s = connect(addr);
                let body = format!("req {i}");
                s.write_all(&post("/slow", body.as_bytes())).unwrap();
                let r = read_response(&mut s, &mut Vec::new()).unwrap();
                (
                    r.status,
                    r.body == body.as_bytes(),
                    r.header("connection").map(str::to_owned),
                )
            })
        })
        .collect();
    // Let every request reach its handler (200 ms each), then stop.
    thread::sleep(Duration::from_millis(80));
    let handle = server.shutdown_handle();
    let started = Instant::now();
    handle.trigger();
    for c in clients {
        let (status, same, connection) = c.join().unwrap();
        assert_eq!(status, 200);
        assert!(same);
        assert_eq!(connection.as_deref(), Some("close"));
    }
    assert!(closed_by_peer(&mut idle, Duration::from_secs(2)));
    let stats = server.stats();
    server.join().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(stats.requests_handled, 9);
    // Nothing listens any more.
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err());
}

#[test]
fn broadcast_reaches_all_workers() {
    const WORKERS: usize = 2;
    let bcast: Broadcast<u64> = Broadcast::new(WORKERS);
    let seen: Arc<Vec<AtomicU64>> = Arc::new((0..WORKERS).map(|_| AtomicU64::new(0)).collect());
    let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    config.workers = WORKERS;
    config.pin_cores = false;
    config.driver = driver_from_env();
    let (b, s) = (bcast.clone(), seen.clone());
    let server = Server::start(config, move |ctx: &WorkerCtx| {
        let rx = b.receiver(ctx.info.index).unwrap();
        let seen = s.clone();
        let index = ctx.info.index;
        rx.spawn_applier(
            rtb_io::broadcast::APPLY_PERIOD_DEFAULT,
            ctx.shutdown.clone(),
            move |v| seen[index].store(v, Ordering::Release),
        );
        Echo
    })
    .unwrap();
    let mut worst = Duration::ZERO;
    for round in 1..=20u64 {
        let sent = Instant::now();
        assert_eq!(bcast.send(round), WORKERS);
        while seen.iter().any(|v| v.load(Ordering::Acquire) != round) {
            assert!(
                sent.elapsed() < Duration::from_secs(1),
                "update never applied"
            );
            thread::yield_now();
        }
        worst = worst.max(sent.elapsed());
        thread::sleep(Duration::from_millis(3));
    }
    eprintln!("broadcast worst visibility over 20 rounds: {worst:?}");
    // The applier runs every millisecond on an idle worker (a few ms seen here), but these
    // unpinned workers share two cores with whatever else runs: under a parallel build they
    // waited over 10 ms for a core. What is checked is that each update is applied by the
    // workers' own timers, with no request to wake them, well within a scheduling delay.
    assert!(worst < Duration::from_millis(250), "{worst:?}");
    drop(server);
}

#[test]
fn bytes_body_is_zero_copy_slice() {
    // Content-Length bodies are handed over as a slice of the read buffer: checked indirectly
    // by echoing a body that spans several reads.
    let server = start();
    let body = vec![7u8; 60_000];
    let r = roundtrip(server.local_addr(), &post("/echo", &body)).unwrap();
    assert_eq!(r.body.len(), body.len());
    let _ = Bytes::new();
}

/// Sends four `/spin` requests at once on four connections to a one-worker server and returns
/// how many waited for a turn of the event loop.
fn spins_that_waited_a_turn(turn_budget: Duration) -> u64 {
    let limits = ServerLimits {
        turn_budget,
        ..ServerLimits::default()
    };
    let server = start_with(limits, 1);
    let mut conns: Vec<_> = (0..4).map(|_| connect(server.local_addr())).collect();
    for (i, s) in conns.iter_mut().enumerate() {
        s.write_all(&post("/spin", format!("spin {i}").as_bytes()))
            .unwrap();
    }
    for (i, s) in conns.iter_mut().enumerate() {
        let r = read_response(s, &mut Vec::new()).unwrap();
        assert_eq!((r.status, r.body), (200, format!("spin {i}").into_bytes()));
    }
    server.stats().requests_waited_turn
}

#[test]
fn requests_read_after_the_turn_budget_is_spent_wait_and_are_all_answered() {
    // Each request keeps the worker 5 ms, more than a 1 ms budget: those read behind it wait
    // for the turn marker (the timers' check) before they run.
    assert!(spins_that_waited_a_turn(Duration::from_millis(1)) >= 1);
    assert_eq!(spins_that_waited_a_turn(Duration::ZERO), 0);
}

/// On a one-worker server, sends `/block` on one connection and, while the worker is blocked,
/// `/waited` on another: the second request's (kernel wait, age since arrival), us.
fn wait_behind_a_blocked_worker(kernel_arrival: bool) -> (u64, u64) {
    let limits = ServerLimits {
        kernel_arrival,
        ..ServerLimits::default()
    };
    let server = start_with(limits, 1);
    let mut blocker = connect(server.local_addr());
    let mut waiter = connect(server.local_addr());
    // Both connections accepted and idle before the worker blocks.
    for s in [&mut blocker, &mut waiter] {
        s.write_all(&post("/echo", b"warm")).unwrap();
        assert_eq!(read_response(s, &mut Vec::new()).unwrap().status, 200);
    }
    BLOCKING.store(false, Ordering::Release);
    blocker.write_all(&post("/block", b"")).unwrap();
    while !BLOCKING.load(Ordering::Acquire) {
        thread::sleep(Duration::from_millis(1));
    }
    waiter.write_all(&post("/waited", b"")).unwrap();
    let r = read_response(&mut waiter, &mut Vec::new()).unwrap();
    assert_eq!(
        read_response(&mut blocker, &mut Vec::new()).unwrap().status,
        200
    );
    let text = String::from_utf8(r.body).unwrap();
    let (kernel, age) = text.split_once(' ').unwrap();
    (kernel.parse().unwrap(), age.parse().unwrap())
}

#[test]
fn with_kernel_arrival_a_request_counts_the_time_it_sat_unread_in_the_socket() {
    // Sent once the worker is held for 200 ms: it sits up to 200 ms in the kernel before it
    // is read (less by however late this thread saw the flag).
    let (kernel_wait, age) = wait_behind_a_blocked_worker(true);
    assert!((100_000..1_000_000).contains(&kernel_wait), "{kernel_wait}");
    assert!(age >= kernel_wait, "{age} < {kernel_wait}");
    let (kernel_wait, age) = wait_behind_a_blocked_worker(false);
    assert_eq!(kernel_wait, 0);
    assert!(
        age < 100_000,
        "unstamped, the age starts at the read: {age}"
    );
}

#[test]
fn with_kernel_arrival_keep_alive_pipelining_and_shutdown_work_as_without() {
    let limits = ServerLimits {
        kernel_arrival: true,
        ..ServerLimits::default()
    };
    let server = start_with(limits, 1);
    let mut s = connect(server.local_addr());
    let mut buf = Vec::new();
    for i in 0..20 {
        let body = format!("keep-alive {i}");
        s.write_all(&post("/echo", body.as_bytes())).unwrap();
        assert_eq!(
            read_response(&mut s, &mut buf).unwrap().body,
            body.as_bytes()
        );
    }
    let mut raw = post("/echo", b"one");
    raw.extend_from_slice(&post("/echo", b"two"));
    s.write_all(&raw).unwrap();
    assert_eq!(read_response(&mut s, &mut buf).unwrap().body, b"one");
    assert_eq!(read_response(&mut s, &mut buf).unwrap().body, b"two");
    // Idle now: shutdown closes it at once, not after the keep-alive timeout.
    let started = Instant::now();
    server.shutdown_handle().trigger();
    assert!(closed_by_peer(&mut s, Duration::from_secs(2)));
    server.join().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}
