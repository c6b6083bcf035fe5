//! The roster file (issue 15) through the real exchange binary and real `rtb-dsp` processes:
//! each DSP receives only the requests its policy admits (media, country), a request no DSP
//! admits is answered 204 at once and counted, and a roster rewritten the way a ConfigMap is
//! (a new file renamed over the path) reaches every worker within a second while requests
//! keep flowing, none failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    net::SocketAddr,
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use common::*;
use test_support::prom;

fn body(id: usize, media: &str, country: &str) -> Vec<u8> {
    let imp = match media {
        "video" => r#""video":{"mimes":["video/mp4"],"w":640,"h":360}"#,
        _ => r#""banner":{"w":300,"h":250}"#,
    };
    format!(
        r#"{{"id":"r-{id}","tmax":200,"imp":[{{"id":"1",{imp}}}],"site":{{"id":"s"}},"device":{{"geo":{{"country":"{country}"}}}}}}"#
    )
    .into_bytes()
}

fn requests_at(dsp: SocketAddr) -> f64 {
    let page = request(dsp, "GET", "/metrics", &[], b"").text();
    prom::first(&page, "rtb_dspsim_requests_total").unwrap_or(0.0)
}

/// Writes `json` as the roster the way a ConfigMap update does: a new file renamed over it.
fn write_roster(path: &Path, json: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, json).unwrap();
    std::fs::rename(&next, path).unwrap();
}

fn entry(name: &str, dsp: SocketAddr, policy: &str) -> String {
    format!(r#"{{"name":"{name}","url":"http://{dsp}/bid"{policy}}}"#)
}

#[test]
fn dsps_get_what_their_policy_admits_and_a_reload_reaches_every_worker() {
    let Some(dsp_bin) = dsp_binary("roster") else {
        return;
    };
    let flags = ["--latency", "fixed:0", "--bid-rate", "1"];
    let start = |name: &str| DspProcess::start(&dsp_bin, name, 0, &flags).expect("rtb-dsp");
    let (video, canada, all) = (start("video"), start("canada"), start("all"));
    let dir = common::ledger::temp_dir("roster");
    let path = dir.join("roster.json");
    let video_e = entry("video", video.addr, r#","media":["video"]"#);
    let canada_e = entry("canada", canada.addr, r#","countries":["CAN"]"#);
    let all_e = entry("all", all.addr, "");
    write_roster(
        &path,
        &format!(r#"{{"dsps":[{video_e},{canada_e},{all_e}]}}"#),
    );
    let roster = path.to_str().unwrap();
    let ex = Exchange::start(&[
        "--roster",
        roster,
        "--roster-poll-ms",
        "50",
        "--workers",
        "2",
        "--shed-lag-ms",
        "1000",
        "--shed-queue-wait-ms",
        "1000",
    ]);
    for id in 0..10 {
        let r = ex.auction(&body(id, "banner", "USA"));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    for id in 10..15 {
        let r = ex.auction(&body(id, "video", "CAN"));
        assert!(matches!(r.status, 200 | 204), "{}", r.text());
    }
    assert_eq!(
        requests_at(video.addr),
        5.0,
        "video-only: the video requests"
    );
    assert_eq!(
        requests_at(canada.addr),
        5.0,
        "CAN-only: the Canadian requests"
    );
    assert_eq!(requests_at(all.addr), 15.0, "no filter: every request");

    // Requests keep flowing while `all` leaves the roster; none may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let addr = ex.addr;
    let load = {
        let (stop, sent) = (stop.clone(), sent.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let n = sent.fetch_add(1, Ordering::Relaxed);
                let r = request(
                    addr,
                    "POST",
                    "/openrtb2/auction",
                    &[],
                    &body(n, "video", "CAN"),
                );
                assert!(matches!(r.status, 200 | 204), "during reload: {}", r.text());
            }
        })
    };
    thread::sleep(Duration::from_millis(100));
    write_roster(&path, &format!(r#"{{"dsps":[{video_e},{canada_e}]}}"#));
    let reloaded = Instant::now();
    // Visible on both workers within a second: a banner-only US request then matches no DSP.
    let mut shed = false;
    while reloaded.elapsed() < Duration::from_secs(1) {
        let r = ex.auction(&body(99, "banner", "USA"));
        if r.status == 204 {
            shed = true;
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    load.join().expect("no request failed during the reload");
    assert!(shed, "the new roster was not applied within a second");
    assert!(sent.load(Ordering::Relaxed) > 0);
    let all_before = requests_at(all.addr);
    for id in 100..110 {
        assert_eq!(ex.auction(&body(id, "banner", "USA")).status, 204);
    }
    assert_eq!(
        requests_at(all.addr),
        all_before,
        "a removed DSP gets nothing"
    );
    let page = ex.metrics();
    let unmatched = prom::sample(&page, "rtb_auctions_shed_total{reason=\"no_dsp_matched\"}");
    assert!(unmatched >= 10.0, "{page}");
    assert_eq!(
        prom::sample(&page, "rtb_roster_reloads_total{result=\"loaded\"}"),
        2.0
    );
    assert_eq!(prom::sample(&page, "rtb_roster_dsps"), 2.0);
    // Each refusal counted for its DSP and reason (the 10 + 1 US banner requests, at least).
    let skipped = |dsp: &str, reason: &str| {
        let series = format!("rtb_dsp_policy_skipped_total{{dsp=\"{dsp}\",reason=\"{reason}\"}}");
        prom::sample(&page, &series)
    };
    assert!(skipped("video", "media") >= 11.0, "{page}");
    assert!(skipped("canada", "country") >= 11.0, "{page}");
    assert_eq!(skipped("all", "media"), 0.0, "{page}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_roster_that_does_not_load_stops_the_start() {
    let dir = common::ledger::temp_dir("roster-bad");
    let path = dir.join("roster.json");
    std::fs::write(
        &path,
        r#"{"dsps":[{"name":"a","url":"http://127.0.0.1:9/bid","qps":0}]}"#,
    )
    .unwrap();
    let out = Exchange::command()
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--debug-port",
            "0",
            "--roster",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("dsps[0] (a).qps"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_config_loads_the_roster_and_exits_without_serving() {
    let dir = common::ledger::temp_dir("roster-check");
    let path = dir.join("roster.json");
    let check = |roster: &str| {
        std::fs::write(&path, roster).unwrap();
        // No --port 0: a check binds nothing, so the default port being taken cannot matter.
        Exchange::command()
            .args(["--bind", "127.0.0.1", "--check-config", "--roster"])
            .arg(&path)
            .output()
            .unwrap()
    };
    let good = check(r#"{"dsps":[{"name":"a","url":"http://127.0.0.1:9/bid","qps":5}]}"#);
    let stdout = String::from_utf8_lossy(&good.stdout);
    assert_eq!(good.status.code(), Some(0), "{good:?}");
    assert!(stdout.starts_with("OK: configuration; roster ") && stdout.contains(": 1 DSPs"));
    let bad = check(r#"{"dsps":[{"name":"a","url":"http://127.0.0.1:9/bid","qps":0}]}"#);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    assert!(stderr.contains("dsps[0] (a).qps"), "{stderr}");
    assert!(bad.stdout.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Found by CI: auctions sent as soon as the exchange said it listened were answered 404 "no
/// DSP registered" while the workers had not applied the roster yet. The exchange must not say
/// it listens before every worker has the roster. (A second entry, whose host does not
/// resolve, makes applying the roster take a lookup; without the wait this test failed in two
/// runs of three here.)
#[test]
fn the_first_auction_after_the_start_already_has_the_roster() {
    let Some(dsp_bin) = dsp_binary("roster") else {
        return;
    };
    let flags = ["--latency", "fixed:0", "--bid-rate", "1"];
    let good = DspProcess::start(&dsp_bin, "good", 0, &flags).expect("rtb-dsp");
    let dir = common::ledger::temp_dir("roster-first");
    let path = dir.join("roster.json");
    let slow = entry("slow", "192.0.2.1:9".parse().unwrap(), "");
    let slow = slow.replace("192.0.2.1:9", "no-such-host.invalid:9");
    let good_e = entry("good", good.addr, "");
    write_roster(&path, &format!(r#"{{"dsps":[{slow},{good_e}]}}"#));
    let roster = path.to_str().unwrap();
    let ex = Exchange::start(&[
        "--roster",
        roster,
        "--dns-timeout-ms",
        "300",
        "--shed-lag-ms",
        "1000",
        "--shed-queue-wait-ms",
        "1000",
    ]);
    let r = ex.auction(&body(1, "banner", "USA"));
    assert_eq!(r.status, 200, "{}", r.text());
    let _ = std::fs::remove_dir_all(&dir);
}
