//! End-to-end tests: the real `rtb-exchange` binary against fake DSPs on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use common::*;

const FAST: Duration = Duration::from_millis(0);

fn bid(price: f64, seat: &'static str) -> Behaviour {
    Behaviour::bid(price, seat)
}

#[test]
fn onboarding_refresh_replace_delete_and_bad_urls() {
    let ex = Exchange::start(&[]);
    let dsp = FakeDsp::start(Behaviour::NoBid);
    let r = ex.onboard("alpha", dsp.addr);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["status"], "added");
    assert_eq!(r.json()["url"], format!("http://{}/bid", dsp.addr));
    let r = ex.onboard("alpha", dsp.addr);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "refreshed");
    let other = FakeDsp::start(Behaviour::NoBid);
    let r = ex.onboard("alpha", other.addr);
    assert_eq!(
        (r.status, r.json()["status"].as_str()),
        (200, Some("replaced"))
    );

    let list = request(ex.addr, "GET", "/dsp", &[], b"").json();
    assert_eq!(list["dsps"].as_array().unwrap().len(), 1);
    assert_eq!(list["dsps"][0]["name"], "alpha");
    assert_eq!(list["dsps"][0]["addr"], other.addr.to_string());

    let bad = [
        (r#"{"name":"b","base_url":"ftp://127.0.0.1:1"}"#, "base_url"),
        (
            r#"{"name":"b","base_url":"http://169.254.169.254/"}"#,
            "base_url",
        ),
        (
            r#"{"name":"b","base_url":"http://metadata.google.internal/"}"#,
            "base_url",
        ),
        (
            r#"{"name":"b","base_url":"http://u:p@127.0.0.1:1/"}"#,
            "base_url",
        ),
        (
            r#"{"name":"b","base_url":"http://127.0.0.1:1","bid_path":"bid"}"#,
            "base_url",
        ),
        (
            r#"{"name":"b","base_url":"http://no-such-host.invalid:1"}"#,
            "base_url",
        ),
        (r#"{"name":"b c","base_url":"http://127.0.0.1:1"}"#, "name"),
        (r#"{"base_url":"http://127.0.0.1:1"}"#, "name"),
        (r#"not json"#, ""),
    ];
    for (body, field) in bad {
        let r = request(ex.addr, "POST", "/dsp", &[], body.as_bytes());
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert_eq!(r.json()["field"], field, "{body}: {}", r.text());
        assert!(r.json()["error"].as_str().unwrap().len() > 3);
    }

    let r = request(ex.addr, "DELETE", "/dsp/alpha", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = request(ex.addr, "DELETE", "/dsp/alpha", &[], b"");
    assert_eq!(r.status, 404);
    let r = ex.auction(&bid_request("a1", 2, 100, 0.1));
    assert_eq!(r.status, 404, "no DSP left");
}

#[test]
fn onboarding_token_is_enforced() {
    let ex = Exchange::start(&["--onboard-token", "s3cret-token"]);
    let dsp = FakeDsp::start(Behaviour::NoBid);
    let body = format!(r#"{{"name":"a","base_url":"http://{}"}}"#, dsp.addr);
    let r = request(ex.addr, "POST", "/dsp", &[], body.as_bytes());
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["field"], "authorization");
    let wrong = [("authorization", "Bearer s3cret-tokeX")];
    assert_eq!(
        request(ex.addr, "POST", "/dsp", &wrong, body.as_bytes()).status,
        401
    );
    let right = [("authorization", "Bearer s3cret-token")];
    assert_eq!(
        request(ex.addr, "POST", "/dsp", &right, body.as_bytes()).status,
        201
    );
    assert_eq!(request(ex.addr, "DELETE", "/dsp/a", &[], b"").status, 401);
    // Listing the DSPs needs the token too.
    let r = request(ex.addr, "GET", "/dsp", &[], b"");
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(request(ex.addr, "GET", "/dsp", &wrong, b"").status, 401);
    let r = request(ex.addr, "GET", "/dsp", &right, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["dsps"][0]["name"], "a");
    assert_eq!(
        request(ex.debug, "GET", "/debug/registry", &[], b"").status,
        401
    );
    let r = request(ex.debug, "GET", "/debug/registry", &right, b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["registry"]["dsps"][0]["name"], "a");
    assert_eq!(
        request(ex.addr, "DELETE", "/dsp/a", &right, b"").status,
        200
    );
}

#[test]
fn registry_cap_answers_409() {
    let ex = Exchange::start(&["--max-dsps", "1"]);
    let a = FakeDsp::start(Behaviour::NoBid);
    let b = FakeDsp::start(Behaviour::NoBid);
    assert_eq!(ex.onboard("a", a.addr).status, 201);
    let r = ex.onboard("b", b.addr);
    assert_eq!(r.status, 409, "{}", r.text());
    // Re-onboarding an existing DSP is not blocked by the cap.
    assert_eq!(ex.onboard("a", a.addr).status, 200);
}

#[test]
fn loopback_denied_when_asked() {
    let ex = Exchange::start(&["--deny-loopback-dsp"]);
    let a = FakeDsp::start(Behaviour::NoBid);
    let r = ex.onboard("a", a.addr);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("loopback"), "{}", r.text());
}

#[test]
fn not_found_without_dsps_and_400_per_rule() {
    let ex = Exchange::start(&[]);
    let r = ex.auction(&bid_request("x", 2, 100, 0.1));
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].as_str().unwrap().contains("no DSP"));
    let cases: [(&str, &str); 5] = [
        ("{not json", ""),
        (r#"{"id":"x"}"#, "imp"),
        (r#"{"id":"x","imp":[{"id":"1"}]}"#, "imp[0]"),
        (r#"{"imp":[{"id":"1","banner":{}}]}"#, "id"),
        (
            r#"{"id":"x","tmax":0,"imp":[{"id":"1","banner":{}}]}"#,
            "tmax",
        ),
    ];
    for (body, field) in cases {
        let r = ex.auction(body.as_bytes());
        assert_eq!(r.status, 400, "{body}");
        let j = r.json();
        assert_eq!(j["field"], field, "{body}: {j}");
        assert!(!j["error"].as_str().unwrap().is_empty());
    }
    let m = ex.metrics();
    assert_eq!(sample(&m, "rtb_auctions_total{outcome=\"invalid\"}"), 5.0);
    assert_eq!(sample(&m, "rtb_auctions_total{outcome=\"no_dsp\"}"), 1.0);
    assert_eq!(
        sample(&m, "rtb_requests_total{route=\"auction\",status=\"400\"}"),
        5.0
    );
}

/// Breaks only strict rules: a negative banner width.
const NEGATIVE_WIDTH: &[u8] = br#"{"id":"neg","at":1,"tmax":100,"imp":[{"id":"1","banner":{"w":-300,"h":250},"bidfloor":0.1}],"site":{"id":"s"}}"#;

#[test]
fn strict_validation_names_the_field_in_the_400_and_forwards_nothing() {
    let ex = Exchange::start(&[]);
    let dsp = FakeDsp::start(bid(1.0, "seat"));
    assert_eq!(ex.onboard("a", dsp.addr).status, 201);
    let r = ex.auction(NEGATIVE_WIDTH);
    assert_eq!(r.status, 400, "{}", r.text());
    let j = r.json();
    assert_eq!(j["field"], "imp[0].banner.w", "{j}");
    assert_eq!(j["rule"], "must be >= 0", "{j}");
    assert_eq!(j["error"], "imp[0].banner.w: must be >= 0", "{j}");
    // The Native request inside its JSON string, with the path through it.
    let native = br#"{"id":"nat","imp":[{"id":"1","native":{"request":"{\"assets\":[{\"id\":1,\"title\":{\"len\":25},\"img\":{\"w\":100,\"h\":100}}]}"}}]}"#;
    let r = ex.auction(native);
    assert_eq!(r.status, 400, "{}", r.text());
    let j = r.json();
    assert_eq!(j["field"], "imp[0].native.request.assets[0]", "{j}");
    assert_eq!(
        j["rule"], "needs exactly one of title, img, video, data",
        "{j}"
    );
    assert!(
        dsp.bid_requests().is_empty(),
        "an invalid request reached a DSP"
    );
    // A valid request still goes through.
    assert_eq!(ex.auction(&bid_request("ok", 1, 100, 0.1)).status, 200);
}

#[test]
fn lenient_validation_lets_a_strict_only_violation_through() {
    let ex = Exchange::start(&["--validation", "lenient"]);
    let dsp = FakeDsp::start(bid(1.0, "seat"));
    assert_eq!(ex.onboard("a", dsp.addr).status, 201);
    let r = ex.auction(NEGATIVE_WIDTH);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["id"], "neg");
    assert_eq!(dsp.bid_requests().len(), 1);
    // Lenient still refuses what the auction itself cannot use.
    let r = ex.auction(br#"{"id":"x","imp":[{"id":"1","banner":{}}],"tmax":0}"#);
    assert_eq!((r.status, r.json()["field"].as_str()), (400, Some("tmax")));
}

#[test]
fn first_and_second_price_with_two_dsps() {
    let ex = Exchange::start(&[]);
    let a = FakeDsp::start(bid(2.0, "seat-a"));
    let b = FakeDsp::start(bid(1.5, "seat-b"));
    assert_eq!(ex.onboard("a", a.addr).status, 201);
    assert_eq!(ex.onboard("b", b.addr).status, 201);

    let r = ex.auction(&bid_request("fp", 1, 100, 0.5));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-openrtb-version"), Some("2.6"));
    let j = r.json();
    assert_eq!(j["id"], "fp");
    assert_eq!(j["seatbid"][0]["seat"], "seat-a");
    assert_eq!(j["seatbid"][0]["bid"][0]["price"].as_f64(), Some(2.0));

    let r = ex.auction(&bid_request("sp", 2, 100, 0.5));
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["seatbid"][0]["seat"], "seat-a");
    assert_eq!(j["seatbid"][0]["bid"][0]["price"].as_f64(), Some(1.51));

    // Floor above b's bid: a wins at the floor-based second price.
    let r = ex.auction(&bid_request("fl", 2, 100, 1.8));
    let j = r.json();
    assert_eq!(j["seatbid"][0]["seat"], "seat-a");
    let p = j["seatbid"][0]["bid"][0]["price"].as_f64().unwrap();
    assert!((1.8..=2.0).contains(&p), "{p}");

    // What the DSPs got: OpenRTB headers and a tmax within the exchange's budget.
    let seen = a.bid_requests();
    assert!(!seen.is_empty());
    let h = &seen[0].headers;
    assert!(h
        .iter()
        .any(|(n, v)| n == "x-openrtb-version" && v == "2.6"));
    let sent: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    let tmax = sent["tmax"].as_u64().unwrap();
    assert!((5..80).contains(&tmax), "tmax {tmax}");
    assert_eq!(sent["id"], "fp");

    let m = ex.metrics();
    assert_eq!(sample(&m, "rtb_auctions_total{outcome=\"won\"}"), 3.0);
    assert_eq!(sample(&m, "rtb_dsp_calls_total{dsp=\"a\"}"), 3.0);
    assert_eq!(sample(&m, "rtb_dsp_wins_total{dsp=\"a\"}"), 3.0);
    assert_eq!(sample(&m, "rtb_dsp_bids_total{dsp=\"b\"}"), 3.0);
    assert!(
        sample(
            &m,
            "rtb_dsp_bid_rejections_total{dsp=\"b\",reason=\"lost_to_higher_bid\"}"
        ) >= 2.0
    );
    assert_eq!(sample(&m, "rtb_auction_duration_seconds_count"), 3.0);
    assert!(m.contains("rtb_worker_info{worker=\"1\",driver=\""));
}

#[test]
fn no_bid_answers_204() {
    let ex = Exchange::start(&[]);
    let a = FakeDsp::start(Behaviour::NoBid);
    let b = FakeDsp::start(Behaviour::NoBid);
    ex.onboard("a", a.addr);
    ex.onboard("b", b.addr);
    let r = ex.auction(&bid_request("nb", 2, 100, 0.1));
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    // Bids below the floor are no bids too.
    let c = FakeDsp::start(bid(0.05, "cheap"));
    ex.onboard("c", c.addr);
    let r = ex.auction(&bid_request("nb2", 2, 100, 1.0));
    assert_eq!(r.status, 204);
    let m = ex.metrics();
    assert_eq!(sample(&m, "rtb_auctions_total{outcome=\"no_bid\"}"), 2.0);
    assert_eq!(
        sample(
            &m,
            "rtb_dsp_bid_rejections_total{dsp=\"c\",reason=\"below_floor\"}"
        ),
        1.0
    );
}

#[test]
fn deadline_held_with_a_hanging_dsp() {
    let ex = Exchange::start(&["--deadline-ms", "80"]);
    let fast = FakeDsp::start(bid(1.0, "fast"));
    let slow = FakeDsp::start(Behaviour::Hang);
    ex.onboard("fast", fast.addr);
    ex.onboard("slow", slow.addr);
    for i in 0..3 {
        let body = bid_request(&format!("d{i}"), 2, 100, 0.1);
        let started = Instant::now();
        let s = send(ex.addr, "POST", "/openrtb2/auction", &[], &body);
        let r = read_reply(s);
        let took = started.elapsed();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["seatbid"][0]["seat"], "fast");
        assert!(took < Duration::from_millis(85), "answered after {took:?}");
        // It did wait for the slow DSP until near the deadline (77 ms = 80 - 3 margin).
        assert!(took >= Duration::from_millis(60), "answered after {took:?}");
        eprintln!("deadline test: answered in {took:?}");
    }
    let m = ex.metrics();
    assert_eq!(sample(&m, "rtb_dsp_timeouts_total{dsp=\"slow\"}"), 3.0);
    // Counted once: not again as an error kind, so timeouts plus errors are the failed calls.
    assert!(!m.contains("kind=\"timeout\""), "{m}");
    let errors: f64 = test_support::prom::by_label(&m, "rtb_dsp_errors_total{dsp=\"slow\",kind=\"")
        .iter()
        .map(|(_, v)| v)
        .sum();
    assert_eq!(errors, 0.0, "{m}");
    assert_eq!(sample(&m, "rtb_dsp_calls_total{dsp=\"slow\"}"), 3.0);
}

#[test]
fn metrics_carry_the_process_and_the_build() {
    let ex = Exchange::start(&[]);
    let m = ex.metrics();
    let value = |name: &str| {
        test_support::prom::value(&m, name).unwrap_or_else(|| panic!("no {name} in {m}"))
    };
    assert!(value("process_cpu_seconds_total") >= 0.0);
    let rss = value("process_resident_memory_bytes");
    let hwm = test_support::procfs::status_kib(ex.pid(), "VmHWM:").unwrap() as f64 * 1024.0;
    assert!(rss > 1e6 && rss <= hwm, "rss {rss}, peak {hwm}");
    let open = value("process_open_fds");
    let counted = test_support::procfs::fd_count(ex.pid()) as f64;
    // The scrape's own connection and the /proc listing come and go around the count.
    assert!(
        open >= 5.0 && (open - counted).abs() <= 3.0,
        "open {open}, /proc {counted}"
    );
    assert!(value("process_max_fds") >= open);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = value("process_start_time_seconds");
    assert!(
        started <= now + 1.0 && started > now - 60.0,
        "{started} vs {now}"
    );
    let build = format!(
        "rtb_build_info{{version=\"{}\",profile=\"debug\"",
        env!("CARGO_PKG_VERSION")
    );
    let release_build = std::env::var_os("RTB_EXCHANGE_BIN").is_some();
    assert!(
        release_build || m.contains(&build),
        "{build} missing in {m}"
    );
    assert!(m.contains("# TYPE rtb_build_info gauge"));
}

#[test]
fn a_dsp_answering_after_the_deadline_keeps_its_connections() {
    // One worker, breaker off: every auction calls the late DSP and times out on it.
    let ex = Exchange::start(&[
        "--workers",
        "1",
        "--deadline-ms",
        "80",
        "--breaker-failures",
        "0",
    ]);
    let late = FakeDsp::start(Behaviour::Bid {
        price: 1.0,
        seat: "late",
        delay: Duration::from_millis(110),
        nurl: false,
    });
    ex.onboard("late", late.addr);
    let auctions = 12;
    for i in 0..auctions {
        let r = ex.auction(&bid_request(&format!("late{i}"), 2, 100, 0.1));
        assert_eq!(r.status, 204, "the late DSP's bid never counts");
        // Let the late answer arrive and the drained connection return to the pool.
        thread::sleep(Duration::from_millis(60));
    }
    let m = ex.metrics();
    let timeouts = sample(&m, "rtb_dsp_timeouts_total{dsp=\"late\"}");
    let opened = sample(&m, "rtb_dsp_pool_connections_opened_total{dsp=\"late\"}");
    let drained = sample(
        &m,
        "rtb_dsp_pool_drains_total{dsp=\"late\",result=\"reused\"}",
    );
    eprintln!("late DSP: {timeouts} timeouts, {opened} connections opened, {drained} drained");
    assert_eq!(timeouts, auctions as f64);
    // Before draining each timeout closed its connection: main's binary opened 12 here
    // (RTB_EXCHANGE_BIN=<main build>), this branch 2.
    assert!(
        opened <= 3.0,
        "{opened} connections for {timeouts} timeouts"
    );
    assert!(
        drained >= auctions as f64 - 1.0,
        "{drained} drained of {timeouts}"
    );
}

#[test]
fn win_notice_reaches_the_winner() {
    let ex = Exchange::start(&[]);
    let winner = FakeDsp::start(Behaviour::Bid {
        price: 3.0,
        seat: "w",
        delay: FAST,
        nurl: true,
    });
    let loser = FakeDsp::start(Behaviour::Bid {
        price: 1.0,
        seat: "l",
        delay: FAST,
        nurl: true,
    });
    ex.onboard("w", winner.addr);
    ex.onboard("l", loser.addr);
    let r = ex.auction(&bid_request("win-1", 2, 100, 0.1));
    assert_eq!(r.status, 200);
    // The nurl is not forwarded to the client: the exchange fires it.
    assert!(!r.text().contains("/win?"), "{}", r.text());
    assert!(eventually(Duration::from_secs(3), || !winner
        .wins()
        .is_empty()));
    let w = &winner.wins()[0];
    assert_eq!(w.method, "GET");
    assert_eq!(w.path, "/win?price=1.01&id=win-1");
    thread::sleep(Duration::from_millis(100));
    assert!(loser.wins().is_empty());
    assert!(eventually(Duration::from_secs(2), || sample(
        &ex.metrics(),
        "rtb_win_notices_total{result=\"sent\"}"
    ) == 1.0));
}

#[test]
fn ttl_expires_dsps() {
    let ex = Exchange::start(&["--dsp-ttl-s", "1"]);
    let a = FakeDsp::start(Behaviour::NoBid);
    assert_eq!(ex.onboard("a", a.addr).status, 201);
    assert_eq!(ex.auction(&bid_request("t", 2, 100, 0.1)).status, 204);
    assert!(eventually(Duration::from_secs(4), || {
        request(ex.addr, "GET", "/dsp", &[], b"").json()["dsps"]
            .as_array()
            .unwrap()
            .is_empty()
    }));
    assert_eq!(ex.auction(&bid_request("t2", 2, 100, 0.1)).status, 404);
}

#[test]
fn health_and_readiness() {
    let ex = Exchange::start(&[]);
    let r = request(ex.addr, "GET", "/healthz", &[], b"");
    assert_eq!((r.status, r.json()["status"].as_str()), (200, Some("ok")));
    assert_eq!(request(ex.addr, "GET", "/readyz", &[], b"").status, 200);
    assert_eq!(request(ex.addr, "GET", "/nope", &[], b"").status, 404);
    // A 405 names the methods the route takes, on both ports.
    for (addr, method, path, allow) in [
        (ex.addr, "GET", "/openrtb2/auction", "POST"),
        (ex.addr, "PUT", "/dsp", "GET, POST"),
        (ex.addr, "GET", "/dsp/some", "DELETE"),
        (ex.debug, "POST", "/metrics", "GET"),
    ] {
        let r = request(addr, method, path, &[], b"");
        assert_eq!(
            (r.status, r.header("allow")),
            (405, Some(allow)),
            "{method} {path}"
        );
    }
}

#[test]
fn sigterm_answers_in_flight_requests_and_exits_0() {
    let mut ex = Exchange::start(&[]);
    let slow = FakeDsp::start(Behaviour::Bid {
        price: 1.0,
        seat: "s",
        delay: Duration::from_millis(40),
        nurl: false,
    });
    ex.onboard("s", slow.addr);
    let streams: Vec<_> = (0..8)
        .map(|i| {
            send(
                ex.addr,
                "POST",
                "/openrtb2/auction",
                &[],
                &bid_request(&format!("sig{i}"), 2, 100, 0.1),
            )
        })
        .collect();
    thread::sleep(Duration::from_millis(10));
    let status = ex.terminate();
    for s in streams {
        let r = read_reply(s);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(status.code(), Some(0));
}

#[test]
fn help_documents_flags_env_and_defaults() {
    let out = Command::new(env!("CARGO_BIN_EXE_rtb-exchange"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--port",
        "RTB_EXCHANGE_PORT",
        "[default: 3000]",
        "RTB_EXCHANGE_BIND",
        "RTB_EXCHANGE_DEBUG_PORT",
        "[default: 6060]",
        "RTB_EXCHANGE_WORKERS",
        "RTB_EXCHANGE_PIN",
        "RTB_EXCHANGE_IO_DRIVER",
        "RTB_EXCHANGE_DEADLINE_MS",
        "[default: 80]",
        "RTB_EXCHANGE_MARGIN_MS",
        "RTB_ONBOARD_TOKEN",
        "RTB_EXCHANGE_DSP_TTL_S",
        "RTB_EXCHANGE_MAX_DSPS",
        "--deny-loopback-dsp",
        "--open-onboarding",
        "RTB_EXCHANGE_OPEN_ONBOARDING",
        "--header-count-max",
        "RTB_EXCHANGE_HEADER_COUNT_MAX",
        "[default: 64]",
        "--log-format",
    ] {
        assert!(help.contains(needle), "help lacks {needle}:\n{help}");
    }
}

#[test]
fn bad_env_value_names_variable_and_value() {
    let out = Command::new(env!("CARGO_BIN_EXE_rtb-exchange"))
        .env("RTB_EXCHANGE_DEADLINE_MS", "soon")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("RTB_EXCHANGE_DEADLINE_MS") && err.contains("soon"),
        "{err}"
    );
}

#[test]
fn iab_sample_requests_are_auctioned_on_epoll_too() {
    let Some(dir) = test_support::ci::samples_or_skip("iab_sample_requests_are_auctioned") else {
        return;
    };
    let mut samples: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.contains("req") && name.ends_with(".json")
        })
        .collect();
    samples.sort();
    assert!(!samples.is_empty());
    let ex = Exchange::start(&["--io-driver", "epoll"]);
    assert!(ex.metrics().contains("driver=\"epoll\""));
    let dsp = FakeDsp::start(bid(50.0, "big"));
    ex.onboard("big", dsp.addr);
    let mut won = 0;
    for path in &samples {
        let body = std::fs::read(path).unwrap();
        let r = ex.auction(&body);
        assert!(
            r.status == 200 || r.status == 204,
            "{}: {} {}",
            path.display(),
            r.status,
            r.text()
        );
        if r.status == 200 {
            won += 1;
            let j = r.json();
            let req: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(j["id"], req["id"]);
        }
    }
    eprintln!("samples: {} auctioned, {won} won", samples.len());
    assert!(won > 0);
}

#[test]
fn too_short_tmax_is_shed_at_once() {
    let ex = Exchange::start(&[]);
    let dsp = FakeDsp::start(bid(5.0, "s"));
    ex.onboard("s", dsp.addr);
    // tmax 6 ms minus the 3 ms margin leaves less than the 5 ms a DSP needs.
    let started = Instant::now();
    let r = ex.auction(&bid_request("shed", 2, 6, 0.1));
    assert_eq!(r.status, 204);
    assert!(started.elapsed() < Duration::from_millis(50));
    assert!(dsp.bid_requests().is_empty(), "a shed auction calls no DSP");
    let m = ex.metrics();
    assert_eq!(sample(&m, "rtb_auctions_total{outcome=\"shed\"}"), 1.0);
    // A normal tmax still auctions.
    assert_eq!(ex.auction(&bid_request("ok", 2, 100, 0.1)).status, 200);
}

#[test]
fn auctions_over_the_in_flight_cap_are_shed_at_once() {
    let dir = std::env::temp_dir().join(format!("rtb-in-flight-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ledger = format!("file:{}", dir.join("ledger.jsonl").display());
    let mut ex = Exchange::start(&[
        "--workers",
        "1",
        "--max-auctions-in-flight",
        "1",
        "--ledger",
        &ledger,
    ]);
    let slow = FakeDsp::start(Behaviour::Hang);
    ex.onboard("slow", slow.addr);
    // The first auction waits for the hanging DSP until its deadline...
    let first = send(
        ex.addr,
        "POST",
        "/openrtb2/auction",
        &[],
        &bid_request("a", 2, 300, 0.1),
    );
    std::thread::sleep(Duration::from_millis(20));
    // ...so the second one, on the same (only) worker, is over the cap: 204 at once.
    let started = Instant::now();
    let second = read_reply(send(
        ex.addr,
        "POST",
        "/openrtb2/auction",
        &[],
        &bid_request("b", 2, 300, 0.1),
    ));
    let took = started.elapsed();
    assert_eq!(second.status, 204);
    assert!(took < Duration::from_millis(40), "shed after {took:?}");
    assert_eq!(
        read_reply(first).status,
        204,
        "the first ran to its deadline"
    );
    let m = ex.metrics();
    assert_eq!(
        sample(&m, "rtb_auctions_shed_total{reason=\"in_flight\"}"),
        1.0
    );
    assert_eq!(sample(&m, "rtb_auctions_total{outcome=\"shed\"}"), 1.0);
    // Once the first is done, auctions run again.
    let third = read_reply(send(
        ex.addr,
        "POST",
        "/openrtb2/auction",
        &[],
        &bid_request("c", 2, 50, 0.1),
    ));
    assert_eq!(third.status, 204);
    assert_eq!(
        sample(&ex.metrics(), "rtb_dsp_calls_total{dsp=\"slow\"}"),
        2.0
    );
    // The shed has its ledger record like any other (it was never decoded: no id).
    assert!(ex.terminate().success());
    let records = std::fs::read_to_string(dir.join("ledger.jsonl")).unwrap();
    let sheds: Vec<serde_json::Value> = (records.lines())
        .map(|line| serde_json::from_str(line).unwrap())
        .filter(|r: &serde_json::Value| r["kind"] == "shed")
        .collect();
    assert_eq!(sheds.len(), 1, "{records}");
    assert_eq!(
        (&sheds[0]["reason"], &sheds[0]["id"]),
        (&"in_flight".into(), &"".into())
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn pool_counters_stay_monotonic_when_a_dsp_is_onboarded_again() {
    let ex = Exchange::start(&["--workers", "1"]);
    let dsp = FakeDsp::start(bid(1.0, "braid"));
    ex.onboard("braid", dsp.addr);
    for i in 0..5 {
        let r = ex.auction(&bid_request(&format!("p{i}"), 2, 100, 0.1));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let series = |m: &str, name: &str| sample(m, &format!("{name}{{dsp=\"braid\"}}"));
    let before = ex.metrics();
    let reused = series(&before, "rtb_dsp_pool_connections_reused_total");
    let opened = series(&before, "rtb_dsp_pool_connections_opened_total");
    assert!(reused >= 4.0, "{reused}");
    let removed = read_reply(send(ex.addr, "DELETE", "/dsp/braid", &[], b""));
    assert_eq!(removed.status, 200, "{}", removed.text());
    ex.onboard("braid", dsp.addr);
    let r = ex.auction(&bid_request("after", 2, 100, 0.1));
    assert_eq!(r.status, 200, "{}", r.text());
    let after = ex.metrics();
    assert!(series(&after, "rtb_dsp_pool_connections_reused_total") >= reused);
    assert!(series(&after, "rtb_dsp_pool_connections_opened_total") >= opened);
    assert_eq!(series(&after, "rtb_dsp_calls_total"), 6.0);
}

/// Runs the binary with `args` (no onboarding settings from the environment) until it exits or
/// 5 s pass; returns its exit code and stderr, or `None` when it kept running (it is killed).
fn run_briefly(args: &[&str], env: &[(&str, &str)]) -> Option<(Option<i32>, String)> {
    let mut cmd = Exchange::command();
    cmd.args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let give_up = Instant::now() + Duration::from_secs(5);
    while Instant::now() < give_up {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            return Some((status.code(), err));
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn open_onboarding_off_loopback_is_refused_unless_asked_for() {
    let ports = ["--port", "0", "--debug-port", "0", "--workers", "1"];
    for bind in [vec!["--bind", "0.0.0.0"], vec![], vec!["--bind", "::"]] {
        let args: Vec<&str> = bind.iter().chain(&ports).copied().collect();
        let (code, err) = run_briefly(&args, &[]).expect("it started without a token");
        assert_eq!(code, Some(2), "{args:?}: {err}");
        for needle in [
            "refusing to start with open onboarding",
            "--onboard-token",
            "RTB_ONBOARD_TOKEN",
            "--bind 127.0.0.1",
            "--open-onboarding",
            "RTB_EXCHANGE_OPEN_ONBOARDING=true",
        ] {
            assert!(err.contains(needle), "{args:?}: {needle} missing in {err}");
        }
    }
    // Asked for, by flag or by variable; or with a token: it starts and onboarding works as
    // configured.
    let on_any_address = |flag: Option<&str>, env: Option<(&str, &str)>| {
        let mut cmd = Exchange::command();
        cmd.args(["--bind", "0.0.0.0"])
            .args(flag)
            .args(ports)
            .envs(env)
            .stderr(Stdio::null());
        cmd
    };
    let open = on_any_address(Some("--open-onboarding"), None);
    let by_env = on_any_address(None, Some(("RTB_EXCHANGE_OPEN_ONBOARDING", "true")));
    let with_token = on_any_address(None, Some(("RTB_ONBOARD_TOKEN", "t0ken")));
    let dsp = FakeDsp::start(Behaviour::NoBid);
    let body = format!(r#"{{"name":"a","base_url":"http://{}"}}"#, dsp.addr);
    for (cmd, want) in [(open, 201), (by_env, 201), (with_token, 401)] {
        let (_process, addrs) = Process::start(cmd, "rtb-exchange", &["listening on "]).unwrap();
        let port: u16 = addrs[0].rsplit(':').next().unwrap().parse().unwrap();
        let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let r = request(loopback, "POST", "/dsp", &[], body.as_bytes());
        assert_eq!(r.status, want, "{}", r.text());
    }
    // A token and --open-onboarding together are a mistake too.
    let loopback_args = ["--open-onboarding", "--bind", "127.0.0.1"];
    let args: Vec<&str> = loopback_args.iter().chain(&ports).copied().collect();
    let (code, err) = run_briefly(&args, &[("RTB_ONBOARD_TOKEN", "t0ken")])
        .expect("it started with a token and --open-onboarding");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("drop one of them"), "{err}");
}

/// The status of `GET /healthz` carrying `extra` headers besides the three `request` sends
/// (host, connection, content-length).
fn status_with_headers(addr: std::net::SocketAddr, extra: usize) -> u16 {
    let names: Vec<String> = (0..extra).map(|i| format!("x-h{i}")).collect();
    let headers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    request(addr, "GET", "/healthz", &headers, b"").status
}

#[test]
fn header_count_max_flag_sets_the_limit() {
    let ex = Exchange::start(&["--header-count-max", "8"]);
    assert_eq!(
        status_with_headers(ex.addr, 5),
        200,
        "8 headers are allowed"
    );
    assert_eq!(status_with_headers(ex.addr, 6), 431, "9 headers are not");
    let default = Exchange::start(&[]);
    assert_eq!(
        status_with_headers(default.addr, 61),
        200,
        "64 headers pass the default limit"
    );
    assert_eq!(status_with_headers(default.addr, 62), 431, "65 do not");
}
