//! Test harness: the real `rtb-exchange` binary on loopback ports it picks itself (`--port 0`),
//! a minimal blocking HTTP/1.1 client, and fake DSPs on std TCP listeners.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub mod ledger;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

/// Socket timeout for every test client call.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A running exchange; killed on drop.
pub struct Exchange {
    pub child: Option<Child>,
    pub addr: SocketAddr,
    pub debug: SocketAddr,
}

impl Exchange {
    pub fn start(extra: &[&str]) -> Exchange {
        Exchange::spawn(extra, "warn", Stdio::inherit())
    }

    /// Starts the binary on free loopback ports with the test defaults plus `extra`, and waits
    /// for the lines that say where it listens.
    fn spawn(extra: &[&str], rust_log: &str, stderr: Stdio) -> Exchange {
        let mut args = vec![
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--debug-port",
            "0",
            "--workers",
            "2",
            "--pin",
            "false",
            "--shutdown-grace-s",
            "5",
        ];
        args.extend_from_slice(extra);
        // RTB_EXCHANGE_BIN runs the tests against another build (scripts/test gives the soak an
        // optimized one); by default, the binary cargo built with the tests.
        let bin = std::env::var_os("RTB_EXCHANGE_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_rtb-exchange").into());
        let mut child = Command::new(bin)
            .args(&args)
            .env_remove("RTB_ONBOARD_TOKEN")
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start rtb-exchange");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut addr = None;
        let mut debug = None;
        let give_up = Instant::now() + Duration::from_secs(10);
        while addr.is_none() || debug.is_none() {
            let left = give_up.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .expect("exchange did not print its ports");
            if let Some(a) = line.strip_prefix("listening on ") {
                addr = Some(a.parse().unwrap());
            } else if let Some(a) = line.strip_prefix("debug listening on ") {
                debug = Some(a.parse().unwrap());
            }
        }
        Exchange {
            child: Some(child),
            addr: addr.unwrap(),
            debug: debug.unwrap(),
        }
    }

    pub fn onboard(&self, name: &str, dsp: SocketAddr) -> Reply {
        let body = format!(r#"{{"name":"{name}","base_url":"http://{dsp}"}}"#);
        request(self.addr, "POST", "/dsp", &[], body.as_bytes())
    }

    pub fn auction(&self, body: &[u8]) -> Reply {
        request(self.addr, "POST", "/openrtb2/auction", &[], body)
    }

    pub fn metrics(&self) -> String {
        let r = request(self.debug, "GET", "/metrics", &[], b"");
        assert_eq!(r.status, 200);
        r.text()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        // SAFETY: kill(2) on our own child's pid; no memory is touched.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let give_up = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > give_up {
                let _ = child.kill();
                panic!("exchange did not exit after SIGTERM");
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Writes a request, returns the stream ready to read the answer.
pub fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> TcpStream {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    s.write_all(&bytes).unwrap();
    s
}

/// Reads one response (the server closes after it: we sent `connection: close`).
pub fn read_reply(mut s: TcpStream) -> Reply {
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    parse_reply(&raw)
}

pub fn parse_reply(raw: &[u8]) -> Reply {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    }
}

pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    read_reply(send(addr, method, path, headers, body))
}

/// What a fake DSP does with a bid request.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Bid `price` under `seat` on the first impression after `delay`; with a nurl pointing
    /// back at this DSP's `/win` path when `nurl` is set.
    Bid {
        price: f64,
        seat: &'static str,
        delay: Duration,
        nurl: bool,
    },
    /// Answer 204.
    NoBid,
    /// Read the request and never answer.
    Hang,
}

/// A request a fake DSP received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A fake DSP: a std listener with one thread per connection, keep-alive.
pub struct FakeDsp {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for FakeDsp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(100));
    }
}

impl FakeDsp {
    pub fn start(behaviour: Behaviour) -> FakeDsp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let seen = seen.clone();
            let stop = stop.clone();
            thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let seen = seen.clone();
                    let behaviour = behaviour.clone();
                    let stop = stop.clone();
                    thread::spawn(move || serve_fake(conn, addr, &behaviour, &seen, &stop));
                }
            });
        }
        FakeDsp { addr, seen, stop }
    }

    pub fn wins(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path.starts_with("/win"))
            .cloned()
            .collect()
    }

    pub fn bid_requests(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path == "/bid")
            .cloned()
            .collect()
    }
}

fn read_request(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Seen> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let mut lines = head.split("\r\n");
            let mut first = lines.next()?.split(' ');
            let method = first.next()?.to_string();
            let path = first.next()?.to_string();
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            let len: usize = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .map_or(0, |(_, v)| v.parse().unwrap_or(0));
            while buf.len() < end + 4 + len {
                let mut chunk = [0u8; 4096];
                let n = conn.read(&mut chunk).ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[end + 4..end + 4 + len].to_vec();
            buf.drain(..end + 4 + len);
            return Some(Seen {
                method,
                path,
                headers,
                body,
            });
        }
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn serve_fake(
    mut conn: TcpStream,
    me: SocketAddr,
    behaviour: &Behaviour,
    seen: &Mutex<Vec<Seen>>,
    stop: &AtomicBool,
) {
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut conn, &mut buf) {
        if stop.load(Ordering::Acquire) {
            return;
        }
        seen.lock().unwrap().push(req.clone());
        let answer: Vec<u8> = if req.path.starts_with("/win") {
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec()
        } else {
            match behaviour {
                Behaviour::Hang => {
                    thread::sleep(Duration::from_secs(30));
                    return;
                }
                Behaviour::NoBid => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
                Behaviour::Bid {
                    price,
                    seat,
                    delay,
                    nurl,
                } => {
                    thread::sleep(*delay);
                    let v: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
                    let nurl = if *nurl {
                        format!(
                            r#","nurl":"http://{me}/win?price=${{AUCTION_PRICE}}&id=${{AUCTION_ID}}""#
                        )
                    } else {
                        String::new()
                    };
                    let body = format!(
                        r#"{{"id":{},"seatbid":[{{"seat":"{seat}","bid":[{{"id":"b-{seat}","impid":{},"price":{price},"adm":"<a>{seat}</a>"{nurl}}}]}}]}}"#,
                        v["id"], v["imp"][0]["id"]
                    );
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .into_bytes()
                }
            }
        };
        if conn.write_all(&answer).is_err() {
            return;
        }
    }
}

/// A valid one-impression banner request.
pub fn bid_request(id: &str, at: u8, tmax: u32, floor: f64) -> Vec<u8> {
    format!(
        r#"{{"id":"{id}","at":{at},"tmax":{tmax},"imp":[{{"id":"1","banner":{{"w":300,"h":250}},"bidfloor":{floor}}}],"site":{{"id":"s"}}}}"#
    )
    .into_bytes()
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let give_up = Instant::now() + timeout;
    while Instant::now() < give_up {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// The value of one sample line in a Prometheus text page (0 when absent).
pub fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

// ---- Appended for tests/faults.rs and tests/soak.rs (fault matrix, breaker, soak). ----

/// Reads one HTTP/1.1 request from `conn` (bytes already read but unused stay in `buf`).
pub fn read_http_request(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Seen> {
    read_request(conn, buf)
}

impl Exchange {
    /// Like [`Exchange::start`], with `RUST_LOG=rust_log` and stderr appended to `log`
    /// (so a test can search the logs for panics or secrets).
    pub fn start_logged(extra: &[&str], log: &std::path::Path, rust_log: &str) -> Exchange {
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        Exchange::spawn(extra, rust_log, Stdio::from(err))
    }

    /// The exchange's pid (for /proc/PID/status and /proc/PID/fd).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }
}

/// The `rtb-dsp` binary built next to this test's binary (`cargo test --workspace` and
/// `cargo build -p dsp-bin` put it there), or `RTB_DSP_BIN`.
pub fn dsp_binary() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("RTB_DSP_BIN") {
        return Some(p.into());
    }
    // target/<profile>/deps/<test> -> target/<profile>/rtb-dsp
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.parent()?.join("rtb-dsp");
    p.is_file().then_some(p)
}

/// A running `rtb-dsp` process (not onboarded by itself); killed on drop.
pub struct DspProcess {
    pub child: Child,
    pub addr: SocketAddr,
}

impl DspProcess {
    /// Starts `rtb-dsp` on `port` (0 picks one) with `extra` flags; None if it did not print
    /// its address within 10 s (e.g. the port is still taken).
    pub fn start(
        bin: &std::path::Path,
        name: &str,
        port: u16,
        extra: &[&str],
    ) -> Option<DspProcess> {
        let port = port.to_string();
        let mut args = vec![
            "--dsp-name",
            name,
            "--bind",
            "127.0.0.1",
            "--port",
            &port,
            "--io-driver",
            "epoll",
        ];
        args.extend_from_slice(extra);
        let mut child = Command::new(bin)
            .args(&args)
            .env_remove("RTB_ONBOARD_TOKEN")
            .env_remove("RTB_DSP_ONBOARD_ENDPOINTS")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let stdout = child.stdout.take()?;
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let give_up = Instant::now() + Duration::from_secs(10);
        loop {
            let left = give_up.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(a) = line.strip_prefix("listening on ") {
                        let addr = a.trim().parse().ok()?;
                        return Some(DspProcess { child, addr });
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
            }
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for DspProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
