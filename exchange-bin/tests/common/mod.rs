//! The exchange's test harness: the real `rtb-exchange` binary on loopback ports it picks itself
//! (`--port 0`), and real `rtb-dsp` processes. The HTTP client, fake DSPs, process handling and
//! metric sampling are the workspace's shared `test-support` crate, re-exported here.
// Each test file uses part of the harness and of the re-exports.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unused_imports)]

pub mod ledger;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    time::Duration,
};

pub use test_support::{
    dsp::{Behaviour, FakeDsp},
    eventually,
    http::{read_reply, request, send, Reply, IO_TIMEOUT},
    process::Process,
    prom::{dsp_sample, sample},
    wire::bid_request,
};

/// How long the exchange gets to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running exchange; killed on drop.
pub struct Exchange {
    pub process: Process,
    pub addr: SocketAddr,
    pub debug: SocketAddr,
}

impl Exchange {
    pub fn start(extra: &[&str]) -> Exchange {
        Exchange::spawn(extra, "warn", Stdio::inherit())
    }

    /// Like [`Exchange::start`], with `RUST_LOG=rust_log` and stderr appended to `log`
    /// (so a test can search the logs for panics or secrets).
    pub fn start_logged(extra: &[&str], log: &Path, rust_log: &str) -> Exchange {
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        Exchange::spawn(extra, rust_log, Stdio::from(err))
    }

    /// The binary under test: `RTB_EXCHANGE_BIN` (scripts/test gives the soak an optimized
    /// build), by default the one cargo built with the tests.
    pub fn binary() -> PathBuf {
        std::env::var_os("RTB_EXCHANGE_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_rtb-exchange").into())
            .into()
    }

    /// The binary with no onboarding settings from the test's own environment.
    pub fn command() -> Command {
        let mut cmd = Command::new(Exchange::binary());
        cmd.env_remove("RTB_ONBOARD_TOKEN")
            .env_remove("RTB_EXCHANGE_OPEN_ONBOARDING")
            .env_remove("RTB_EXCHANGE_BIND");
        cmd
    }

    /// Starts the binary on free loopback ports with the test defaults plus `extra`, and waits
    /// for the lines that say where it listens.
    fn spawn(extra: &[&str], rust_log: &str, stderr: Stdio) -> Exchange {
        let mut cmd = Exchange::command();
        cmd.args([
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
        ])
        .args(extra)
        .env("RUST_LOG", rust_log)
        .stderr(stderr);
        let (process, addrs) = Process::start(
            cmd,
            "rtb-exchange",
            &["listening on ", "debug listening on "],
        )
        .unwrap();
        Exchange {
            process,
            addr: addrs[0].parse().unwrap(),
            debug: addrs[1].parse().unwrap(),
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
    pub fn terminate(&mut self) -> ExitStatus {
        self.process
            .terminate(STOP_TIMEOUT)
            .expect("exchange did not exit after SIGTERM")
    }

    /// The exchange's pid (for /proc/PID/status and /proc/PID/fd).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

/// The `rtb-dsp` binary (`RTB_DSP_BIN`, or built next to the tests); `None` outside CI when it
/// is not built (under CI its absence fails `test`).
pub fn dsp_binary(test: &str) -> Option<PathBuf> {
    test_support::ci::workspace_binary(test, "rtb-dsp", "RTB_DSP_BIN")
}

/// `rtb-dsp` flags for a DSP that answers every request at once with a bid of 2.
pub const ALWAYS_BIDS_AT_2: [&str; 6] = [
    "--latency",
    "fixed:0",
    "--bid-rate",
    "1",
    "--price",
    "fixed:2",
];

/// A running `rtb-dsp` process (not onboarded by itself); killed on drop.
pub struct DspProcess {
    pub process: Process,
    pub addr: SocketAddr,
}

impl DspProcess {
    /// Starts `rtb-dsp` on `port` (0 picks one) with `extra` flags; `None` if it did not print
    /// its address in time (e.g. the port is still taken).
    pub fn start(bin: &Path, name: &str, port: u16, extra: &[&str]) -> Option<DspProcess> {
        let mut cmd = Command::new(bin);
        cmd.args(["--dsp-name", name, "--bind", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .args(["--io-driver", "epoll"])
            .args(extra)
            .env_remove("RTB_ONBOARD_TOKEN")
            .env_remove("RTB_DSP_ONBOARD_ENDPOINTS")
            .env("RUST_LOG", "warn")
            .stderr(Stdio::null());
        let (process, addrs) = Process::start(cmd, name, &["listening on "]).ok()?;
        Some(DspProcess {
            process,
            addr: addrs[0].parse().ok()?,
        })
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}
