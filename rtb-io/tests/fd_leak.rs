//! Whole-lifecycle fd accounting for the server, alone in its binary so no other test opens
//! sockets meanwhile: accept, keep-alive, limit rejections, idle connections cancelled at
//! shutdown and the cancelled accept (monoio #318 leaks an fd when an accept is dropped; we
//! cancel instead) must all give back their fds.
#![allow(clippy::unwrap_used)]

use std::{io::Write, thread, time::Duration};

use http::StatusCode;
use rtb_io::{
    driver::driver_from_env, Handler, Request, Response, Server, ServerConfig, WorkerCtx,
};
use test_support::{
    http::{closed_by_peer, connect, read_response, roundtrip},
    procfs::open_fds,
};

struct Ok200;

impl Handler for Ok200 {
    async fn handle(&self, req: Request, _ctx: &WorkerCtx) -> Response {
        Response::with_body(StatusCode::OK, "text/plain", req.body)
    }
}

#[test]
fn server_lifecycle_leaks_no_fd() {
    let before = open_fds();
    let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    config.workers = 2;
    config.pin_cores = false;
    config.driver = driver_from_env();
    let server = Server::start(config, |_ctx: &WorkerCtx| Ok200).unwrap();
    let addr = server.local_addr();
    let mut idle = Vec::new();
    for i in 0..20 {
        let mut s = connect(addr);
        let mut buf = Vec::new();
        for _ in 0..3 {
            s.write_all(b"POST / HTTP/1.1\r\ncontent-length: 2\r\n\r\nok")
                .unwrap();
            assert_eq!(read_response(&mut s, &mut buf).unwrap().status, 200);
        }
        if i % 2 == 0 {
            idle.push(s);
        }
    }
    for _ in 0..5 {
        assert_eq!(
            roundtrip(addr, b"GET / HTTP/9.9\r\n\r\n").unwrap().status,
            505
        );
    }
    server.shutdown_handle().trigger();
    server.join().unwrap();
    for mut s in idle {
        assert!(closed_by_peer(&mut s, Duration::from_secs(2)));
    }
    // io_uring closes asynchronously; give the kernel a moment.
    let mut after = open_fds();
    for _ in 0..100 {
        if after <= before {
            break;
        }
        thread::sleep(Duration::from_millis(10));
        after = open_fds();
    }
    assert!(after <= before, "fds before {before}, after {after}");
}
