//! The time a request waits in the kernel before the exchange reads it counts against its
//! deadline (issue 14, `--kernel-arrival`, on by default): the real `rtb-exchange` is stopped
//! (SIGSTOP) while bid requests arrive, so they wait in the accept queue and the socket
//! buffers past the 80 ms deadline, then resumed (SIGCONT).
//!
//! With kernel arrival stamps the exchange sees how old they are and answers each with a shed
//! (204, `reason="overload"`) without calling a DSP: the client had stopped waiting. Without
//! them it dates each request from its read and runs a full auction for a client that is gone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{process::Command, thread, time::Duration};

use common::*;

/// Requests sent while the exchange is stopped.
const STALE: usize = 4;
/// How long the exchange stays stopped: past the 80 ms deadline.
const STOPPED_FOR: Duration = Duration::from_millis(200);

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([name, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {name} {pid}");
}

/// Waits until every thread of `pid` is stopped. `kill` returns once the signal is sent, not
/// once it has taken effect: on a loaded machine a worker could still read the requests sent
/// next (a clean-clone CI run saw all four served as fresh auctions), and the test would not
/// be testing what it says.
fn wait_until_stopped(pid: u32) {
    let give_up = std::time::Instant::now() + Duration::from_secs(5);
    while !test_support::procfs::all_threads_stopped(pid) {
        assert!(
            std::time::Instant::now() < give_up,
            "exchange {pid} did not stop"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// What became of requests sent while the exchange was stopped.
struct Outcome {
    statuses: Vec<u16>,
    dsp_calls: usize,
    shed_overload: f64,
    kernel_waits_over_deadline: f64,
}

fn requests_sent_while_stopped(kernel_arrival: &str) -> Outcome {
    let dsp = FakeDsp::start(Behaviour::bid(2.0, "seat-a"));
    // The lag shed is set out of reach: the stop also makes the worker's loop lag, and this
    // test is about the requests' own wait. The wait shed is raised to 100 ms, still far below
    // the 200 ms stop, so that debug-build auctions queued behind each other after the stop
    // are not shed for that wait alone.
    let ex = Exchange::start(&[
        "--kernel-arrival",
        kernel_arrival,
        "--shed-lag-ms",
        "10000",
        "--shed-queue-wait-ms",
        "100",
    ]);
    assert_eq!(ex.onboard("a", dsp.addr).status, 201);
    // Warm: the DSP pool has a connection, the kernel stamps received segments.
    for id in 0..3 {
        let body = bid_request(&format!("warm-{id}"), 2, 500, 0.1);
        assert_eq!(ex.auction(&body).status, 200);
    }
    let calls_before = dsp.bid_requests().len();
    let shed_before = sample(
        &ex.metrics(),
        r#"rtb_auctions_shed_total{reason="overload"}"#,
    );
    signal(ex.pid(), "-STOP");
    wait_until_stopped(ex.pid());
    let sent: Vec<_> = (0..STALE)
        .map(|id| {
            let body = bid_request(&format!("stale-{id}"), 2, 500, 0.1);
            send(ex.addr, "POST", "/openrtb2/auction", &[], &body)
        })
        .collect();
    thread::sleep(STOPPED_FOR);
    signal(ex.pid(), "-CONT");
    let statuses = sent.into_iter().map(|s| read_reply(s).status).collect();
    // A request sent now is served as usual.
    let fresh = ex.auction(&bid_request("fresh", 2, 500, 0.1));
    assert_eq!(fresh.status, 200, "a fresh request after the stop");
    let page = ex.metrics();
    Outcome {
        statuses,
        // The fresh auction's call is not one of the stale requests'.
        dsp_calls: dsp.bid_requests().len() - calls_before - 1,
        shed_overload: sample(&page, r#"rtb_auctions_shed_total{reason="overload"}"#) - shed_before,
        kernel_waits_over_deadline: sample(&page, "rtb_request_kernel_wait_seconds_count")
            - sample(
                &page,
                r#"rtb_request_kernel_wait_seconds_bucket{le="0.08"}"#,
            ),
    }
}

#[test]
fn requests_that_waited_past_their_deadline_in_the_kernel_are_shed_without_a_dsp_call() {
    let stamped = requests_sent_while_stopped("true");
    assert_eq!(stamped.statuses, vec![204; STALE]);
    assert_eq!(stamped.dsp_calls, 0);
    assert_eq!(stamped.shed_overload, STALE as f64);
    assert_eq!(stamped.kernel_waits_over_deadline, STALE as f64);
}

#[test]
fn without_kernel_stamps_the_same_requests_run_whole_auctions() {
    let unstamped = requests_sent_while_stopped("false");
    assert_eq!(unstamped.statuses, vec![200; STALE]);
    assert_eq!(unstamped.dsp_calls, STALE);
    assert_eq!(unstamped.shed_overload, 0.0);
    assert_eq!(unstamped.kernel_waits_over_deadline, 0.0);
}
