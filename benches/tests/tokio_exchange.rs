//! The tokio-exchange baseline does what rtb-load compares it on: 404 without DSPs (after
//! decoding), onboarding, a fan-out whose answer is a second-price auction, 204 when nobody
//! bids in time, removal. A tiny std-only DSP stands in for rtb-dsp.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    thread,
    time::Duration,
};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_exchange() -> (Killed, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokio-exchange"))
        .args(["--port", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    (Killed(child), addr)
}

/// One HTTP/1.1 request on a fresh connection; returns (status, body).
fn request(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (status, body.to_owned())
}

/// A DSP answering every bid request with one bid of `price` on imp "1" (or hanging).
fn fake_dsp(price: f64, hang: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let stream = stream.unwrap();
            thread::spawn(move || serve_dsp(stream, price, hang));
        }
    });
    addr
}

fn serve_dsp(stream: TcpStream, price: f64, hang: bool) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        if hang {
            thread::sleep(Duration::from_secs(2));
            return;
        }
        let req: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(
            req["tmax"].as_u64().unwrap() <= 80,
            "tmax capped by the deadline"
        );
        let answer = serde_json::json!({
            "id": req["id"], "cur": "USD",
            "seatbid": [{"seat": "s", "bid": [{"id": "b", "impid": "1", "price": price}]}]
        })
        .to_string();
        write!(
            writer,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        )
        .unwrap();
    }
}

const REQUEST: &str = r#"{"id":"r1","tmax":120,"cur":["USD"],"imp":[{"id":"1","banner":{"w":300,"h":250},"bidfloor":0.5}],"site":{"id":"s"}}"#;

#[test]
fn routes_auction_and_deadline() {
    let (_exchange, addr) = start_exchange();
    assert_eq!(request(&addr, "POST", "/openrtb2/auction", REQUEST).0, 404);
    assert_eq!(
        request(&addr, "POST", "/openrtb2/auction", "{\"id\":").0,
        400
    );

    let a = fake_dsp(2.0, false);
    let b = fake_dsp(1.5, false);
    for (name, dsp) in [("a", &a), ("b", &b)] {
        let body = format!("{{\"name\":\"{name}\",\"base_url\":\"http://{dsp}\"}}");
        assert_eq!(request(&addr, "POST", "/dsp", &body).0, 201);
    }
    let (status, body) = request(&addr, "POST", "/openrtb2/auction", REQUEST);
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["id"], "r1");
    let price = answer["seatbid"][0]["bid"][0]["price"].as_f64().unwrap();
    assert!(
        (price - 1.51).abs() < 1e-9,
        "second price + 0.01, got {price}"
    );

    assert_eq!(request(&addr, "DELETE", "/dsp/a", "").0, 204);
    assert_eq!(request(&addr, "DELETE", "/dsp/b", "").0, 204);
    let hang = fake_dsp(9.0, true);
    let body = format!("{{\"name\":\"h\",\"base_url\":\"http://{hang}\"}}");
    assert_eq!(request(&addr, "POST", "/dsp", &body).0, 201);
    let started = std::time::Instant::now();
    assert_eq!(request(&addr, "POST", "/openrtb2/auction", REQUEST).0, 204);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "answered by the deadline"
    );
}
