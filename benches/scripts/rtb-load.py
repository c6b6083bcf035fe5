#!/usr/bin/env python3
"""rtb-load: the load-benchmark orchestrator of the exchange ("is it fast?").

Owns the scenarios (no-dsp, three-dsps, three-dsps-realistic, many-dsps-10, many-dsps-30,
one-dsp-hangs, one-dsp-slow, overload), the processes they need (rtb-exchange on io_uring and
epoll, rtb-dsp fleets, and the baselines nginx, rtb-io's bench_404, the fan-out floor and the
tokio-exchange), the load runs (wrk closed loop, oha open loop with coordinated-omission
correction), the measurements around each run (/metrics deltas, /proc CPU time), and the report (Markdown + results.json; plots via load-plots.py).

Builds nothing: `benches/scripts/load` builds the binaries and then runs this script.
Stdlib only (the plots run in an optional matplotlib venv). Every process it starts is killed on
exit, Ctrl-C or error; all traffic goes to 127.0.0.1; every run is bounded in time.

Exit status: non-zero only on real failures (a process that does not start, a run with zero
successful requests, a load generator that fails), never on a missed performance target.
"""
import argparse
import datetime
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

# netlab's cgroup helpers (CPU limits as Kubernetes sets them): reused for --exchange-cpus.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploy" / "netlab"))
from netlablib.cgroups import Cgroups, CpuLimit  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "benches" / "scripts"
SAMPLES_DIR = ROOT / ".." / "shared" / "openrtb-samples"
OHA = ROOT / ".tools" / "bin" / "oha"
VENV_PYTHON = ROOT / ".tools" / "venv" / "bin" / "python"

# Layout: the server under test on core 0, load generator and DSPs on core 1.
SERVER_CORE = 0
CLIENT_CORE = 1
# The exchange's default auction deadline cap (rtb-exchange --deadline-ms default).
DEADLINE_MS = 80.0
STARTUP_TIMEOUT_S = 15.0
# The harness onboards DSPs once per scenario; the exchange's 30 s default TTL would drop them
# mid-scenario (the simulators are started without re-onboarding).
DSP_TTL_S = 3600
# A load generator gets its duration plus this before it is killed.
RUN_GRACE_S = 20.0
HTTP_TIMEOUT_S = 5.0
DEFAULT_DURATION_S = 3
SMOKE_DURATION_S = 1
DEFAULT_ROUNDS = 3
# Niceness of the runs when root: the machine may be shared with other work (builds).
DEFAULT_NICE = -10
# wrk and oha take whole seconds.
WARMUP_S = 1
SMOKE_WARMUP_S = 0
# Pause after onboarding so every worker applied the new registry and pre-warmed its pools.
ONBOARD_SETTLE_S = 0.3
OPEN_LOOP_RATES_PCT = [25, 50, 75]
SMOKE_RATES_PCT = [50]
OVERLOAD_RATE_PCT = 200
# Targets of the issue.
TARGET_NGINX = 1.0
TARGET_BARE = 0.9
TARGET_TOKIO_NO_DSP = 1.5
TARGET_TOKIO_THREE = 2.0
TARGET_FLOOR = 0.85
TARGET_THREE_OVER_NO_DSP = 0.33
TARGET_P99_MS = 5.0
TARGET_P999_MS = 15.0
TARGET_P99_MANY_MS = 10.0
TARGET_REUSE = 0.999
TARGET_EPOLL = 0.8
# A server using less of its core than this while core 1 is busier than CLIENT_BUSY was held
# back by the client side, not by itself.
SERVER_BOUND_SHARE = 0.85
CLIENT_BUSY = 0.90
NGINX_BODY = '{"error":"not found"}'
PERCENTILE_KEYS = ["50", "75", "90", "95", "99", "99.9", "99.99"]

FAST = {"latency": "fixed:0", "bid_rate": 1.0, "hang_rate": 0.0}
REALISTIC = {"latency": "lognormal:p50=10,p99=60", "bid_rate": 0.8, "hang_rate": 0.0}
HANGS = {"latency": "fixed:0", "bid_rate": 1.0, "hang_rate": 1.0}
# Answers whatever the request's tmax says: about one call in five lands after the exchange's
# deadline, so its connection either drains (and is reused) or is closed and reopened.
SLOW = {"latency": "lognormal:p50=50,p99=150", "bid_rate": 1.0, "hang_rate": 0.0,
        "ignore_tmax": True}
DSP_NAMES = ["braid", "the-witness", "order-of-the-sinking-star"]

def many_dsps_scenario(count, words):
    """`count` fast DSPs served by two rtb-dsp processes, with the floor at the same width."""
    return {
        "dsps": [FAST] * count,
        "connections": 32,
        "open_connections": 64,
        "rates": OPEN_LOOP_RATES_PCT,
        "baselines": ["floor"],
        "epoll": False,
        "dsp_processes": 2,
        "about": f"{words} DSPs answering at once (latency 0, always bid; two rtb-dsp serve them)",
    }


# Closed-loop connections are sized so that the server, not the number of requests in flight,
# bounds throughput: latency-bound scenarios (realistic DSPs, a hanging DSP) need many more.
SCENARIOS = {
    "no-dsp": {
        "dsps": [],
        "connections": 32,
        "open_connections": 64,
        "rates": OPEN_LOOP_RATES_PCT,
        "baselines": ["nginx", "bench-404", "tokio"],
        "epoll": True,
        "about": "the 404 path: the request is decoded, no DSP is registered",
    },
    "three-dsps": {
        "dsps": [FAST, FAST, FAST],
        "connections": 32,
        "open_connections": 64,
        "rates": OPEN_LOOP_RATES_PCT,
        "baselines": ["floor", "tokio"],
        "epoll": True,
        "about": "three rtb-dsp answering at once (latency 0, always bid)",
    },
    "three-dsps-realistic": {
        "dsps": [REALISTIC, REALISTIC, REALISTIC],
        "connections": 256,
        "open_connections": 512,
        "rates": OPEN_LOOP_RATES_PCT,
        "baselines": [],
        "epoll": False,
        "about": "three rtb-dsp, latency lognormal p50 10 ms p99 60 ms, 80% bid rate",
    },
    # Issue 19: fan-out at the width real exchanges run. Two one-worker rtb-dsp processes
    # serve every DSP name (one process per DSP would swamp core 1, which they share with the
    # load generator); the exchange still keeps a pool per name and calls each. The floor at
    # the same width and CPU per request say what the exchange costs.
    "many-dsps-10": many_dsps_scenario(10, "ten"),
    "many-dsps-30": many_dsps_scenario(30, "thirty"),
    "one-dsp-hangs": {
        "dsps": [FAST, FAST, HANGS],
        "connections": 512,
        "open_connections": 512,
        "rates": OPEN_LOOP_RATES_PCT,
        "baselines": [],
        "epoll": False,
        "about": "two good rtb-dsp and one that never answers (--hang-rate 1)",
    },
    "one-dsp-slow": {
        "dsps": [FAST, FAST, SLOW],
        "connections": 512,
        "open_connections": 512,
        "rates": OPEN_LOOP_RATES_PCT,
        "baselines": [],
        "epoll": False,
        "about": "two good rtb-dsp and one answering lognormal p50 50 ms p99 150 ms past tmax "
                 "(about 20% of its answers after the deadline)",
    },
    "overload": {
        "dsps": [REALISTIC, REALISTIC, REALISTIC],
        "connections": 256,
        "open_connections": 512,
        "rates": [OVERLOAD_RATE_PCT],
        "baselines": [],
        "epoll": False,
        "about": "realistic DSPs, offered load at 2x the closed-loop capacity",
    },
}
SERVER_LABELS = {
    "exchange": "rtb-exchange (io_uring)",
    "exchange-epoll": "rtb-exchange (epoll)",
    "nginx": "nginx `return 404`",
    "bench-404": "bare responder (rtb-io bench_404)",
    "tokio": "tokio-exchange (tokio+hyper+serde)",
    "floor": "fan-out floor (rtb-io bench_forward: same DSPs, same pools, no JSON)",
}

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Failure(Exception):
    """A real failure: the run cannot be trusted (process did not start, nothing answered)."""


def log(msg):
    print(msg, flush=True)


# ---------------------------------------------------------------- processes


def keep_harness_off_server_core():
    """Pins the harness (and so its samplers, the `ss` it runs ten times a second, and every
    child that is not pinned on purpose) to the client core. Left to roam, they ran on the
    server's core too: at half load the exchange then left requests unread past 10 ms up to
    19 times a run, and the queue-wait shed answered them 204 (BENCHMARKS.md, "Half load")."""
    try:
        os.sched_setaffinity(0, {CLIENT_CORE})
    except OSError as e:
        log(f"could not pin the harness to core {CLIENT_CORE} ({e}): it may disturb the server")


class Procs:
    """Every process the harness started; all are killed by stop_all (process group each)."""

    def __init__(self, work):
        self.work = work
        self.procs = []

    def start(self, name, argv, core=None):
        if core is not None:
            argv = ["taskset", "-c", str(core)] + argv
        out = open(self.work / f"{name}.out", "wb")
        err = open(self.work / f"{name}.err", "wb")
        env = dict(os.environ, RUST_LOG="warn")
        p = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                             start_new_session=True, env=env)
        self.procs.append((name, p))
        return p

    def stop(self, p):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            p.wait(timeout=3)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=3)
        self.procs = [(n, q) for n, q in self.procs if q is not p]

    def stop_all(self):
        for _, p in list(reversed(self.procs)):
            try:
                self.stop(p)
            except Exception as e:  # keep killing the rest
                log(f"warning: could not stop pid {p.pid}: {e}")

    def wait_line(self, name, p, pattern, timeout=STARTUP_TIMEOUT_S):
        """First capture group of `pattern` in the process's stdout, or Failure."""
        path = self.work / f"{name}.out"
        rx = re.compile(pattern, re.M)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            m = rx.search(path.read_text(errors="replace"))
            if m:
                return m.group(1)
            if p.poll() is not None:
                break
            time.sleep(0.05)
        err = (self.work / f"{name}.err").read_text(errors="replace")[-2000:]
        raise Failure(f"{name} did not start (exit {p.poll()}); stderr:\n{err}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, p, name, timeout=STARTUP_TIMEOUT_S):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if p.poll() is not None:
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise Failure(f"{name}: nothing listening on 127.0.0.1:{port} (exit {p.poll()})")


def http(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"content-type": "application/json"})
    try:
        with NO_PROXY.open(req, timeout=HTTP_TIMEOUT_S) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def cpu_seconds(pid):
    """utime+stime of `pid` and its direct children (nginx's worker), seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    pids = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[1]) == pid:
                pids.append(int(entry))
    for p in pids:
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return total / tick


def core_times():
    """(busy, total) jiffies of each of the two cores, from /proc/stat."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        parts = line.split()
        if parts[0] in (f"cpu{SERVER_CORE}", f"cpu{CLIENT_CORE}"):
            vals = [int(v) for v in parts[1:]]
            idle = vals[3] + vals[4]  # idle + iowait
            out[parts[0]] = (sum(vals) - idle, sum(vals))
    return out


TCP_COUNTERS = ("ListenOverflows", "ListenDrops", "TCPSynRetrans", "TCPTimeouts")


def tcp_counters():
    """Machine-wide TcpExt counters (/proc/net/netstat): SYN retransmits and retransmit
    timeouts explain ~1 s (initial RTO) or ~200 ms stalls that no server counter shows."""
    lines = [l.split() for l in Path("/proc/net/netstat").read_text().splitlines()]
    for names, values in zip(lines[::2], lines[1::2]):
        if names and names[0] == "TcpExt:":
            table = dict(zip(names[1:], values[1:]))
            return {k: int(table.get(k, 0)) for k in TCP_COUNTERS}
    return {}


def busy_share(before, after, cpu):
    b0, t0 = before.get(cpu, (0, 0))
    b1, t1 = after.get(cpu, (0, 0))
    return (b1 - b0) / (t1 - t0) if t1 > t0 else float("nan")


# ---------------------------------------------------------------- servers


class Server:
    """A server under test: name, URL of the auction route, process, optional debug address."""

    def __init__(self, name, addr, proc, debug=None):
        self.name = name
        self.addr = addr
        self.proc = proc
        self.debug = debug
        self.onboarded = []

    @property
    def url(self):
        return f"http://{self.addr}/openrtb2/auction"

    def metrics(self):
        if not self.debug:
            return {}
        status, text = http("GET", f"http://{self.debug}/metrics")
        return parse_metrics(text) if status == 200 else {}

    def onboard(self, dsps, options=None):
        """Onboards each (name, base_url), with the body fields in `options` (e.g. gzip)."""
        for name, base_url in dsps:
            status, body = http("POST", f"http://{self.addr}/dsp",
                                {"name": name, "base_url": base_url, **(options or {})})
            if status >= 300:
                raise Failure(f"{self.name}: onboarding {name} answered {status}: {body}")
            self.onboarded.append(name)

    def remove_all(self):
        for name in self.onboarded:
            http("DELETE", f"http://{self.addr}/dsp/{name}")
        self.onboarded = []


def parse_metrics(text):
    """Prometheus text exposition -> {(name, labels text): value}."""
    values = {}
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)", line)
        if m and not line.startswith("#"):
            try:
                values[(m.group(1), m.group(2) or "")] = float(m.group(3))
            except ValueError:
                pass
    return values


# rtb_core::engine::ShedReason::as_str, in its order.
SHED_REASONS = ("too_late", "event_loop_lag", "in_flight", "no_dsp_matched", "overload")


def metric_sum(before, after, name, label=None):
    """Delta of a counter summed over its series; optional label filter `key="value"`."""
    total = 0.0
    for (n, labels), v in after.items():
        if n == name and (label is None or label in labels):
            total += v - before.get((n, labels), 0.0)
    return total


# With --exchange-cpus: (Cgroups, CpuLimit) the exchange processes are started under.
EXCHANGE_LIMIT = None
# With --dsp-nice: the niceness every rtb-dsp runs at, so that on the client core the DSPs are
# scheduled ahead of the load generator (a diagnostic: how much of a tail is the DSPs waiting
# for core 1). None: the harness's own, like every other process.
DSP_NICE = None
# With --generator-nice: the niceness oha runs at, so that it reads each answer as soon as it
# comes (a diagnostic: how much of the client's tail is the generator's own lag on a core it
# shares with the DSPs). None: the harness's own.
GENERATOR_NICE = None


def niced(niceness):
    """The `nice -n` prefix that runs a command at `niceness`; empty for None."""
    if niceness is None:
        return []
    return ["nice", "-n", str(niceness - os.getpriority(os.PRIO_PROCESS, 0))]


def start_exchange(procs, bins, driver, extra_args=()):
    name = f"exchange-{driver}"
    argv = ["taskset", "-c", str(SERVER_CORE), str(bins / "rtb-exchange"), "--bind", "127.0.0.1",
            "--port", "0", "--debug-port", "0", "--workers", "1", "--pin", "true",
            "--io-driver", driver, "--dsp-ttl-s", str(DSP_TTL_S)] + list(extra_args)
    if EXCHANGE_LIMIT:
        # A smaller CPU for the exchange alone (a CFS quota), so that it, not core 1 (load
        # generator and DSPs), is what saturates: overload of the exchange itself.
        cgroups, limit = EXCHANGE_LIMIT
        argv = Cgroups.wrap(cgroups.create(f"load-{name}-{os.getpid()}", limit), argv)
    p = procs.start(name, argv)
    addr = procs.wait_line(name, p, r"^listening on (\S+)")
    debug = procs.wait_line(name, p, r"^debug listening on (\S+)")
    server = Server("exchange" if driver == "uring" else "exchange-epoll", addr, p, debug)
    drivers = {labels for (n, labels) in server.metrics() if n == "rtb_worker_info"}
    server.driver = ",".join(sorted(re.findall(r'driver="([^"]+)"', "".join(drivers))))
    return server


def start_tokio(procs, bins):
    p = procs.start("tokio-exchange", [str(bins / "tokio-exchange"), "--bind", "127.0.0.1",
                                       "--port", "0", "--workers", "1"], core=SERVER_CORE)
    return Server("tokio", procs.wait_line("tokio-exchange", p, r"^listening on (\S+)"), p)


def start_bench_404(procs, bins):
    port = free_port()
    p = procs.start("bench-404", [str(bins / "examples" / "bench_404"), str(port), "1", "auto"],
                    core=SERVER_CORE)
    wait_port(port, p, "bench_404")
    return Server("bench-404", f"127.0.0.1:{port}", p)


def start_floor(procs, bins, dsps):
    """The bare fan-out forwarder (rtb-io's bench_forward) to these DSPs: the floor of the
    exchange's DSP path, measured against the same DSPs in the same scenario."""
    port = free_port()
    upstreams = [u.removeprefix("http://") + "/bid" for _, u in dsps]
    p = procs.start("floor", [str(bins / "examples" / "bench_forward"), str(port), "1", "auto"]
                    + upstreams, core=SERVER_CORE)
    wait_port(port, p, "bench_forward")
    return Server("floor", f"127.0.0.1:{port}", p)


def start_nginx(procs, work):
    port = free_port()
    d = work / "nginx"
    d.mkdir(exist_ok=True)
    conf = d / "nginx.conf"
    conf.write_text(f"""worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    client_body_buffer_size 16k;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        default_type application/json;
        location / {{ return 404 '{NGINX_BODY}'; }}
    }}
}}
""")
    p = procs.start("nginx", ["nginx", "-p", str(d), "-e", str(d / "error.log"), "-c", str(conf)],
                    core=SERVER_CORE)
    wait_port(port, p, "nginx")
    return Server("nginx", f"127.0.0.1:{port}", p)


def start_dsps(procs, bins, profiles, prefix, processes=None):
    """Starts one rtb-dsp per profile on the client core, or, with `processes`, that many
    serving every DSP name round robin (for fleets of one profile: ten or thirty rtb-dsp
    processes would swamp the client core); returns [(name, base_url, proc)].
    Names carry the scenario's prefix: the exchange's per-DSP pool counters restart when a
    name is onboarded again (a new pool), so reused names would give negative deltas."""
    out = []
    for i, prof in enumerate(profiles):
        name = f"{prefix}-{DSP_NAMES[i] if i < len(DSP_NAMES) else f'dsp{i + 1}'}"
        if processes and i >= processes:
            _, url, p = out[i % processes]
            out.append((name, url, p))
            continue
        p = procs.start(f"dsp-{name}", niced(DSP_NICE) + [
            str(bins / "rtb-dsp"), "--dsp-name", name, "--bind", "127.0.0.1", "--port", "0",
            "--workers", "1", "--latency", prof["latency"], "--bid-rate", str(prof["bid_rate"]),
            "--hang-rate", str(prof["hang_rate"]), "--onboard-interval-s", "3600"]
            + (["--ignore-tmax"] if prof.get("ignore_tmax") else []),
            core=CLIENT_CORE)
        addr = procs.wait_line(f"dsp-{name}", p, r"^listening on (\S+)")
        out.append((name, f"http://{addr}", p))
    return out


# ---------------------------------------------------------------- load generators


def run_wrk(work, server, bodies, connections, duration_s, extra_args=()):
    """wrk closed loop; `extra_args` go before the URL (e.g. `-H "Connection: close"`, which
    load-wrk.lua adds to every request: a new connection per request)."""
    argv = ["taskset", "-c", str(CLIENT_CORE), "wrk", "-t1", f"-c{connections}",
            f"-d{duration_s}s", "--timeout", "2s", "-s", str(SCRIPTS / "load-wrk.lua"),
            *extra_args, server.url, "--"] + [str(b) for b in bodies]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + RUN_GRACE_S)
    except subprocess.TimeoutExpired:
        raise Failure(f"wrk against {server.name} did not finish in time")
    m = re.search(r"^WRKJSON (.*)$", r.stdout, re.M)
    if r.returncode != 0 or not m:
        raise Failure(f"wrk against {server.name} failed ({r.returncode}): {r.stderr[-1000:]}")
    w = json.loads(m.group(1))
    secs = w["duration_us"] / 1e6
    errors = w["errors_connect"] + w["errors_read"] + w["errors_write"] + w["errors_timeout"]
    return {
        "tool": "wrk",
        "requests": w["requests"],
        "seconds": secs,
        "rps": w["requests"] / secs if secs else 0.0,
        "percentiles_ms": w["percentiles_ms"],
        "max_ms": w["max_ms"],
        "status": {"2xx/3xx": w["requests"] - w["errors_status"],
                   "4xx/5xx": w["errors_status"]},
        "socket_errors": errors,
        "timeouts": w["errors_timeout"],
        "ok": w["requests"],
    }


# With --open-in-flight-ms: beyond capacity, oha gets enough connections for every request of
# that many milliseconds to be in flight at once. oha sends one request per connection at a
# time, so its connection count caps what the server holds: with the scenario's 512 at 4x the
# exchange's capacity under a 0.4 CPU quota (17,600 a second), the exchange never held more
# than 512, about 29 ms of arrivals (BENCHMARKS.md, "how many connections the client holds").
# None: the scenario's count.
OPEN_IN_FLIGHT_S = None


def open_connections(sc, rate, rate_pct):
    """oha's connections for an open-loop run at `rate`: the scenario's, or beyond capacity
    with --open-in-flight-ms, enough for OPEN_IN_FLIGHT_S of arrivals when that is more."""
    if OPEN_IN_FLIGHT_S is None or rate_pct <= 100:
        return sc["open_connections"]
    return max(sc["open_connections"], math.ceil(rate * OPEN_IN_FLIGHT_S))


def run_oha(server, lines_file, rate, connections, duration_s, corrected=True):
    argv = ["taskset", "-c", str(CLIENT_CORE)] + niced(GENERATOR_NICE) + [
            str(OHA), "--no-tui", "--output-format", "json",
            "-z", f"{duration_s}s", "-q", str(max(1, int(rate))), "-w", "-c", str(connections)]
    if corrected:
        argv.append("--latency-correction")
    argv += [ "-m", "POST", "-H", "content-type: application/json", "-Z", str(lines_file), server.url]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + RUN_GRACE_S)
    except subprocess.TimeoutExpired:
        raise Failure(f"oha against {server.name} did not finish in time")
    if r.returncode != 0:
        raise Failure(f"oha against {server.name} failed ({r.returncode}): {r.stderr[-1000:]}")
    o = json.loads(r.stdout)
    s = o["summary"]
    total = sum(int(v) for v in o.get("statusCodeDistribution", {}).values())
    errors = sum(int(v) for v in o.get("errorDistribution", {}).values())
    pct = {k.lstrip("p"): (v or 0.0) * 1000 for k, v in o.get("latencyPercentiles", {}).items()}
    return {
        "tool": "oha",
        "connections": connections,
        "requests": total,
        "seconds": duration_s,
        "rps": total / duration_s,
        "offered_rps": rate,
        "percentiles_ms": pct,
        "max_ms": (s.get("slowest") or 0.0) * 1000,
        "status": {k: int(v) for k, v in sorted(o.get("statusCodeDistribution", {}).items())},
        "socket_errors": errors,
        "error_kinds": o.get("errorDistribution", {}),
        "timeouts": 0,
        "ok": total,
    }


# How often the kernel's queues in front of the server are sampled during an open-loop run.
KERNEL_QUEUE_SAMPLE_S = 0.1


class Sampler:
    """Takes `_sample()` every `every_s` seconds on a thread of its own while a `with` block
    lasts (never when `every_s` is None), into `samples`; the first failed sample ends it."""

    def __init__(self, every_s):
        self.every_s = every_s
        self.samples = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while self.every_s and not self.stop.wait(self.every_s):
            try:
                self.samples.append(self._sample())
            except (OSError, subprocess.SubprocessError):
                return

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.stop.set()
        self.thread.join(timeout=6)


class KernelQueue(Sampler):
    """Samples, with `ss`, what waits in the kernel in front of the server while a run lasts:
    bytes received on its connections but not read yet (Recv-Q of each established socket),
    and connections accepted by the kernel but not by the server (the listener's Recv-Q).
    Bytes are turned into requests with the mean body size; Little's law (mean queued /
    answered rate) estimates how long a request waited there before the server read it, the
    part of the client's latency the server's own clock cannot see (issue 14)."""

    def __init__(self, port):
        super().__init__(KERNEL_QUEUE_SAMPLE_S)
        self.port = port  # samples: (unread bytes, sockets with unread bytes, accept queue)

    def _sample(self):
        out = subprocess.run(["ss", "-Hatn", f"( sport = :{self.port} )"], capture_output=True,
                             text=True, timeout=5).stdout
        unread = sockets = accept = 0
        for line in out.splitlines():
            cols = line.split()
            if len(cols) < 2 or not cols[1].isdigit():
                continue
            if cols[0] == "LISTEN":
                accept += int(cols[1])
            elif cols[0] == "ESTAB" and int(cols[1]) > 0:
                unread += int(cols[1])
                sockets += 1
        return unread, sockets, accept

    def summary(self, mean_body_bytes, answered_rps):
        if not self.samples:
            return None
        queued = [u / mean_body_bytes for u, _, _ in self.samples]
        mean_queued = statistics.mean(queued)
        return {
            "samples": len(self.samples),
            "mean_requests": mean_queued,
            "max_requests": max(queued),
            "max_sockets": max(s for _, s, _ in self.samples),
            "max_accept_queue": max(a for _, _, a in self.samples),
            "little_wait_ms": mean_queued / answered_rps * 1000 if answered_rps else None,
        }


# With --timeline-ms: how often the exchange's counters are scraped during an open-loop run.
TIMELINE_S = None


class Timeline(Sampler):
    """Scrapes the exchange's /metrics every TIMELINE_S while a run lasts, and turns the samples
    into rates per interval: real auctions (won + no bid), sheds by reason and answers later
    than the deadline + 5 ms by the exchange's clock. Shows whether admission holds one level
    through a run or flips between modes (issue 14). A diagnostic: the debug port's thread
    renders each scrape, on the exchange's CPU quota when one is set."""

    def __init__(self, server):
        super().__init__(TIMELINE_S)
        self.server = server  # samples: (monotonic seconds, parsed metrics)

    def _sample(self):
        return time.monotonic(), self.server.metrics()

    def rates(self):
        """[{t, goodput, shed, shed_<reason>..., late_85}] per interval, t from the first sample."""
        every = "rtb_bid_request_duration_seconds"
        late = f'le="{(DEADLINE_MS + 5) / 1000:g}"'
        out = []
        for (t0, a), (t1, b) in zip(self.samples, self.samples[1:]):
            dt = t1 - t0
            if dt <= 0:
                continue
            won = metric_sum(a, b, "rtb_auctions_total", 'outcome="won"')
            no_bid = metric_sum(a, b, "rtb_auctions_total", 'outcome="no_bid"')
            row = {"t": round(t1 - self.samples[0][0], 3), "goodput": (won + no_bid) / dt,
                   "shed": metric_sum(a, b, "rtb_auctions_total", 'outcome="shed"') / dt,
                   "late_85": (metric_sum(a, b, every + "_count")
                               - metric_sum(a, b, every + "_bucket", late)) / dt}
            for reason in SHED_REASONS:
                row[f"shed_{reason}"] = metric_sum(
                    a, b, "rtb_auctions_shed_total", f'reason="{reason}"') / dt
            out.append(row)
        return out


def timeline_line(rows, capacity):
    """One log line: goodput per interval as a share of `capacity`, and its spread."""
    if not rows or not capacity:
        return "timeline: no samples" if not rows else "timeline: no capacity to compare with"
    shares = [100 * r["goodput"] / capacity for r in rows]
    cells = " ".join(f"{x:.0f}" for x in shares)
    return (f"timeline, goodput % of {capacity:.0f}/s per {TIMELINE_S * 1000:.0f} ms: {cells} "
            f"(min {min(shares):.0f}, median {statistics.median(shares):.0f}, "
            f"max {max(shares):.0f})")


def measured(run_fn, server, allow_zero=False):
    """Runs `run_fn` and adds the server's CPU time and /metrics deltas over it. Zero
    successful requests is a Failure unless `allow_zero` (a run meant to find where nothing
    gets through, e.g. a full conntrack table)."""
    before = server.metrics()
    cpu0 = cpu_seconds(server.proc.pid)
    cores0 = core_times()
    tcp0 = tcp_counters()
    t0 = time.monotonic()
    res = run_fn()
    wall = time.monotonic() - t0
    cores1 = core_times()
    tcp1 = tcp_counters()
    res["tcp"] = {k: tcp1.get(k, 0) - tcp0.get(k, 0) for k in tcp1}
    cpu = cpu_seconds(server.proc.pid) - cpu0
    after = server.metrics()
    res["core0_busy"] = busy_share(cores0, cores1, f"cpu{SERVER_CORE}")
    res["core1_busy"] = busy_share(cores0, cores1, f"cpu{CLIENT_CORE}")
    res["loadavg"] = os.getloadavg()[0]
    res["server"] = server.name
    res["cpu_s"] = cpu
    res["cpu_util"] = cpu / wall if wall else 0.0
    res["cpu_ms_per_1k"] = cpu / res["requests"] * 1e6 if res["requests"] else None
    if after:
        res["outcomes"] = {o: metric_sum(before, after, "rtb_auctions_total", f'outcome="{o}"')
                           for o in ("won", "no_bid", "shed", "invalid", "no_dsp")}
        res["shed_reasons"] = {r: metric_sum(before, after, "rtb_auctions_shed_total",
                                             f'reason="{r}"') for r in SHED_REASONS}
        res["waited_turn"] = metric_sum(before, after, "rtb_requests_waited_turn_total")
        res["dsp_timeouts"] = metric_sum(before, after, "rtb_dsp_timeouts_total")
        res["pool_opened"] = metric_sum(before, after, "rtb_dsp_pool_connections_opened_total")
        res["pool_reused"] = metric_sum(before, after, "rtb_dsp_pool_connections_reused_total")
        res["breaker_skipped"] = metric_sum(before, after, "rtb_dsp_skipped_total")
        # Timed-out calls' connections drained and reused, and calls refused a new connection
        # (absent from exchanges that predate draining and connect pacing: 0).
        res["pool_drained"] = metric_sum(before, after, "rtb_dsp_pool_drains_total",
                                         'result="reused"')
        res["connect_paced"] = metric_sum(before, after, "rtb_dsp_errors_total",
                                          'kind="connect_paced"')
        # The exchange's own arrival-to-answer histogram (auctions that called DSPs).
        res["server_auctions"] = metric_sum(before, after, "rtb_auction_duration_seconds_count")
        res["server_late"] = res["server_auctions"] - metric_sum(
            before, after, "rtb_auction_duration_seconds_bucket", f'le="{DEADLINE_MS / 1000:g}"')
        # How long requests sat unread in the kernel, by its receive stamps (--kernel-arrival;
        # all zero without them): count, summed seconds, and how many waited over 10 ms.
        wait = "rtb_request_kernel_wait_seconds"
        res["kernel_wait_n"] = metric_sum(before, after, wait + "_count")
        res["kernel_wait_s"] = metric_sum(before, after, wait + "_sum")
        res["kernel_wait_over_10ms"] = res["kernel_wait_n"] - metric_sum(
            before, after, wait + "_bucket", 'le="0.01"')
        res["kernel_wait_over_deadline"] = res["kernel_wait_n"] - metric_sum(
            before, after, wait + "_bucket", f'le="{DEADLINE_MS / 1000:g}"')
        # Every bid request's arrival to answer, sheds included: how many the exchange itself
        # answered after the deadline (absent from exchanges before this series: 0).
        every = "rtb_bid_request_duration_seconds"
        res["answers_n"] = metric_sum(before, after, every + "_count")
        res["answers_late"] = res["answers_n"] - metric_sum(
            before, after, every + "_bucket", f'le="{DEADLINE_MS / 1000:g}"')
        # DSP calls (send to answer, by the exchange's clock) over 5 ms: the DSPs' share of the
        # half-load tail, since an auction waits for its slowest DSP.
        calls = "rtb_dsp_call_duration_seconds"
        res["dsp_calls_n"] = metric_sum(before, after, calls + "_count")
        res["dsp_calls_over_5ms"] = res["dsp_calls_n"] - metric_sum(
            before, after, calls + "_bucket", 'le="0.005"')
        # The same answers over the half-load targets (p99 5 ms, p99.9 15 ms) and over the
        # deadline + 5 ms, where the exchange has those buckets (`None` where it has not).
        res["answers_over_ms"] = {
            ms: res["answers_n"] - metric_sum(before, after, every + "_bucket", f'le="{ms / 1000:g}"')
            if any(n == every + "_bucket" and f'le="{ms / 1000:g}"' in lb for (n, lb) in after)
            else None
            for ms in ANSWER_TARGETS_MS}
        if res["tool"] == "wrk":
            # wrk only splits 2xx/3xx from the rest; the exchange's counters say which.
            o = res["outcomes"]
            res["status"] = {"200": int(o["won"]), "204": int(o["no_bid"] + o["shed"]),
                             "400": int(o["invalid"]), "404": int(o["no_dsp"]),
                             "other": max(0, res["requests"] - int(sum(o.values())))}
    if res["ok"] == 0 and not allow_zero:
        raise Failure(f"zero successful requests against {server.name}")
    return res


def shed_by_reason(runs):
    """The shed auctions of `runs` by reason, the reasons that shed any: `too_late 12, ...`."""
    tot = {k: sum(r.get("shed_reasons", {}).get(k, 0) for r in runs) for k in SHED_REASONS}
    return ", ".join(f"{k} {int(v)}" for k, v in tot.items() if v) or "-"


# ---------------------------------------------------------------- bodies


BUILTIN_REQUESTS = [
    {"id": "builtin-banner", "tmax": 120, "at": 2, "cur": ["USD"],
     "imp": [{"id": "1", "banner": {"w": 300, "h": 250}, "bidfloor": 0.5, "bidfloorcur": "USD"}],
     "site": {"id": "s1", "domain": "example.com", "page": "https://example.com/a"},
     "device": {"ua": "Mozilla/5.0", "ip": "192.0.2.1"}, "user": {"id": "u1"}},
    {"id": "builtin-video", "tmax": 100, "at": 1, "cur": ["USD"],
     "imp": [{"id": "1", "video": {"mimes": ["video/mp4"], "w": 640, "h": 360}, "bidfloor": 2.0}],
     "app": {"id": "a1", "bundle": "com.example.app"},
     "device": {"ua": "Mozilla/5.0", "ip": "192.0.2.2"}},
]
BUILTIN_PAD_BYTES = 2500


def prepare_bodies(work):
    """One-line bodies (newlines outside strings become spaces: same bytes count, valid JSON),
    one file each for wrk plus the oha -Z lines file."""
    files = sorted(SAMPLES_DIR.glob("*-req-*.json")) if SAMPLES_DIR.is_dir() else []
    raw = []
    if files:
        raw = [f.read_bytes() for f in files]
        source = f"{len(files)} samples from {SAMPLES_DIR.resolve()}"
    else:
        log(f"samples folder {SAMPLES_DIR} absent: using {len(BUILTIN_REQUESTS)} built-in requests")
        for r in BUILTIN_REQUESTS:
            r = dict(r, ext={"pad": "x" * BUILTIN_PAD_BYTES})
            raw.append(json.dumps(r).encode())
        source = "built-in requests (samples folder absent)"
    d = work / "bodies"
    d.mkdir()
    out = []
    for i, b in enumerate(raw):
        json.loads(b)  # must be valid JSON before and after
        one = b.replace(b"\r", b" ").replace(b"\n", b" ").strip()
        json.loads(one)
        p = d / f"{i:02d}.json"
        p.write_bytes(one)
        out.append(p)
    lines = d / "lines.txt"
    lines.write_bytes(b"\n".join(p.read_bytes() for p in out) + b"\n")
    sizes = [p.stat().st_size for p in out]
    return out, lines, {"source": source, "count": len(out), "mean_bytes": statistics.mean(sizes),
                        "min_bytes": min(sizes), "max_bytes": max(sizes)}


# ---------------------------------------------------------------- orchestration


class Progress:
    def __init__(self, planned_s):
        self.start = time.monotonic()
        self.planned = planned_s
        self.done = 0.0

    def step(self, msg, seconds):
        elapsed = time.monotonic() - self.start
        remaining = max(0.0, self.planned - self.done)
        log(f"[{fmt_clock(elapsed)} elapsed, ~{fmt_clock(remaining)} left] {msg}")
        self.done += seconds


def fmt_clock(s):
    return f"{int(s) // 60}:{int(s) % 60:02d}"


def plan_seconds(names, args):
    total = 0.0
    per_run = args.duration_s + 0.6
    for name in names:
        sc = SCENARIOS[name]
        others = (0 if args.skip_baselines else len(sc["baselines"])) + (1 if sc["epoll"] else 0)
        runs = 2 * others if others else 1
        total += args.rounds * runs * per_run + (1 + others) * args.warmup_s
        total += len(rates_for(sc, args)) * per_run if OHA.exists() else 0
        total += 1.5  # process start-up
    return total


def rates_for(sc, args):
    if args.rates_pct:
        return args.rates_pct
    if args.smoke and sc["rates"] != [OVERLOAD_RATE_PCT]:
        return SMOKE_RATES_PCT
    return sc["rates"]


def run_scenario(name, args, procs, bins, work, bodies, lines, servers, progress):
    sc = SCENARIOS[name]
    log(f"== scenario {name}: {sc['about']}")
    prefix = f"s{list(SCENARIOS).index(name) + 1}"
    fleet = (start_dsps(procs, bins, sc["dsps"], prefix, sc.get("dsp_processes"))
             if sc["dsps"] else [])
    dsps = [(n, u) for n, u, _ in fleet]
    order = ["exchange"]
    if not args.skip_baselines:
        order += sc["baselines"]
    if sc["epoll"]:
        order.append("exchange-epoll")
    floor = None
    if "floor" in order and dsps:
        floor = servers["floor"] = start_floor(procs, bins, dsps)
    targets = [servers[s] for s in order if s in servers]
    for s in targets:
        s.remove_all()
        if dsps and s.name in ("exchange", "exchange-epoll", "tokio"):
            s.onboard(dsps)
    if dsps:
        time.sleep(ONBOARD_SETTLE_S)
    result = {"about": sc["about"], "dsps": sc["dsps"], "connections": sc["connections"],
              "open_connections": sc["open_connections"], "closed": {}, "open": [],
              "round_ratios": {}}
    conns = sc["connections"]
    # Warm-up: pools open, caches fill; not measured.
    for s in targets:
        if args.warmup_s > 0:
            progress.step(f"{name}: warm-up {s.name} ({args.warmup_s}s)", args.warmup_s)
            run_wrk(work, s, bodies, conns, args.warmup_s)
    def closed_run(s, rnd):
        progress.step(f"{name}: closed loop (wrk -c{conns}) {s.name}, round "
                      f"{rnd + 1}/{args.rounds} ({args.duration_s}s)", args.duration_s + 0.6)
        res = measured(lambda: run_wrk(work, s, bodies, conns, args.duration_s), s)
        res["round"] = rnd + 1
        result["closed"].setdefault(s.name, []).append(res)
        log(f"    {s.name:<15} {res['rps']:>9.0f} req/s  p50 {pct(res, '50'):.3f} ms  "
            f"p99 {pct(res, '99'):.3f} ms  max {res['max_ms']:.1f} ms  "
            f"server {res['cpu_util'] * 100:.0f}% of a core, core0 busy "
            f"{res['core0_busy'] * 100:.0f}%, core1 busy {res['core1_busy'] * 100:.0f}%")
        return res

    exchange, others = targets[0], targets[1:]
    for rnd in range(args.rounds):
        if not others:
            closed_run(exchange, rnd)
            continue
        # Each comparison is a pair of adjacent runs, the order flipping every round
        # (A B, B A, A B, ...): the machine's load of the moment is shared by both runs of a
        # pair, and a ratio is only ever taken within a pair.
        for other in others:
            pair = [exchange, other] if rnd % 2 == 0 else [other, exchange]
            got = {s.name: closed_run(s, rnd)["rps"] for s in pair}
            if got[other.name] > 0:
                result["round_ratios"].setdefault(other.name, []).append(
                    got[exchange.name] / got[other.name])
    exch = result["closed"].get("exchange", [])
    max_rps = statistics.median(r["rps"] for r in exch) if exch else 0.0
    result["max_rps"] = max_rps
    if not OHA.exists():
        log(f"    oha not installed at {OHA}: open-loop runs skipped")
    else:
        runs = [(p, True) for p in rates_for(sc, args)]
        if sc["rates"] == [OVERLOAD_RATE_PCT]:
            # Beyond capacity the client's own queue (all connections busy) dominates the
            # corrected latency; the uncorrected run times answered requests from their send.
            runs.append((OVERLOAD_RATE_PCT, False))
        for rate_pct, corrected in runs:
            rate = (args.capacity_rps or max_rps) * rate_pct / 100.0
            s = servers["exchange"]
            progress.step(f"{name}: open loop (oha) {s.name} at {rate_pct}% = {rate:.0f} req/s "
                          f"({args.duration_s:.0f}s)", args.duration_s + 0.6)
            port = int(s.addr.rsplit(":", 1)[1])
            with KernelQueue(port) as queue, Timeline(s) as timeline:
                res = measured(lambda: run_oha(s, lines, rate, open_connections(sc, rate, rate_pct),
                                               args.duration_s, corrected), s)
            res["kernel_queue"] = queue.summary(bodies_mean_bytes(lines), res["rps"])
            if TIMELINE_S:
                res["timeline"] = timeline.rates()
                log(f"    {timeline_line(res['timeline'], args.capacity_rps or max_rps)}")
            res["rate_pct"] = rate_pct
            res["corrected"] = corrected
            result["open"].append(res)
            log(f"    {rate_label(res)}: {res['rps']:>9.0f} req/s  p50 {pct(res, '50'):.3f}  "
                f"p99 {pct(res, '99'):.3f}  p99.9 {pct(res, '99.9'):.3f}  "
                f"max {res['max_ms']:.1f} ms  status {res['status']}  "
                f"errors {res['socket_errors']}")
    for s in targets:
        s.remove_all()
    if floor is not None:
        procs.stop(floor.proc)
        del servers["floor"]
    for _, _, p in fleet:
        procs.stop(p)
    return result


def bodies_mean_bytes(lines_file):
    """Mean size of the bodies oha sends (one per line of its -Z file)."""
    sizes = [len(line) for line in Path(lines_file).read_bytes().splitlines() if line]
    return statistics.mean(sizes) if sizes else 1.0


def kernel_queue_cell(r):
    q = r.get("kernel_queue")
    if not q:
        return "-"
    wait = q["little_wait_ms"]
    wait = f"{wait:.0f}" if wait is not None else "-"
    return (f"{q['mean_requests']:.0f} / {q['max_requests']:.0f} / {q['max_accept_queue']} / "
            f"{wait}")


# Bounds the exchange's answer histogram is read against: half load's p99 and p99.9 targets,
# and the deadline + 5 ms (`answers_over_cell`).
ANSWER_TARGETS_MS = (5, 15, int(DEADLINE_MS) + 5)


def answers_over_cell(r):
    """Every answer by the exchange's own clock (kernel stamp to answer written): how many took
    over 5 / 15 / deadline + 5 ms (`-` for an exchange without those buckets), and its DSP calls
    over 5 ms."""
    over = r.get("answers_over_ms") or {}
    cell = " / ".join("-" if over.get(ms) is None else str(int(over[ms]))
                      for ms in ANSWER_TARGETS_MS)
    return f"{cell}; DSP calls {int(r.get('dsp_calls_over_5ms', 0))}"


def kernel_wait_cell(r):
    """Stamped kernel wait of a run: mean ms / requests over 10 ms / over the deadline (late
    before they were read); `-` when unstamped."""
    n, total = r.get("kernel_wait_n", 0), r.get("kernel_wait_s", 0)
    if not n or not total:
        return "-"
    return (f"{total / n * 1000:.1f} / {int(r.get('kernel_wait_over_10ms', 0))} / "
            f"{int(r.get('kernel_wait_over_deadline', 0))}")


def rate_label(res):
    conns = f" on {res['connections']} connections" if res.get("connections") else ""
    return (f"{res['rate_pct']}%" + ("" if res.get("corrected", True) else " uncorrected")
            + conns)


def pct(res, key):
    return float(res["percentiles_ms"].get(key, float("nan")))


# ---------------------------------------------------------------- report


def med(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else float("nan")


def med_pct(runs, key):
    return statistics.median(pct(r, key) for r in runs) if runs else float("nan")


def fmt_status(status):
    return ", ".join(f"{k}: {v}" for k, v in status.items() if v)


def sum_status(runs):
    total = {}
    for r in runs:
        for k, v in r["status"].items():
            total[k] = total.get(k, 0) + v
    return total


def evaluate(results):
    """The issue's targets: (description, measured, verdict) rows."""
    rows = []
    sc = results["scenarios"]

    def ratio(scenario, other):
        rr = sc.get(scenario, {}).get("round_ratios", {}).get(other)
        return statistics.median(rr) if rr else None

    def add(desc, value, ok, text=None):
        if value is None:
            rows.append((desc, "not measured", "n/a"))
        else:
            rows.append((desc, text or f"{value:.2f}x", "met" if ok else "NOT met"))

    def add_ratio(scenario, other, desc, goal):
        r = ratio(scenario, other)
        rr = sc.get(scenario, {}).get("round_ratios", {}).get(other, [])
        text = None
        if r is not None:
            text = (f"{r:.2f}x req/s (rounds: {', '.join(f'{x:.2f}' for x in rr)}); CPU per "
                    f"request, {other}/exchange: {cpu_ratio(sc[scenario], other)}")
        ok = r is not None and r >= goal
        if r is not None:
            c = sc[scenario]
            ex, ot = med(c["closed"]["exchange"], "cpu_ms_per_1k"), med(c["closed"][other], "cpu_ms_per_1k")
            cpu_ok = ex > 0 and ot / ex >= goal
            rows.append((desc, text, f"req/s: {'met' if ok else 'NOT met'}; "
                                     f"CPU/request: {'met' if cpu_ok else 'NOT met'}"))
        else:
            add(desc, r, ok, text)

    add_ratio("no-dsp", "nginx", "no-dsp >= 1.0x nginx", TARGET_NGINX)
    add_ratio("no-dsp", "bench-404", "no-dsp >= 0.9x bare responder", TARGET_BARE)
    add_ratio("no-dsp", "tokio", "no-dsp >= 1.5x tokio baseline", TARGET_TOKIO_NO_DSP)
    add_ratio("three-dsps", "tokio", "three-dsps >= 2x tokio baseline", TARGET_TOKIO_THREE)
    add_ratio("three-dsps", "floor", "three-dsps >= 0.85x fan-out floor", TARGET_FLOOR)
    add_ratio("many-dsps-30", "floor", "many-dsps-30 >= 0.85x fan-out floor (30 DSPs)",
              TARGET_FLOOR)
    half30 = [o for o in sc.get("many-dsps-30", {}).get("open", [])
              if o["rate_pct"] == 50 and o.get("corrected", True)]
    if half30:
        p99 = pct(half30[0], "99")
        add("many-dsps-30 at 50%: p99 <= 10 ms", p99, p99 <= TARGET_P99_MANY_MS,
            f"p99 {p99:.2f} ms")
    else:
        add("many-dsps-30 at 50%: p99 <= 10 ms", None, False)
    if "no-dsp" in sc and "three-dsps" in sc and sc["no-dsp"]["max_rps"]:
        r = sc["three-dsps"]["max_rps"] / sc["no-dsp"]["max_rps"]
        add("three-dsps >= 0.33x own no-dsp", r, r >= TARGET_THREE_OVER_NO_DSP)
    else:
        add("three-dsps >= 0.33x own no-dsp", None, False)
    half = [o for o in sc.get("three-dsps", {}).get("open", []) if o["rate_pct"] == 50 and o.get("corrected", True)]
    if half:
        p99, p999 = pct(half[0], "99"), pct(half[0], "99.9")
        add("three-dsps at 50%: p99 <= 5 ms, p99.9 <= 15 ms", p99,
            p99 <= TARGET_P99_MS and p999 <= TARGET_P999_MS,
            f"p99 {p99:.2f} ms, p99.9 {p999:.2f} ms")
    else:
        add("three-dsps at 50%: p99 <= 5 ms, p99.9 <= 15 ms", None, False)
    # The same target by the exchange's own clock (kernel stamp to answer written), which the
    # load generator's lag on the core it shares with the DSPs does not reach.
    desc = "three-dsps at 50%, exchange's clock: <= 1% of answers over 5 ms, <= 0.1% over 15 ms"
    over, n = (half[0].get("answers_over_ms") or {}, half[0].get("answers_n")) if half else ({}, 0)
    if n and over.get(5) is not None and over.get(15) is not None:
        share5, share15 = 100 * over[5] / n, 100 * over[15] / n
        add(desc, share5, share5 <= 1 and share15 <= 0.1,
            f"{share5:.2f}% over 5 ms, {share15:.3f}% over 15 ms, of {int(n)}")
    else:
        add(desc, None, False)
    worst = []
    for name, s in sc.items():
        for srv in ("exchange", "exchange-epoll"):
            for r in s["closed"].get(srv, []):
                worst.append((r["max_ms"], f"{name} {srv} closed"))
        for r in s["open"]:
            worst.append((r["max_ms"], f"{name} {rate_label(r)}"))
    if worst:
        mx = max(worst)
        late = [w for w in worst if w[0] > DEADLINE_MS]
        add(f"no answer later than the deadline ({DEADLINE_MS:.0f} ms), client-measured, every "
            "exchange run", mx[0], not late, f"max {mx[0]:.1f} ms ({mx[1]}); {len(late)} of "
            f"{len(worst)} runs with max > {DEADLINE_MS:.0f} ms")
        late_n = auctions = 0
        for s in sc.values():
            for r in s["closed"].get("exchange", []) + s["closed"].get("exchange-epoll", []) + s["open"]:
                late_n += r.get("server_late", 0)
                auctions += r.get("server_auctions", 0)
        add(f"no answer later than the deadline, exchange-measured (arrival to answer, auctions "
            "that called DSPs)", late_n, late_n == 0,
            f"{int(late_n)} of {int(auctions)} auctions > {DEADLINE_MS:.0f} ms")
    opened = reused = 0.0
    for name in ("three-dsps",):
        for r in sc.get(name, {}).get("closed", {}).get("exchange", []) + sc.get(name, {}).get("open", []):
            opened += r.get("pool_opened", 0.0)
            reused += r.get("pool_reused", 0.0)
    if opened + reused > 0:
        share = reused / (opened + reused)
        add(">= 99.9% of DSP calls on reused connections after warm-up (three-dsps; the other "
            "scenarios are in the counters table: a timed-out call closes its connection)",
            share, share >= TARGET_REUSE, f"{share * 100:.3f}% ({int(opened)} opened, "
            f"{int(reused)} reused)")
    else:
        add(">= 99.9% DSP calls on reused connections", None, False)
    for name in ("no-dsp", "three-dsps"):
        r = ratio(name, "exchange-epoll")
        r = 1.0 / r if r else None  # round ratios are exchange/other
        add(f"{name}: epoll >= 0.8x io_uring", r, r is not None and r >= TARGET_EPOLL)
    for r in sc.get("overload", {}).get("open", []):
        p99 = pct(r, "99")
        kind = ("corrected: from the scheduled send time" if r.get("corrected", True)
                else "uncorrected: from the actual send")
        add(f"overload (2x capacity): p99 of answers <= deadline ({kind})", p99,
            p99 <= DEADLINE_MS, f"p99 {p99:.1f} ms, max {r['max_ms']:.1f} ms, answered "
            f"{r['rps']:.0f} of {r['offered_rps']:.0f} req/s offered, shed "
            f"{int(r.get('outcomes', {}).get('shed', 0))}, exchange-side late "
            f"{int(r.get('server_late', 0))}")
    return rows


def cores(runs):
    return (f"{med(runs, 'cpu_util') * 100:.0f}% / {med(runs, 'core0_busy') * 100:.0f}% / "
            f"{med(runs, 'core1_busy') * 100:.0f}%")


def bound(runs):
    if med(runs, "cpu_util") < SERVER_BOUND_SHARE and med(runs, "core1_busy") > CLIENT_BUSY:
        return "client"
    return "server" if med(runs, "cpu_util") >= SERVER_BOUND_SHARE else "?"


def cpu_ratio(sc, srv):
    """CPU per request of `srv` over the exchange's (same scenario, closed loop): how many
    times cheaper the exchange is per request. Less sensitive to other load on the machine
    than req/s, since each process is charged only its own CPU time."""
    ex = sc["closed"].get("exchange")
    runs = sc["closed"].get(srv)
    if not ex or not runs or srv == "exchange":
        return "-"
    a, b = med(ex, "cpu_ms_per_1k"), med(runs, "cpu_ms_per_1k")
    return f"{b / a:.2f}x" if a and a == a else "-"


def write_report(results, out_dir):
    L = []
    m = results["machine"]
    L.append(f"# rtb-load report, {results['date']}\n")
    L.append(f"- command: `{results['command']}`")
    L.append(f"- machine: {m['cpu']}, {m['cores']} cores, kernel {m['kernel']}")
    L.append(f"- exchange drivers: {results.get('drivers')}")
    la0, la1 = results["loadavg_start"], results["loadavg_end"]
    L.append(f"- every process of the run at niceness {results.get('nice')} (`--nice`)")
    if results.get("dsp_nice") is not None:
        L.append(f"- except every rtb-dsp, at niceness {results['dsp_nice']} (`--dsp-nice`)")
    if results.get("generator_nice") is not None:
        L.append(f"- except oha, at niceness {results['generator_nice']} (`--generator-nice`)")
    L.append(f"- machine load (1/5/15-min load average) at start {la0[0]:.2f}/{la0[1]:.2f}/"
             f"{la0[2]:.2f}, at end {la1[0]:.2f}/{la1[1]:.2f}/{la1[2]:.2f}. Anything above ~2 "
             "means other processes shared the two cores with the runs: req/s and client-side "
             "latency then drop for reasons outside the servers; CPU ms per 1k requests (each "
             "process charged only its own CPU time) and the exchange's own arrival-to-answer "
             "histogram are the figures least affected. Per run: `server` = the server's CPU "
             "time / wall time, `core 0 busy` / `core 1 busy` from /proc/stat (all processes).")
    L.append(f"- layout: server under test on core {SERVER_CORE} (rtb-exchange `--workers 1 --pin "
             f"true` + taskset -c {SERVER_CORE}; nginx 1 worker, bench_404 1 worker, tokio-exchange"
             f" `worker_threads(1)`, all under taskset -c {SERVER_CORE}); wrk/oha and every rtb-dsp"
             f" on core {CLIENT_CORE} (taskset -c {CLIENT_CORE}). Note: core {CLIENT_CORE} also"
             " runs the DSPs, so in DSP scenarios it can saturate before core 0: see the `core 0`"
             " column (server CPU seconds / wall seconds).")
    if results.get("exchange_limit"):
        L.append(f"- the exchange ran in a cgroup, {results['exchange_limit']} (`--exchange-cpus`): "
                 "its capacity is that share of a core, so overload is its own, not core 1's")
    b = results["bodies"]
    L.append(f"- bodies: {b['source']}, {b['count']} bodies rotated, {b['mean_bytes']:.0f} bytes "
             f"mean ({b['min_bytes']}-{b['max_bytes']}), newlines replaced by spaces (one line "
             "each, same size)")
    L.append(f"- {results['duration_s']} s per run after a 1 s warm-up per server, "
             f"{results['rounds']} rounds; in each round every comparison is a pair of adjacent "
             "closed-loop runs (rtb-exchange, baseline), the order flipped every round (A B, "
             "B A, ...); a ratio is the median of the per-pair ratios. Open loop: oha `-q RATE "
             "--latency-correction -w` at percentages of the exchange's closed-loop median.\n")
    L.append("## Targets\n")
    L.append("| target | measured | verdict |")
    L.append("|---|---|---|")
    for desc, val, verdict in results["targets"]:
        L.append(f"| {desc} | {val} | **{verdict}** |")
    L.append("")
    L.append("## Closed loop (wrk, maximum throughput)\n")
    L.append("Each server's req/s is bounded by whichever saturates first: its core, or core 1 "
             "(load generator, DSPs, loopback TCP). `bound` says which: `client` when the server "
             f"used less than {SERVER_BOUND_SHARE:.0%} of its core while core 1 was over "
             f"{CLIENT_BUSY:.0%} busy. `1-core estimate` = 1,000,000 / (server CPU us per "
             "request): what one fully used core would serve at that cost per request "
             "(optimistic when the run was far from saturation, since batching lowers the cost "
             "per request as load grows).\n")
    L.append("| scenario | server | req/s (median) | runs | ratio exchange/this | p50 ms | p99 ms "
             "| p99.9 ms | max ms | status codes | socket errors | CPU ms / 1k req | "
             "CPU ratio this/exchange | 1-core estimate req/s | server / core 0 busy / core 1 "
             "busy | bound |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, s in results["scenarios"].items():
        for srv, runs in s["closed"].items():
            rr = s["round_ratios"].get(srv)
            ratio = f"{statistics.median(rr):.2f}x" if rr else "-"
            L.append(f"| {name} | {SERVER_LABELS.get(srv, srv)} | {med(runs, 'rps'):.0f} | "
                     + " / ".join(f"{r['rps']:.0f}" for r in runs)
                     + f" | {ratio} | {med_pct(runs, '50'):.3f} | {med_pct(runs, '99'):.3f} | "
                     f"{med_pct(runs, '99.9'):.3f} | {max(r['max_ms'] for r in runs):.1f} | "
                     f"{fmt_status(sum_status(runs))} | {sum(r['socket_errors'] for r in runs)} | "
                     f"{med(runs, 'cpu_ms_per_1k'):.1f} | {cpu_ratio(s, srv)} | "
                     f"{1e6 / med(runs, 'cpu_ms_per_1k'):.0f} | {cores(runs)} | {bound(runs)} |")
    L.append("")
    L.append("## Open loop (oha, constant rate, coordinated-omission corrected), rtb-exchange\n")
    L.append("| scenario | rate | offered req/s | answered req/s | p50 ms | p90 ms | p99 ms | "
             "p99.9 ms | max ms | status codes | client errors | DSP timeouts | shed | "
             "late, exchange's clock: auctions / all answers | exchange's clock, answers over "
             f"{' / '.join(map(str, ANSWER_TARGETS_MS))} ms; DSP calls over 5 ms | kernel queue: mean / max requests unread, max accept "
             "queue, wait ms (Little) | kernel wait, stamped: mean ms / requests over 10 ms / over "
             "the deadline "
             "| CPU ms / 1k req | server / core 0 busy / core 1 busy | "
             "TCP SYN retrans / RTO timeouts (machine-wide) |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, s in results["scenarios"].items():
        for r in s["open"]:
            L.append(f"| {name} | {rate_label(r)} | {r['offered_rps']:.0f} | {r['rps']:.0f} | "
                     f"{pct(r, '50'):.3f} | {pct(r, '90'):.3f} | {pct(r, '99'):.3f} | "
                     f"{pct(r, '99.9'):.3f} | {r['max_ms']:.1f} | {fmt_status(r['status'])} | "
                     f"{r['socket_errors']} | {int(r.get('dsp_timeouts', 0))} | "
                     f"{int(r.get('outcomes', {}).get('shed', 0))} | "
                     f"{int(r.get('server_late', 0))} / {int(r.get('answers_late', 0))} | "
                     f"{answers_over_cell(r)} | {kernel_queue_cell(r)} | "
                     f"{kernel_wait_cell(r)} | {r['cpu_ms_per_1k']:.1f} | {cores([r])} | "
                     f"{r.get('tcp', {}).get('TCPSynRetrans', '-')} / "
                     f"{r.get('tcp', {}).get('TCPTimeouts', '-')} |")
    L.append("")
    L.append("## Exchange counters over the measured runs (/metrics deltas)\n")
    L.append("| scenario | won | no_bid | shed | invalid | no_dsp | DSP timeouts | breaker skips "
             "| auctions > deadline (exchange-side) | pool opened | pool reused | reused % "
             "| opened per 1k auctions | drained and reused | connects refused (paced) "
             "| shed by reason | requests that waited a turn |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, s in results["scenarios"].items():
        runs = s["closed"].get("exchange", []) + s["open"]
        tot = {k: sum(r.get("outcomes", {}).get(k, 0) for r in runs)
               for k in ("won", "no_bid", "shed", "invalid", "no_dsp")}
        op = sum(r.get("pool_opened", 0) for r in runs)
        ru = sum(r.get("pool_reused", 0) for r in runs)
        share = f"{ru / (op + ru) * 100:.3f}" if op + ru else "-"
        auctions = sum(tot.values())
        per_1k = f"{op / auctions * 1000:.2f}" if auctions else "-"
        L.append(f"| {name} | " + " | ".join(str(int(v)) for v in tot.values())
                 + f" | {int(sum(r.get('dsp_timeouts', 0) for r in runs))} | "
                 f"{int(sum(r.get('breaker_skipped', 0) for r in runs))} | "
                 f"{int(sum(r.get('server_late', 0) for r in runs))} of "
                 f"{int(sum(r.get('server_auctions', 0) for r in runs))} | {int(op)} | "
                 f"{int(ru)} | {share} | {per_1k} | "
                 f"{int(sum(r.get('pool_drained', 0) for r in runs))} | "
                 f"{int(sum(r.get('connect_paced', 0) for r in runs))} | "
                 f"{shed_by_reason(runs)} | "
                 f"{int(sum(r.get('waited_turn', 0) for r in runs))} |")
    L.append("")
    if results.get("plots"):
        L.append("## Plots\n")
        for p in results["plots"]:
            L.append(f"![{p}]({p})")
        L.append("")
    (out_dir / "report.md").write_text("\n".join(L) + "\n")
    return "\n".join(L)


def summary_for_benchmarks(results, report_dir):
    L = [f"\n## Load benchmarks (rtb-load), {results['date']}\n",
         f"Machine: {results['machine']['cpu']}, {results['machine']['cores']} cores, kernel "
         f"{results['machine']['kernel']}. Command: `{results['command']}`. Full report: "
         f"`{report_dir.relative_to(ROOT) if report_dir.is_relative_to(ROOT) else report_dir}`.\n",
         "| scenario | server | req/s | p50 ms | p99 ms | ratio exchange/this |", "|---|---|---|---|---|---|"]
    for name, s in results["scenarios"].items():
        for srv, runs in s["closed"].items():
            rr = s["round_ratios"].get(srv)
            L.append(f"| {name} | {SERVER_LABELS.get(srv, srv)} | {med(runs, 'rps'):.0f} | "
                     f"{med_pct(runs, '50'):.3f} | {med_pct(runs, '99'):.3f} | "
                     f"{f'{statistics.median(rr):.2f}x' if rr else '-'} |")
    L += ["", "| target | measured | verdict |", "|---|---|---|"]
    L += [f"| {d} | {v} | {x} |" for d, v, x in results["targets"]]
    return "\n".join(L) + "\n"


def make_plots(out_dir):
    script = SCRIPTS / "load-plots.py"
    if not VENV_PYTHON.exists():
        log(f"plots skipped: no matplotlib venv at {VENV_PYTHON} (benches/scripts/load creates it)")
        return []
    r = subprocess.run([str(VENV_PYTHON), str(script), str(out_dir)], capture_output=True,
                       text=True, timeout=120)
    if r.returncode != 0:
        log(f"plots failed (the report is still written): {r.stderr[-1500:]}")
        return []
    return [line.strip() for line in r.stdout.splitlines() if line.strip().endswith(".svg")]


def machine():
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release()}


def check_tools(args):
    for tool in ("taskset", "wrk"):
        if not shutil.which(tool):
            raise Failure(f"missing tool: {tool} (benches/scripts/load installs it)")
    if not args.skip_baselines and not shutil.which("nginx"):
        log("nginx missing: the nginx baseline is skipped")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenarios", default=",".join(SCENARIOS),
                    help=f"comma-separated subset of {','.join(SCENARIOS)}")
    ap.add_argument("--duration-s", type=int, default=None,
                    help=f"seconds per measured run (default {DEFAULT_DURATION_S}, smoke "
                         f"{SMOKE_DURATION_S})")
    ap.add_argument("--rounds", type=int, default=None,
                    help=f"closed-loop rounds per server (default {DEFAULT_ROUNDS}, smoke 1)")
    ap.add_argument("--smoke", action="store_true",
                    help="short runs, one open-loop rate: a CI check that everything runs")
    ap.add_argument("--out", type=Path, default=None,
                    help="report folder (default benches/reports/<UTC date-time>)")
    ap.add_argument("--append-benchmarks", action="store_true",
                    help="append the summary to the repository's BENCHMARKS.md")
    ap.add_argument("--skip-baselines", action="store_true",
                    help="measure the exchange only (no nginx, bench_404, tokio-exchange)")
    ap.add_argument("--nice", type=int, default=DEFAULT_NICE if os.geteuid() == 0 else 0,
                    help="niceness of the harness and everything it starts (inherited); "
                         f"default {DEFAULT_NICE} when root, so that other work on a shared "
                         "machine (builds) disturbs the runs less; 0 to leave it")
    ap.add_argument("--rates-pct", default=None,
                    type=lambda v: [int(x) for x in v.split(",") if x.strip()],
                    help="open-loop rates for every scenario chosen, in %% of its closed-loop "
                         "maximum (e.g. 150,200,400,1000 for issue 14's overload figures); "
                         "default: each scenario's own")
    ap.add_argument("--capacity-rps", type=float, default=None,
                    help="the req/s that --rates-pct are shares of, in place of each run's own "
                         "closed-loop median: so that builds or settings compared are offered "
                         "the same load")
    ap.add_argument("--exchange-cpus", default=None, type=CpuLimit.parse,
                    help="run the exchange in a cgroup with this CPU limit, CPUS[@PERIOD_MS] "
                         "(e.g. 0.3@1: 30%% of a core, enforced every millisecond), so that it "
                         "saturates before the load generator's core (root; issue 14)")
    ap.add_argument("--dsp-nice", type=int, default=None,
                    help="niceness of every rtb-dsp (e.g. -20), to schedule the DSPs ahead of "
                         "the load generator on the client core: shows how much of a tail is "
                         "the DSPs waiting for that core; default: the harness's own")
    ap.add_argument("--open-in-flight-ms", type=float, default=None,
                    help="beyond capacity, give oha enough connections for this many ms of "
                         "arrivals in flight at once (e.g. 100), where that is more than the "
                         "scenario's: so that the client's connection count does not cap what "
                         "the server holds; default: the scenario's count")
    ap.add_argument("--timeline-ms", type=float, default=None,
                    help="during each open-loop run, scrape the exchange's counters this often "
                         "(e.g. 100) and record goodput, sheds by reason and late answers per "
                         "interval (results.json `timeline`, and a line in the log): does "
                         "admission hold a level or flip between modes? A diagnostic: each "
                         "scrape costs the exchange some CPU")
    ap.add_argument("--generator-nice", type=int, default=None,
                    help="niceness of oha (e.g. -20), so that it reads each answer as it comes: "
                         "shows how much of the client's tail is the generator's own lag on the "
                         "core it shares with the DSPs; default: the harness's own")
    ap.add_argument("--bin-dir", type=Path, default=None,
                    help="release binaries (default $CARGO_TARGET_DIR/release)")
    args = ap.parse_args()
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    for n in names:
        if n not in SCENARIOS:
            ap.error(f"unknown scenario {n!r}; known: {', '.join(SCENARIOS)}")
    if args.exchange_cpus and args.exchange_cpus.cpus is not None:
        global EXCHANGE_LIMIT
        cgroups = Cgroups()
        if not cgroups.kind:
            ap.error(f"--exchange-cpus: {cgroups.why}")
        EXCHANGE_LIMIT = (cgroups, args.exchange_cpus)
    keep_harness_off_server_core()
    global DSP_NICE, GENERATOR_NICE, OPEN_IN_FLIGHT_S, TIMELINE_S
    DSP_NICE, GENERATOR_NICE = args.dsp_nice, args.generator_nice
    for flag, niceness in (("--dsp-nice", DSP_NICE), ("--generator-nice", GENERATOR_NICE)):
        # Unprivileged, `nice` would warn and run the command at the default priority while
        # the report claims the niceness asked for.
        if niceness is not None and niceness < os.nice(0) and os.geteuid() != 0:
            ap.error(f"{flag} {niceness}: raising a priority needs root")
    OPEN_IN_FLIGHT_S = args.open_in_flight_ms / 1000 if args.open_in_flight_ms else None
    TIMELINE_S = args.timeline_ms / 1000 if args.timeline_ms else None
    args.duration_s = args.duration_s or (SMOKE_DURATION_S if args.smoke else DEFAULT_DURATION_S)
    args.rounds = args.rounds or (1 if args.smoke else DEFAULT_ROUNDS)
    args.warmup_s = SMOKE_WARMUP_S if args.smoke else WARMUP_S
    if args.nice:
        try:
            os.nice(args.nice)
        except OSError as e:
            log(f"could not change niceness by {args.nice} ({e}): runs at the default priority")
    bins = args.bin_dir or Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
    now = datetime.datetime.now(datetime.timezone.utc)
    out_dir = args.out or ROOT / "benches" / "reports" / now.strftime("%Y-%m-%dT%H-%M-%SZ")
    out_dir.mkdir(parents=True, exist_ok=True)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    # Explicitly: a shell that starts us in the background leaves SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    work = Path(tempfile.mkdtemp(prefix="rtb-load."))
    procs = Procs(work)
    started = time.monotonic()
    try:
        check_tools(args)
        wanted = set() if args.skip_baselines else {b for n in names for b in SCENARIOS[n]["baselines"]}
        needed = {"tokio": "tokio-exchange", "bench-404": "examples/bench_404",
                  "floor": "examples/bench_forward"}
        for b in ["rtb-exchange", "rtb-dsp"] + [needed[w] for w in sorted(wanted) if w in needed]:
            if not (bins / b).exists():
                raise Failure(f"missing binary {bins / b}: run benches/scripts/load (it builds)")
        bodies, lines, body_info = prepare_bodies(work)
        log(f"bodies: {body_info['source']}, mean {body_info['mean_bytes']:.0f} bytes")
        if not OHA.exists():
            log(f"oha missing at {OHA}: open-loop runs skipped")
        progress = Progress(plan_seconds(names, args))
        servers = {"exchange": start_exchange(procs, bins, "uring")}
        if any(SCENARIOS[n]["epoll"] for n in names):
            servers["exchange-epoll"] = start_exchange(procs, bins, "epoll")
        if "nginx" in wanted and shutil.which("nginx"):
            servers["nginx"] = start_nginx(procs, work)
        if "bench-404" in wanted:
            servers["bench-404"] = start_bench_404(procs, bins)
        if "tokio" in wanted:
            servers["tokio"] = start_tokio(procs, bins)
        drivers = {k: getattr(v, "driver", None) for k, v in servers.items() if k.startswith("exchange")}
        log(f"servers on core {SERVER_CORE}: " + ", ".join(f"{k} {v.addr}" for k, v in servers.items())
            + f"; exchange drivers {drivers}")
        results = {
            "date": now.strftime("%Y-%m-%d %H:%M UTC"),
            "command": "benches/scripts/load " + " ".join(sys.argv[1:]),
            "machine": machine(),
            "drivers": drivers,
            "duration_s": args.duration_s,
            "rounds": args.rounds,
            "deadline_ms": DEADLINE_MS,
            "bodies": body_info,
            "loadavg_start": os.getloadavg(),
            "nice": os.nice(0), "dsp_nice": DSP_NICE, "generator_nice": GENERATOR_NICE,
            "exchange_limit": EXCHANGE_LIMIT[1].label if EXCHANGE_LIMIT else None,
            "scenarios": {},
        }
        for n in names:
            results["scenarios"][n] = run_scenario(n, args, procs, bins, work, bodies, lines,
                                                   servers, progress)
    except Failure as e:
        log(f"FAILED: {e}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        procs.stop_all()
        if EXCHANGE_LIMIT:
            EXCHANGE_LIMIT[0].remove_all()
        shutil.rmtree(work, ignore_errors=True)
    results["loadavg_end"] = os.getloadavg()
    results["targets"] = evaluate(results)
    results["elapsed_s"] = time.monotonic() - started
    (out_dir / "results.json").write_text(json.dumps(results, indent=1))
    results["plots"] = make_plots(out_dir)
    report = write_report(results, out_dir)
    log("\n" + report)
    if args.append_benchmarks:
        target = Path(os.environ.get("RTB_LOAD_BENCHMARKS_MD", ROOT / "BENCHMARKS.md"))
        with open(target, "a") as f:
            f.write(summary_for_benchmarks(results, out_dir))
        log(f"summary appended to {target}")
    log(f"finished in {fmt_clock(results['elapsed_s'])}; report: {out_dir / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
