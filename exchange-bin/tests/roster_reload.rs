//! Roster reload under load (issue 15: "edit the file under load; no request fails, the change
//! is visible on every worker within a second"), through the real exchange binary and real
//! `rtb-dsp` processes. The exchange runs two workers with a roster holding DSP `a`; client
//! threads drive auctions on keep-alive connections split evenly over both workers while the
//! roster is swapped the way a Kubernetes ConfigMap volume is (a new version directory, the
//! `..data` symlink replaced by a rename): first `b` joins, then `a` leaves.
//!
//! How "every worker" is known: `--connections-per-worker 3` and six connections that each got
//! an answer leave each worker exactly three (a connection over a worker's cap is closed at
//! accept and opened again). `b` bids more than `a`, so an answer won by `b` on a connection
//! shows that its worker had `b`; `a`'s own request counter shows when every worker stopped
//! calling it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    io::Write,
    net::{SocketAddr, TcpStream},
    os::unix::fs::symlink,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use common::*;
use test_support::{http, prom};

const WORKERS: usize = 2;
/// `--connections-per-worker`: with `WORKERS` times this many connections open and answered,
/// each worker serves exactly this many.
const PER_WORKER: usize = 3;
const CONNECTIONS: usize = WORKERS * PER_WORKER;
/// The issue's bound: a roster change is in force on every worker within this of the write.
const VISIBLE_WITHIN: Duration = Duration::from_secs(1);
/// Load before the first change and after each one: longer than the bound, so each bound is
/// judged on answers that come after it.
const PHASE: Duration = Duration::from_millis(1600);
/// Connection attempts allowed while splitting the connections over the workers.
const CONNECT_ATTEMPTS_MAX: usize = 200;

/// A directory laid out as the kubelet lays out a ConfigMap volume: `roster.json ->
/// ..data/roster.json` and `..data -> ..<version>`. An update writes a new version directory,
/// renames a new symlink over `..data` and removes the old version, as the kubelet does.
struct ConfigMapVolume {
    dir: PathBuf,
    version: u32,
}

impl ConfigMapVolume {
    fn new(dir: PathBuf, roster: &str) -> ConfigMapVolume {
        let mut volume = ConfigMapVolume { dir, version: 0 };
        volume.write_version(roster);
        symlink("..data/roster.json", volume.path()).unwrap();
        volume
    }

    /// The path the exchange is given (a symlink through `..data`).
    fn path(&self) -> PathBuf {
        self.dir.join("roster.json")
    }

    fn update(&mut self, roster: &str) {
        let old = self.version_dir();
        self.write_version(roster);
        std::fs::remove_dir_all(old).unwrap();
    }

    fn version_dir(&self) -> PathBuf {
        self.dir
            .join(format!("..2026_12_06_00_00_00.{:04}", self.version))
    }

    fn write_version(&mut self, roster: &str) {
        self.version += 1;
        let version = self.version_dir();
        std::fs::create_dir(&version).unwrap();
        std::fs::write(version.join("roster.json"), roster).unwrap();
        let next = self.dir.join("..data_tmp");
        symlink(version.file_name().unwrap(), &next).unwrap();
        std::fs::rename(&next, self.dir.join("..data")).unwrap();
    }
}

fn roster(dsps: &[(&str, SocketAddr)]) -> String {
    let entries: Vec<String> = dsps
        .iter()
        .map(|(name, addr)| format!(r#"{{"name":"{name}","url":"http://{addr}/bid"}}"#))
        .collect();
    format!(r#"{{"dsps":[{}]}}"#, entries.join(","))
}

fn dsp_requests(dsp: SocketAddr) -> f64 {
    let page = request(dsp, "GET", "/metrics", &[], b"").text();
    prom::first(&page, "rtb_dspsim_requests_total").unwrap_or(0.0)
}

/// One keep-alive auction request (no `connection: close`).
fn auction_request() -> Vec<u8> {
    let body = r#"{"id":"reload","tmax":200,"imp":[{"id":"1","banner":{"w":300,"h":250}}],"site":{"id":"s"}}"#;
    let mut raw = format!(
        "POST /openrtb2/auction HTTP/1.1\r\nhost: exchange\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body.as_bytes());
    raw
}

/// An answer as a client saw it: when (since the load started), its status, the winning seat.
struct Answer {
    at: Duration,
    status: u16,
    seat: Option<String>,
}

/// Sends one request on `conn` and reads its answer; `Err` says what went wrong.
fn exchange_one(conn: &mut TcpStream, buf: &mut Vec<u8>, raw: &[u8]) -> Result<Answer, String> {
    conn.write_all(raw).map_err(|e| format!("write: {e}"))?;
    let reply = http::read_response(conn, buf).ok_or("no answer (closed or timed out)")?;
    let seat = (reply.status == 200).then(|| {
        let seat = &reply.json()["seatbid"][0]["seat"];
        seat.as_str().unwrap_or_default().to_string()
    });
    Ok(Answer {
        at: Duration::ZERO,
        status: reply.status,
        seat,
    })
}

/// `CONNECTIONS` keep-alive connections, each answered once (so accepted by a worker under its
/// cap; one answered request each), and how many connections it took.
fn connect_evenly(addr: SocketAddr, raw: &[u8]) -> (Vec<TcpStream>, usize) {
    let mut open = Vec::new();
    for attempt in 1..=CONNECT_ATTEMPTS_MAX {
        let mut conn = http::connect(addr);
        if let Ok(answer) = exchange_one(&mut conn, &mut Vec::new(), raw) {
            assert!(
                matches!(answer.status, 200 | 204),
                "setup: {}",
                answer.status
            );
            open.push(conn);
            if open.len() == CONNECTIONS {
                return (open, attempt);
            }
        }
    }
    panic!("only {} connections accepted", open.len());
}

/// One client thread per connection, sending the next request as soon as the last is answered,
/// until `stop`; a thread ends with the first failure.
fn spawn_clients(
    conns: Vec<TcpStream>,
    start: Instant,
    stop: &Arc<AtomicBool>,
) -> Vec<JoinHandle<Result<Vec<Answer>, String>>> {
    conns
        .into_iter()
        .map(|mut conn| {
            let stop = stop.clone();
            thread::spawn(move || {
                let (raw, mut buf, mut answers) = (auction_request(), Vec::new(), Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let mut answer = exchange_one(&mut conn, &mut buf, &raw)
                        .map_err(|e| format!("after {} answers: {e}", answers.len()))?;
                    answer.at = start.elapsed();
                    answers.push(answer);
                }
                Ok(answers)
            })
        })
        .collect()
}

/// When the roster changed (since the load started), and what `a` and `b` had been sent.
struct Timeline {
    added: Duration,
    removed: Duration,
    b_before_added: f64,
    /// How long after its removal `a`'s request count last grew (sampled every
    /// `SAMPLE_EVERY` until the bound).
    a_last_called: Duration,
    a_at_bound: f64,
    a_at_end: f64,
}

const SAMPLE_EVERY: Duration = Duration::from_millis(20);

/// Samples `dsp`'s request count until `until` (since `start`): the last time it grew, and
/// the count then.
fn last_growth(dsp: SocketAddr, start: Instant, until: Duration) -> (Duration, f64) {
    let (mut last, mut count) = (start.elapsed(), dsp_requests(dsp));
    while start.elapsed() < until {
        thread::sleep(SAMPLE_EVERY.min(until.saturating_sub(start.elapsed())));
        let now = dsp_requests(dsp);
        if now != count {
            (last, count) = (start.elapsed(), now);
        }
    }
    (last, count)
}

/// Lets the load run, adds `b`, lets it run, removes `a` and follows its request count past
/// the bound, then lets the load run to the end.
fn swap_rosters(
    volume: &mut ConfigMapVolume,
    start: Instant,
    a: SocketAddr,
    b: SocketAddr,
) -> Timeline {
    thread::sleep(PHASE);
    let b_before_added = dsp_requests(b);
    volume.update(&roster(&[("a", a), ("b", b)]));
    let added = start.elapsed();
    thread::sleep(PHASE);
    volume.update(&roster(&[("b", b)]));
    let removed = start.elapsed();
    let (a_last_seen, a_at_bound) = last_growth(a, start, removed + VISIBLE_WITHIN);
    thread::sleep(PHASE - VISIBLE_WITHIN);
    Timeline {
        added,
        removed,
        b_before_added,
        a_last_called: a_last_seen.saturating_sub(removed),
        a_at_bound,
        a_at_end: dsp_requests(a),
    }
}

/// What one connection saw: `a` winning before `b` was added, `b` winning within the bound
/// after it, answers until the end, and only 200 and 204. (Once `b` is in, `a` wins nothing:
/// its removal shows in its own request count, `Timeline::a_last_called`.)
fn check_connection(i: usize, answers: &[Answer], t: &Timeline) {
    let won_by = |seat: &'static str| {
        answers
            .iter()
            .filter(move |x| x.seat.as_deref() == Some(seat))
    };
    assert!(
        answers.iter().all(|x| matches!(x.status, 200 | 204)),
        "connection {i}: an answer other than 200/204"
    );
    assert!(
        won_by("a").any(|x| x.at < t.added),
        "connection {i}: no auction won by a before b was added"
    );
    let first_b = won_by("b").map(|x| x.at).min();
    let first_b = first_b.unwrap_or_else(|| panic!("connection {i}: b never won"));
    assert!(
        first_b > t.added,
        "connection {i}: b won before it was added"
    );
    let b_delay = first_b - t.added;
    assert!(
        b_delay <= VISIBLE_WITHIN,
        "connection {i}: b first won {b_delay:?} after it was added"
    );
    let after_bound = answers.iter().filter(|x| x.at > t.removed + VISIBLE_WITHIN);
    assert!(
        after_bound.count() > 0,
        "connection {i}: no answer after the last bound"
    );
    eprintln!(
        "connection {i}: {} answers, b first won {b_delay:?} after its addition",
        answers.len()
    );
}

#[test]
fn a_roster_swapped_under_load_reaches_every_worker_within_a_second_failing_no_request() {
    let Some(dsp_bin) = dsp_binary("roster_reload") else {
        return;
    };
    // b outbids a: an auction both answer is won by b.
    let start_dsp = |name: &str, price: &str| {
        let flags = ["--latency", "fixed:0", "--bid-rate", "1", "--price", price];
        DspProcess::start(&dsp_bin, name, 0, &flags).expect("rtb-dsp")
    };
    let (a, b) = (start_dsp("a", "fixed:1"), start_dsp("b", "fixed:5"));
    let dir = common::ledger::temp_dir("roster-reload");
    let mut volume = ConfigMapVolume::new(dir.clone(), &roster(&[("a", a.addr)]));
    let path = volume.path();
    let per_worker = PER_WORKER.to_string();
    let workers = WORKERS.to_string();
    let ex = Exchange::start(&[
        "--roster",
        path.to_str().unwrap(),
        "--workers",
        &workers,
        "--connections-per-worker",
        &per_worker,
        "--shed-lag-ms",
        "1000",
        "--shed-queue-wait-ms",
        "1000",
    ]);
    let (conns, attempts) = connect_evenly(ex.addr, &auction_request());
    eprintln!("{CONNECTIONS} connections open, {PER_WORKER} per worker, in {attempts} attempts");
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let clients = spawn_clients(conns, start, &stop);
    let timeline = swap_rosters(&mut volume, start, a.addr, b.addr);
    stop.store(true, Ordering::Relaxed);
    let mut answered = CONNECTIONS;
    for (i, client) in clients.into_iter().enumerate() {
        let answers = client.join().unwrap();
        let answers = answers.unwrap_or_else(|e| panic!("connection {i} failed {e}"));
        check_connection(i, &answers, &timeline);
        answered += answers.len();
    }
    let seconds = start.elapsed().as_secs_f64();
    eprintln!("{answered} auctions in {seconds:.1} s on {CONNECTIONS} connections");
    assert_eq!(
        timeline.b_before_added, 0.0,
        "b was called before it was added"
    );
    assert!(timeline.a_at_bound > 0.0);
    eprintln!(
        "a last called {:?} after its removal (sampled every {SAMPLE_EVERY:?})",
        timeline.a_last_called
    );
    assert_eq!(
        timeline.a_at_end, timeline.a_at_bound,
        "a was still called more than {VISIBLE_WITHIN:?} after its removal"
    );
    let page = ex.metrics();
    let by_status = prom::by_label(&page, "rtb_requests_total{route=\"auction\",status=\"");
    let ok: f64 = by_status
        .iter()
        .filter(|(status, _)| matches!(status.as_str(), "200" | "204"))
        .map(|(_, n)| n)
        .sum();
    let all: f64 = by_status.iter().map(|(_, n)| n).sum();
    assert_eq!(
        (ok, all),
        (answered as f64, answered as f64),
        "the exchange answered exactly the clients' requests, all 200 or 204: {by_status:?}"
    );
    let loaded = prom::sample(&page, "rtb_roster_reloads_total{result=\"loaded\"}");
    assert_eq!(loaded, 3.0, "the first roster and two swaps");
    let _ = std::fs::remove_dir_all(&dir);
}
