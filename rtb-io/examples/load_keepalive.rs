//! A crude closed-loop keep-alive load generator (for machines without wrk): C connections,
//! one thread each, each sending a small POST and waiting for the answer, for D seconds.
//! Prints requests/s and latency percentiles. It shares cores with the server, so its figures
//! are only comparable with other runs of itself on the same machine.
//!
//! Usage: `cargo run --release -p rtb-io --example load_keepalive -- [addr] [connections] [seconds]`

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

const ADDR_DEFAULT: &str = "127.0.0.1:8080";
const CONNECTIONS_DEFAULT: usize = 32;
const SECONDS_DEFAULT: u64 = 5;
const REQUEST: &[u8] =
    b"POST /openrtb2/auction HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n{\"id\":\"abc\"}";

fn worker(addr: String, until: Instant) -> std::io::Result<Vec<u32>> {
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut latencies_us = Vec::new();
    let mut buf = vec![0u8; 4096];
    while Instant::now() < until {
        let start = Instant::now();
        s.write_all(REQUEST)?;
        let mut have = 0;
        // Responses are small and Content-Length framed: read until the body is complete.
        loop {
            let n = s.read(&mut buf[have..])?;
            if n == 0 {
                return Ok(latencies_us);
            }
            have += n;
            let text = &buf[..have];
            if let Some(end) = text.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&text[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if have >= end + 4 + len {
                    break;
                }
            }
        }
        latencies_us.push(u32::try_from(start.elapsed().as_micros()).unwrap_or(u32::MAX));
    }
    Ok(latencies_us)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| ADDR_DEFAULT.to_string());
    let connections: usize = args
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CONNECTIONS_DEFAULT);
    let seconds: u64 = args
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(SECONDS_DEFAULT);
    let until = Instant::now() + Duration::from_secs(seconds);
    let threads: Vec<_> = (0..connections)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || worker(addr, until))
        })
        .collect();
    let mut all = Vec::new();
    for t in threads {
        match t.join() {
            Ok(Ok(l)) => all.extend(l),
            Ok(Err(e)) => eprintln!("connection error: {e}"),
            Err(_) => eprintln!("thread panicked"),
        }
    }
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "{} requests in {seconds}s over {connections} connections: {:.0} req/s, p50 {} us, p99 {} us, max {} us",
        all.len(),
        all.len() as f64 / seconds as f64,
        pct(0.50),
        pct(0.99),
        all.last().copied().unwrap_or(0)
    );
}
