//! DNS through the real exchange binary and a real `rtb-dsp` (issue 15): a DSP onboarded by a
//! host name that resolves to two addresses, one of which refuses connections, still receives
//! every request, and the exchange counts the refused connects and the lookups.
//!
//! The name is `localhost`: the exchange's resolver (hickory-resolver) answers it with both
//! 127.0.0.1 and ::1 (RFC 6761), whatever /etc/hosts says, and `rtb-dsp` listens on 127.0.0.1
//! only, so the same port on ::1 refuses (or, with no IPv6 loopback, is unreachable: a failed
//! connect either way). A name that resolves to several addresses through a hosts file in a
//! network namespace is scripts/dns-netns's (it needs root).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    net::{Ipv6Addr, SocketAddr, TcpListener},
    time::Duration,
};

use common::*;
use test_support::prom;

/// Auctions sent; each must carry the DSP's bid.
const AUCTIONS: usize = 20;

#[test]
fn a_dsp_whose_name_also_resolves_to_a_refusing_address_gets_every_request() {
    let Some(dsp_bin) = dsp_binary("dns") else {
        return;
    };
    let dsp = DspProcess::start(&dsp_bin, "local", 0, &ALWAYS_BIDS_AT_2).expect("rtb-dsp");
    let port = dsp.addr.port();
    // Nothing may listen on [::1]:port, or that address would serve instead of refusing.
    match TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, port))) {
        Ok(free) => drop(free),
        Err(e) => assert_ne!(
            e.kind(),
            std::io::ErrorKind::AddrInUse,
            "[::1]:{port} taken"
        ),
    }
    // Connections opened ahead of traffic go round robin, so ::1 is tried at once.
    let ex = Exchange::start(&["--dsp-prewarm", "4"]);
    let body = format!(r#"{{"name":"local","base_url":"http://localhost:{port}"}}"#);
    let r = request(ex.addr, "POST", "/dsp", &[], body.as_bytes());
    assert_eq!(r.status, 201, "{}", r.text());
    let list = request(ex.addr, "GET", "/dsp", &[], b"").json();
    let addrs = list["dsps"][0]["addrs"].as_array().unwrap().clone();
    assert_eq!(
        addrs,
        [format!("127.0.0.1:{port}"), format!("[::1]:{port}")],
        "{list}"
    );

    for i in 0..AUCTIONS {
        let r = ex.auction(&bid_request(&format!("dns-{i}"), 2, 500, 0.5));
        assert_eq!(r.status, 200, "auction {i}: {}", r.text());
        assert!(r.text().contains(r#""seat":"local""#), "{}", r.text());
    }
    let requests = prom::first(
        &request(dsp.addr, "GET", "/metrics", &[], b"").text(),
        "rtb_dspsim_requests_total",
    );
    assert_eq!(requests, Some(AUCTIONS as f64));

    // Pool counters reach the metrics with the calls that follow; both workers had some.
    let mut page = String::new();
    let counted = eventually(Duration::from_secs(5), || {
        page = ex.metrics();
        dsp_sample(&page, "rtb_dsp_pool_connect_failures_total", "local") >= 1.0
    });
    assert!(counted, "no refused connect counted:\n{page}");
    assert_eq!(dsp_sample(&page, "rtb_dsp_addresses", "local"), 2.0);
    assert!(
        sample(&page, "rtb_dns_lookups_total{result=\"ok\"}") >= 1.0,
        "{page}"
    );
    assert_eq!(
        sample(&page, "rtb_dns_lookups_total{result=\"timeout\"}"),
        0.0
    );
    let failed_calls: f64 = (page.lines())
        .filter(|l| {
            l.starts_with("rtb_dsp_errors_total{dsp=\"local\"")
                || l.starts_with("rtb_dsp_timeouts_total{dsp=\"local\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(failed_calls, 0.0, "{page}");
}
