//! Overload (issue 14): the real `rtb-exchange`, one worker held to 0.4 CPU per 5 ms by a
//! cgroup CFS quota (so that the exchange, not the load generator, is what saturates), against
//! three real `rtb-dsp` with realistic latency (lognormal, p50 10 ms, p99 60 ms, 80% bids),
//! offered open loop about three times the auctions it can complete (18,750 requests a second
//! against about 6,250 auctions; BENCHMARKS.md, "Capacity re-measured"; until 2026-12-07 it
//! offered 13,200, three times a capacity measured before the read fix).
//!
//! Checked, over 4 s after 1 s of warm-up:
//! - every request sent gets an HTTP answer (200, or 204 for no bid or a shed), none is lost;
//! - by the exchange's own clock, which starts at the kernel's receipt of the request
//!   (`rtb_bid_request_duration_seconds`), at most 1% of the answers leave after the deadline;
//! - by this test's clock (send to answer, not corrected for late sends), the p99 of all
//!   answers is within the deadline + 5 ms;
//! - under 1% of the sends went late, so the load offered was the rate asked.
//!
//! Not checked, and printed instead: the p99.9, the maximum and the answers later than the
//! deadline plus 5 ms by the client's clock. Issue 14 asks for none; on this machine the
//! generator shares a core with the DSPs and the quota stalls the exchange up to 3 ms at a
//! time, and tens of answers a run still come later (BENCHMARKS.md, "Which clock").
//!
//! The generator is one monoio thread with one task per connection, each sending on its own
//! fixed schedule (open loop; a send due while the connection's previous request is still out
//! goes when it returns and is counted late).
//!
//! `#[ignore]`d in plain `cargo test`: scripts/test runs it with the soak, on `--profile ci`
//! binaries (`RTB_EXCHANGE_BIN`, `RTB_DSP_BIN`). Needs root and a cgroup `cpu` controller (v1
//! or v2): without them it skips with a message, a failure under `CI=true`.
//! `RTB_OVERLOAD_RATE` sets the offered rate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    cell::RefCell,
    path::{Path, PathBuf},
    process::Command,
    rc::Rc,
    time::{Duration, Instant},
};

use common::*;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};

/// Offered requests a second: three times what the exchange completes under the quota here.
const RATE_DEFAULT: f64 = 18_750.0;
/// Client connections. At 18,750 a second each sends every 59 ms, so a send falls due while
/// its connection still waits only for an answer over 59 ms: such sends are counted late and
/// must stay under 1%, so that the load offered is the rate asked. More connections cost the
/// exchange more per request: with 1,500 (rate x 80 ms), 1 run of 5 had a p99 of 88 ms
/// (BENCHMARKS.md, "Capacity re-measured").
const CONNECTIONS: usize = 1_100;
const WARMUP: Duration = Duration::from_secs(1);
const MEASURED: Duration = Duration::from_secs(4);
/// The exchange's deadline cap (its default), ms.
const DEADLINE_MS: u64 = 80;
/// What the p99 may exceed the deadline by, client-side, ms.
const SLACK_MS: u64 = 5;
/// The quota: 2 ms of CPU in every 5 ms period.
const PERIOD_US: u64 = 5_000;
const QUOTA_US: u64 = 2_000;
/// The realistic DSPs of the load harness's `overload` scenario.
const DSP_FLAGS: [&str; 6] = [
    "--latency",
    "lognormal:p50=10,p99=60",
    "--bid-rate",
    "0.8",
    "--workers",
    "1",
];

/// A cgroup with a CPU quota, removed (its processes killed) on drop.
struct Cgroup {
    path: PathBuf,
}

impl Cgroup {
    /// A new cgroup `name` under the cpu hierarchy with the quota set, or why not.
    fn create(name: &str) -> Result<Cgroup, String> {
        if test_support::procfs::effective_uid() != 0 {
            return Err("not root".into());
        }
        let v1 = Path::new("/sys/fs/cgroup/cpu");
        let v2 = Path::new("/sys/fs/cgroup");
        let (path, files) = if v1.join("cpu.cfs_quota_us").exists() {
            let period = ("cpu.cfs_period_us", PERIOD_US.to_string());
            let quota = ("cpu.cfs_quota_us", QUOTA_US.to_string());
            (v1.join(name), vec![period, quota])
        } else if std::fs::read_to_string(v2.join("cgroup.subtree_control"))
            .is_ok_and(|s| s.split_whitespace().any(|c| c == "cpu"))
        {
            (
                v2.join(name),
                vec![("cpu.max", format!("{QUOTA_US} {PERIOD_US}"))],
            )
        } else {
            return Err("no cgroup v1 cpu hierarchy and no cgroup v2 cpu controller".into());
        };
        std::fs::create_dir(&path).map_err(|e| format!("mkdir {}: {e}", path.display()))?;
        let cgroup = Cgroup { path };
        for (file, value) in files {
            std::fs::write(cgroup.path.join(file), value).map_err(|e| format!("{file}: {e}"))?;
        }
        Ok(cgroup)
    }

    /// `cmd` started inside the cgroup: a shell moves itself in, then execs the command.
    fn wrap(&self, cmd: &Command) -> Command {
        let mut wrapped = Command::new("sh");
        wrapped
            .args(["-c", r#"echo $$ > "$0/cgroup.procs" && exec "$@""#])
            .arg(&self.path)
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (key, value) in cmd.get_envs() {
            match value {
                Some(v) => wrapped.env(key, v),
                None => wrapped.env_remove(key),
            };
        }
        wrapped
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            let procs = std::fs::read_to_string(self.path.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
            if std::fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The exchange, one worker pinned to core 0, started inside `cgroup`.
fn start_exchange(cgroup: &Cgroup) -> (Process, std::net::SocketAddr, std::net::SocketAddr) {
    let mut cmd = Exchange::command();
    cmd.args(["--bind", "127.0.0.1", "--port", "0", "--debug-port", "0"])
        .args(["--workers", "1", "--shutdown-grace-s", "2"])
        .env("RUST_LOG", "warn");
    let (process, addrs) = Process::start(
        cgroup.wrap(&cmd),
        "rtb-exchange",
        &["listening on ", "debug listening on "],
    )
    .unwrap();
    (
        process,
        addrs[0].parse().unwrap(),
        addrs[1].parse().unwrap(),
    )
}

/// What the generator saw in the measured window.
#[derive(Default)]
struct Tally {
    sent: u64,
    answered: u64,
    by_status: [u64; 3],
    late_sends: u64,
    errors: u64,
    latencies_us: Vec<u64>,
}

/// Reads one response (head, then `content-length` bytes of body) into `buf`; its status.
async fn read_response(stream: &mut monoio::net::TcpStream, buf: &mut Vec<u8>) -> Option<u16> {
    buf.clear();
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut response = httparse::Response::new(&mut headers);
        if let Ok(httparse::Status::Complete(head)) = response.parse(buf) {
            let length = response.headers.iter().find_map(|h| {
                let named = h.name.eq_ignore_ascii_case("content-length");
                named.then(|| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())?
            });
            if buf.len() >= head + length.unwrap_or(0) {
                return response.code;
            }
        }
        let (read, spare) = stream.read(Vec::with_capacity(8192)).await;
        match read {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&spare[..n]),
        }
    }
}

/// One connection: a request every `interval`, from its own offset, until `end`; answers
/// sent from `measure_from` on are tallied.
async fn connection(
    addr: std::net::SocketAddr,
    first_send: Instant,
    interval: Duration,
    measure_from: Instant,
    end: Instant,
    tally: Rc<RefCell<Tally>>,
) {
    let Ok(mut stream) = monoio::net::TcpStream::connect(addr).await else {
        tally.borrow_mut().errors += 1;
        return;
    };
    let _ = stream.set_nodelay(true);
    let body = bid_request("overload", 2, 500, 0.1);
    let mut raw = format!(
        "POST /openrtb2/auction HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    let mut buf = Vec::with_capacity(8192);
    let mut next = first_send;
    while next < end {
        let now = Instant::now();
        if now < next {
            monoio::time::sleep(next - now).await;
        }
        let measured = next >= measure_from;
        let late = Instant::now() > next + interval;
        next += interval;
        let sent_at = Instant::now();
        let (written, back) = stream.write_all(raw).await;
        raw = back;
        let status = match written {
            Ok(_) => read_response(&mut stream, &mut buf).await,
            Err(_) => None,
        };
        let mut t = tally.borrow_mut();
        if !measured {
            if status.is_none() {
                t.errors += 1;
                return;
            }
            continue;
        }
        t.sent += 1;
        t.late_sends += u64::from(late);
        let Some(status) = status else {
            t.errors += 1;
            return;
        };
        t.answered += 1;
        t.latencies_us.push(sent_at.elapsed().as_micros() as u64);
        t.by_status[match status {
            200 => 0,
            204 => 1,
            _ => 2,
        }] += 1;
    }
}

/// Offers `rate` requests a second over [`CONNECTIONS`] connections for the warm-up and the
/// measured window.
fn open_loop(addr: std::net::SocketAddr, rate: f64) -> Tally {
    let mut runtime = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let tally = Rc::new(RefCell::new(Tally::default()));
        let interval = Duration::from_secs_f64(CONNECTIONS as f64 / rate);
        // Time to connect every connection before the first send.
        let start = Instant::now() + Duration::from_millis(500);
        let measure_from = start + WARMUP;
        let end = measure_from + MEASURED;
        let tasks: Vec<_> = (0..CONNECTIONS)
            .map(|c| {
                let offset = interval.mul_f64(c as f64 / CONNECTIONS as f64);
                let tally = tally.clone();
                monoio::spawn(connection(
                    addr,
                    start + offset,
                    interval,
                    measure_from,
                    end,
                    tally,
                ))
            })
            .collect();
        for task in tasks {
            task.await;
        }
        Rc::try_unwrap(tally).ok().unwrap().into_inner()
    })
}

fn percentile_us(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() as f64 * p / 100.0).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[test]
#[ignore = "timing-sensitive: scripts/test runs it on optimized binaries (RTB_EXCHANGE_BIN, RTB_DSP_BIN) with --ignored"]
fn at_three_times_capacity_every_request_is_answered_and_the_p99_holds_the_deadline() {
    let test = "at_three_times_capacity_every_request_is_answered_and_the_p99_holds_the_deadline";
    let Some(bin) = dsp_binary(test) else {
        return;
    };
    let cgroup = match Cgroup::create(&format!("rtb-overload-{}", std::process::id())) {
        Ok(c) => c,
        Err(why) => return test_support::ci::missing(test, &why).unwrap_or(()),
    };
    let (exchange, addr, debug) = start_exchange(&cgroup);
    let dsps: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|name| {
            let dsp = DspProcess::start(&bin, name, 0, &DSP_FLAGS).expect("start rtb-dsp");
            let body = format!(r#"{{"name":"{name}","base_url":"http://{}"}}"#, dsp.addr);
            assert_eq!(
                request(addr, "POST", "/dsp", &[], body.as_bytes()).status,
                201
            );
            dsp
        })
        .collect();
    let rate = std::env::var("RTB_OVERLOAD_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(RATE_DEFAULT);
    let metrics = || request(debug, "GET", "/metrics", &[], b"").text();
    let before = metrics();
    let tally = open_loop(addr, rate);
    let after = metrics();
    let delta = |series: &str| sample(&after, series) - sample(&before, series);
    let answers = delta("rtb_bid_request_duration_seconds_count");
    let late_answers = answers - delta(r#"rtb_bid_request_duration_seconds_bucket{le="0.08"}"#);
    let limit_bucket = format!(
        "rtb_bid_request_duration_seconds_bucket{{le=\"{}\"}}",
        (DEADLINE_MS + SLACK_MS) as f64 / 1000.0
    );
    let over_limit_by_exchange = answers - delta(&limit_bucket);
    let auctions = delta(r#"rtb_auctions_total{outcome="won"}"#)
        + delta(r#"rtb_auctions_total{outcome="no_bid"}"#);
    let mut latencies = tally.latencies_us.clone();
    latencies.sort_unstable();
    let limit_us = (DEADLINE_MS + SLACK_MS) * 1000;
    let over_limit = latencies.iter().filter(|&&us| us > limit_us).count();
    let p = |q| percentile_us(&latencies, q) as f64 / 1000.0;
    let seconds = (WARMUP + MEASURED).as_secs_f64();
    eprintln!(
        "overload: offered {rate:.0}/s on {} connections; measured {} s: sent {}, answered {} (200: {}, 204: {}, other: {}), late sends {}, errors {}; client p50 {:.1} ms, p99 {:.1}, p99.9 {:.1}, max {:.1}, {over_limit} answers after {} ms; the exchange: {answers:.0} answers (warm-up included), {late_answers:.0} after {DEADLINE_MS} ms by its clock, {over_limit_by_exchange:.0} after {} ms, {:.0} auctions/s after a DSP round",
        CONNECTIONS,
        MEASURED.as_secs(), tally.sent, tally.answered, tally.by_status[0], tally.by_status[1],
        tally.by_status[2], tally.late_sends, tally.errors, p(50.0), p(99.0), p(99.9),
        p(100.0), DEADLINE_MS + SLACK_MS, DEADLINE_MS + SLACK_MS, auctions / seconds,
    );
    assert_eq!(
        tally.errors, 0,
        "requests without an answer or connections lost"
    );
    assert_eq!(tally.answered, tally.sent);
    assert!(
        tally.late_sends * 100 <= tally.sent,
        "{} of {} sends late: the load offered fell short of the rate",
        tally.late_sends,
        tally.sent
    );
    assert_eq!(tally.by_status[2], 0, "answers other than 200 and 204");
    assert!(
        answers > 0.0 && late_answers <= answers * 0.01,
        "exchange-side late answers"
    );
    assert!(
        p(99.0) <= (DEADLINE_MS + SLACK_MS) as f64,
        "client p99 {:.1} ms",
        p(99.0)
    );
    drop(dsps);
    drop(exchange);
}
