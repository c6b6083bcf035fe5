//! TLS end to end on loopback: rtb-io's server with a certificate made by a test CA, and the
//! client pool calling it over TLS. Checks that calls are answered and connections reused
//! (and resumed), that pre-warming opens TLS connections, that a certificate from another CA
//! or for another name is refused as [`CallError::Tls`] within the call's deadline, and that
//! a plain-HTTP server is refused the same way. Runs on the driver from `RTB_IO_DRIVER`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::SocketAddr,
    rc::Rc,
    time::{Duration, Instant},
};

use http::StatusCode;
use rtb_io::{
    driver::{block_on, driver_from_env},
    tls::{server_name, server_tls},
    CallError, ClientConfig, Handler, Request, RequestParts, Response, Server, ServerConfig,
    TlsRoots, Upstream, UpstreamTls, WorkerCtx,
};
use test_support::tls::{ServerCert, TestCa};

struct Echo;

impl Handler for Echo {
    async fn handle(&self, req: Request, _ctx: &WorkerCtx) -> Response {
        if &req.body[..] == b"slow" {
            monoio::time::sleep(Duration::from_millis(100)).await;
        }
        Response::with_body(StatusCode::OK, "application/json", req.body)
    }
}

fn server(cert: Option<&ServerCert>) -> Server {
    let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    config.workers = 1;
    config.pin_cores = false;
    config.driver = match std::env::var("RTB_TLS_SERVER_DRIVER") {
        Ok(v) => v.parse().unwrap(),
        Err(_) => driver_from_env(),
    };
    config.tls = cert.map(|c| server_tls(&c.cert_file, &c.key_file).unwrap());
    Server::start(config, |_ctx: &WorkerCtx| Echo).unwrap()
}

fn run<F: std::future::Future>(fut: F) -> F::Output {
    block_on(driver_from_env(), fut).unwrap().0
}

fn tls_pool(addr: SocketAddr, roots: &TlsRoots, name: &str) -> Rc<Upstream> {
    let tls = UpstreamTls {
        connector: roots.worker_connector(),
        server_name: server_name(name).unwrap(),
    };
    Upstream::with_tls(addr, name, ClientConfig::default(), Some(tls))
}

const BODY: &[u8] = br#"{"id":"tls"}"#;

#[test]
fn calls_over_tls_are_answered_and_reuse_their_connections() {
    let ca = TestCa::new("io-ok");
    let cert = ca.server_cert("dsp", &["localhost", "127.0.0.1"]);
    let srv = server(Some(&cert));
    let roots = TlsRoots::load(Some(&ca.ca_file)).unwrap();
    let addr = srv.local_addr();
    run(async {
        for name in ["127.0.0.1", "localhost"] {
            let pool = tls_pool(addr, &roots, name);
            assert_eq!(pool.prewarm(2).await, 2, "pre-warm opens TLS connections");
            for _ in 0..200 {
                let deadline = Instant::now() + Duration::from_secs(2);
                let r = pool
                    .call_parts(RequestParts::openrtb_post("/bid", BODY), deadline)
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::OK);
                assert_eq!(r.body(), BODY);
            }
            assert_eq!(
                pool.stats.connects.get(),
                2,
                "{name}: no connection beyond the warm ones"
            );
            assert_eq!(pool.stats.reuses.get(), 200);
            assert_eq!(pool.stats.tls_failures.get(), 0);
        }
    });
    srv.shutdown_handle().trigger();
    srv.join().unwrap();
}

#[test]
fn a_timed_out_tls_call_closes_its_connection_and_the_next_call_succeeds() {
    let ca = TestCa::new("io-timeout");
    let srv = server(Some(&ca.server_cert("dsp", &["127.0.0.1"])));
    let roots = TlsRoots::load(Some(&ca.ca_file)).unwrap();
    let pool = tls_pool(srv.local_addr(), &roots, "127.0.0.1");
    run(async {
        assert_eq!(pool.prewarm(1).await, 1);
        for round in 0..3 {
            let slow = RequestParts::openrtb_post("/bid", b"slow");
            let deadline = Instant::now() + Duration::from_millis(20);
            let r = pool.call_parts(slow, deadline).await.map(drop);
            assert_eq!(r, Err(CallError::Timeout), "round {round}");
            // The cut-off read took the TLS layer's buffer: the connection is closed, not
            // drained, and the next call opens a new one.
            let deadline = Instant::now() + Duration::from_secs(2);
            let ok = pool.call_parts(RequestParts::openrtb_post("/bid", BODY), deadline);
            assert_eq!(ok.await.unwrap().body(), BODY, "round {round}");
        }
    });
    assert_eq!(pool.stats.drains.get(), 0);
    assert_eq!(pool.stats.timeout_closes.get(), 3);
    assert_eq!(pool.stats.connects.get(), 4);
    srv.shutdown_handle().trigger();
    srv.join().unwrap();
}

/// One call on a fresh pool; the error, and how long it took.
fn call_once(pool: &Upstream, deadline_ms: u64) -> (Result<(), CallError>, Duration) {
    let start = Instant::now();
    let r = run(pool.call_parts(
        RequestParts::openrtb_post("/bid", BODY),
        start + Duration::from_millis(deadline_ms),
    ))
    .map(drop);
    (r, start.elapsed())
}

#[test]
fn wrong_certificates_and_plain_servers_are_refused_as_tls_errors_in_time() {
    let ca = TestCa::new("io-trusted");
    let other = TestCa::new("io-other");
    let roots = TlsRoots::load(Some(&ca.ca_file)).unwrap();
    let other_ca = server(Some(&other.server_cert("dsp", &["localhost", "127.0.0.1"])));
    let wrong_name = server(Some(&ca.server_cert("dsp", &["dsp.elsewhere.test"])));
    let plain = server(None);
    for (what, srv) in [
        ("another CA", &other_ca),
        ("another name", &wrong_name),
        ("plain HTTP", &plain),
    ] {
        let pool = tls_pool(srv.local_addr(), &roots, "127.0.0.1");
        let (r, took) = call_once(&pool, 500);
        assert_eq!(r, Err(CallError::Tls), "{what}");
        assert!(took < Duration::from_millis(520), "{what}: took {took:?}");
        assert_eq!(pool.stats.tls_failures.get(), 1, "{what}");
        assert_eq!(pool.stats.connects.get(), 0, "{what}: no connection kept");
    }
    // The public roots alone do not trust the test CA.
    let public = TlsRoots::load(None).unwrap();
    let pool = tls_pool(wrong_name.local_addr(), &public, "dsp.elsewhere.test");
    assert_eq!(call_once(&pool, 500).0, Err(CallError::Tls));
    for srv in [other_ca, wrong_name, plain] {
        srv.shutdown_handle().trigger();
        srv.join().unwrap();
    }
}

#[test]
fn a_handshake_that_never_ends_is_a_timeout_at_the_call_deadline() {
    // A listener that accepts and never answers: the handshake hangs.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let roots = TlsRoots::load(None).unwrap();
    let pool = tls_pool(silent.local_addr().unwrap(), &roots, "127.0.0.1");
    let (r, took) = call_once(&pool, 50);
    assert_eq!(r, Err(CallError::Timeout));
    assert!(
        took >= Duration::from_millis(50) && took < Duration::from_millis(70),
        "returned after {took:?}"
    );
}

#[test]
fn bad_ca_files_are_errors_naming_the_file() {
    let dir = TestCa::new("io-files");
    let empty = dir.dir().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let e = TlsRoots::load(Some(&empty)).unwrap_err().to_string();
    assert!(
        e.contains("empty.pem") && e.contains("no certificate"),
        "{e}"
    );
    let missing = dir.dir().join("missing.pem");
    let e = TlsRoots::load(Some(&missing)).unwrap_err().to_string();
    assert!(e.contains("missing.pem"), "{e}");
}

/// Cold-pool handshakes, all at once: 64 concurrent calls on an empty TLS pool, each opening
/// its own connection. Passes in release builds (`cargo test --release`); in debug builds with
/// io_uring on both ends most of the 64 miss the 200 ms connect timeout, because debug-built
/// crypto makes each handshake slow and interleaved handshakes all finish late together (with
/// epoll on either end, `RTB_TLS_SERVER_DRIVER=epoll`, they finish one after another and pass).
/// Ignored because the debug suite is what CI runs; `tls_handshakes_cost_more_than_warm_calls`
/// gives the release figures.
#[test]
#[ignore = "passes in release builds only: debug-built TLS handshakes are too slow (see above)"]
fn concurrent_calls_on_a_cold_tls_pool_are_all_answered() {
    let ca = TestCa::new("io-concurrent");
    let srv = server(Some(&ca.server_cert("dsp", &["127.0.0.1"])));
    let roots = TlsRoots::load(Some(&ca.ca_file)).unwrap();
    let pool = tls_pool(srv.local_addr(), &roots, "127.0.0.1");
    let body = vec![b'x'; 600];
    let results = run(async {
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (pool, body) = (pool.clone(), body.clone());
            tasks.push(monoio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(1);
                let r = pool.call_parts(RequestParts::openrtb_post("/bid", &body), deadline);
                r.await.map(|c| c.body().len())
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await);
        }
        out
    });
    let failed: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
    assert!(
        failed.is_empty(),
        "{} of 64 failed: {:?}",
        failed.len(),
        failed.first()
    );
    srv.shutdown_handle().trigger();
    srv.join().unwrap();
}

/// Diagnostic, figures for BENCHMARKS.md ("TLS to DSPs"): 32 tasks, each making 500 calls of a
/// 3.5 KB body over one shared TLS pool; the first call of each opens a connection (32
/// concurrent handshakes), the rest reuse them. Prints the cold calls' worst latency and the
/// warm calls' percentiles; fails on any error, or when the warm calls' worst is not below the
/// cold calls' worst (the claim in BENCHMARKS.md: handshakes, not TLS IO, make the tail).
/// `PLAIN=1` runs the same over plain TCP. Run alone, in release:
/// `cargo test --release -p rtb-io --test tls tls_handshakes -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement: run alone in release, its figures go into BENCHMARKS.md"]
fn tls_handshakes_cost_more_than_warm_calls() {
    let ca = TestCa::new("io-warm");
    let plain = std::env::var("PLAIN").is_ok();
    let cert = ca.server_cert("dsp", &["127.0.0.1"]);
    let srv = server((!plain).then_some(&cert));
    let roots = TlsRoots::load(Some(&ca.ca_file)).unwrap();
    let pool = if plain {
        Upstream::with_tls(srv.local_addr(), "127.0.0.1", ClientConfig::default(), None)
    } else {
        tls_pool(srv.local_addr(), &roots, "127.0.0.1")
    };
    let body = vec![b'x'; 3500];
    let per_task = run(async {
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let (pool, body) = (pool.clone(), body.clone());
                monoio::spawn(async move {
                    let mut latencies = Vec::with_capacity(500);
                    for _ in 0..500 {
                        let start = Instant::now();
                        let deadline = start + Duration::from_millis(80);
                        let request = RequestParts::openrtb_post("/bid", &body);
                        pool.call_parts(request, deadline).await.unwrap();
                        latencies.push(start.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        let mut out = Vec::new();
        for task in tasks {
            out.push(task.await);
        }
        out
    });
    let cold = per_task.iter().map(|l| l[0]).max().unwrap();
    let mut warm: Vec<Duration> = per_task.iter().flat_map(|l| l[1..].to_vec()).collect();
    warm.sort();
    let at = |q: f64| warm[((warm.len() - 1) as f64 * q) as usize];
    eprintln!(
        "{}: cold calls (32 concurrent connects) worst {cold:?}; warm calls n={} p50 {:?} \
         p99 {:?} p99.9 {:?} max {:?}; connections opened {}",
        if plain { "plain" } else { "tls" },
        warm.len(),
        at(0.5),
        at(0.99),
        at(0.999),
        warm[warm.len() - 1],
        pool.stats.connects.get()
    );
    assert!(
        warm[warm.len() - 1] < cold || plain,
        "warm calls as slow as handshakes"
    );
    srv.shutdown_handle().trigger();
    srv.join().unwrap();
}
