//! DSP pools at fifty DSPs (issue 19) through the real exchange binary and a real `rtb-dsp`:
//! fifty DSPs arriving in one roster are each pre-warmed on every worker (a few connects at a
//! time, `--dsp-prewarm-connects-in-flight`), every auction reaches all fifty on those warm
//! connections without opening more, and once the pools have measured their traffic the
//! gauges show each pool sized down from its ceiling to the pre-warm count, its floor.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use test_support::{procfs, prom};

const DSPS: usize = 50;
const WORKERS: usize = 2;
const PREWARM: usize = 3;
/// How long sequential auctions (each calling all fifty DSPs) run.
const TRAFFIC: Duration = Duration::from_millis(1500);

/// The family's samples summed over its DSPs.
fn sum(metrics: &str, name: &str) -> f64 {
    let prefix = format!("{name}{{dsp=\"");
    prom::by_label(metrics, &prefix)
        .iter()
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn fifty_dsps_are_prewarmed_and_served_on_pools_within_their_targets() {
    let Some(dsp_bin) = dsp_binary("pools") else {
        return;
    };
    let flags = ["--latency", "fixed:0", "--bid-rate", "1"];
    let dsp = DspProcess::start(&dsp_bin, "many", 0, &flags).expect("rtb-dsp");
    let dir = common::ledger::temp_dir("pools");
    let path = dir.join("roster.json");
    let entries: Vec<String> = (0..DSPS)
        .map(|i| format!(r#"{{"name":"d{i}","url":"http://{}/bid"}}"#, dsp.addr))
        .collect();
    std::fs::write(&path, format!(r#"{{"dsps":[{}]}}"#, entries.join(","))).unwrap();
    let dsp_fds = procfs::fd_count(dsp.process.pid());
    let ex = Exchange::start(&[
        "--roster",
        path.to_str().unwrap(),
        "--workers",
        &WORKERS.to_string(),
        "--dsp-prewarm",
        &PREWARM.to_string(),
        "--dsp-prewarm-connects-in-flight",
        "2",
    ]);
    // The pre-warm is done when the DSP holds every warm connection (one fd each).
    let warm = DSPS * WORKERS * PREWARM;
    let start = Instant::now();
    while procfs::fd_count(dsp.process.pid()) < dsp_fds + warm
        && start.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(procfs::fd_count(dsp.process.pid()), dsp_fds + warm);
    // Traffic for longer than a sizing window (1 s), so every pool has sized itself.
    let mut auctions = 0;
    let traffic = Instant::now();
    while traffic.elapsed() < TRAFFIC {
        let body = format!(
            r#"{{"id":"p{auctions}","tmax":500,"imp":[{{"id":"1","banner":{{"w":300,"h":250}}}}],"site":{{"id":"s"}}}}"#
        );
        let r = ex.auction(body.as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
        auctions += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    let m = ex.metrics();
    let opened = sum(&m, "rtb_dsp_pool_connections_opened_total");
    assert_eq!(
        opened, warm as f64,
        "one request at a time needs no connection beyond the pre-warm"
    );
    assert_eq!(sum(&m, "rtb_dsp_calls_total"), (auctions * DSPS) as f64);
    for i in 0..DSPS {
        let label = format!("{{dsp=\"d{i}\"}}");
        let open = prom::value(&m, &format!("rtb_dsp_pool_connections_open{label}")).unwrap();
        let target = prom::value(&m, &format!("rtb_dsp_pool_connections_target{label}")).unwrap();
        assert!(open <= target, "d{i}: {open} open, target {target}");
        // One auction at a time wants a connection or two per worker; the pre-warm count is
        // the floor, and the 512-connection ceiling is long gone.
        assert_eq!(target, (WORKERS * PREWARM) as f64, "d{i}: target");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
