"""One variant end to end: build its lab, start the exchange (and DSPs) in it, probe a fresh
connection's set-up time, measure each scenario from the client namespace, tear everything down.

The wrk run itself happens in `netlab _measure` inside the client's namespace (so wrk and the
/metrics scrape take the same path as the traffic under test), through rtb-load's run_wrk and
measured; the parent reads the counters that live elsewhere around it: the exchange cgroup's
throttling, the nodes' conntrack statistics.
"""
import http.client
import json
import re
import statistics
import sys
import threading
import time
import types
from pathlib import Path

from . import conntrack, kubeproxy, topology
from .sh import log

SERVER_CORE = 0  # the exchange; wrk and the DSPs run on core 1 (rtb-load's layout)
CLIENT_CORE = 1
CONNECTIONS = 32  # rtb-load's closed-loop connections for every scenario
WARMUP_S = 1
STARTUP_TIMEOUT_S = 15.0
CONNECT_PROBES = 30
TIMELINE_STEP_S = 0.5
NETLAB = Path(__file__).resolve().parents[1] / "netlab"


class Context:
    """What every variant shares: the lab guard, processes, cgroups, root sysctls, inputs."""

    def __init__(self, lab, rl, procs, cgroups, host, bins, bodies, args, smoke):
        self.lab, self.rl, self.procs, self.cgroups, self.host = lab, rl, procs, cgroups, host
        self.bins, self.bodies, self.args, self.smoke = bins, bodies, args, smoke


def client_http(lab, client_ns, method, url, body_file=None):
    argv = ["curl", "-sS", "--noproxy", "*", "-m", "3", "-o", "/dev/stdout", "-w", "\n%{http_code}",
            "-X", method, url]
    if body_file:
        argv += ["-H", "content-type: application/json", "--data-binary", f"@{body_file}"]
    r = lab.ns(client_ns, argv, check=False)
    text, _, code = r.stdout.rpartition("\n")
    return int(code) if code.strip().isdigit() else 0, text


def connect_probe(lab, client_ns, addr):
    """Median TCP connect time (ms) of CONNECT_PROBES fresh connections: kube-proxy's rules see
    only a connection's first packet, so their cost shows here, not on keep-alive traffic."""
    probe = lab.ns(client_ns, ["bash", "-c", f"for i in $(seq {CONNECT_PROBES}); do curl -sS "
                               f"--noproxy '*' -m 2 -o /dev/null -w '%{{time_connect}}\\n' "
                               f"http://{addr}/metrics; done"], check=False)
    times = sorted(float(t) * 1000 for t in probe.stdout.split() if t.strip())
    return statistics.median(times) if times else float("nan"), len(times)


SYSCALL_PROBE = """
import socket, statistics, sys, time
out = []
for _ in range(int(sys.argv[2])):
    s = socket.socket()
    s.setblocking(False)
    t = time.perf_counter()
    s.connect_ex((sys.argv[1], 80))
    out.append((time.perf_counter() - t) * 1000)
    s.close()
    time.sleep(0.01)
print(statistics.median(out))
"""


def connect_syscall_probe(lab, exch_ns, vip):
    """Median time (ms) of a non-blocking connect() from the exchange's pod to a DSP's service
    address: the call only sends the SYN, but veth hands the packet on in softirq on the same
    CPU before the call returns, so the SYN's whole trip through both nodes' NAT rules is spent
    inside the exchange worker's own syscall, with its event loop stopped."""
    r = lab.ns(exch_ns, [sys.executable, "-c", SYSCALL_PROBE, vip, str(CONNECT_PROBES)], check=False)
    try:
        return float(r.stdout.strip())
    except ValueError:
        return float("nan")


def build_lab(ctx, v):
    t0 = time.monotonic()
    info = topology.build(ctx.lab, v.mode)
    if v.mode == "overlay-nat":
        info["rules"] = kubeproxy.install(ctx.lab, v.proxy, info["places"], v.dummy)
        info["exchange_addr"] = f"{kubeproxy.EXCH_VIP}:{kubeproxy.SVC_PORT}"
        info["dsp_urls"] = [f"http://{vip}:{kubeproxy.SVC_PORT}" for vip in kubeproxy.DSP_VIPS]
    if v.ct_level is not None:
        conntrack.apply(ctx.lab, ctx.host, v.ct_level)
    info["build_s"] = time.monotonic() - t0
    return info


def limited(ctx, v, name, argv):
    """argv inside a fresh cgroup with v's CPU limit (or unchanged); returns (argv, cgroup)."""
    if v.cpu is None or v.cpu.cpus is None:
        return argv, None
    path = ctx.cgroups.create(name, v.cpu)
    return ctx.cgroups.wrap(path, argv), path


def start_exchange(ctx, v, info, tag):
    place_ns, addr = info["places"]["exch"]
    cores = ",".join(str(c) for c in range(SERVER_CORE, SERVER_CORE + v.workers))
    argv = ["ip", "netns", "exec", place_ns, "taskset", "-c", cores,
            str(ctx.bins / "rtb-exchange"), "--bind", addr, "--port", str(topology.EXCH_PORT),
            "--debug-port", str(topology.DEBUG_PORT), "--workers", str(v.workers), "--pin", "true",
            "--io-driver", ctx.args.io_driver, "--deadline-ms", "80", "--dsp-ttl-s", "3600",
            "--open-onboarding"]
    argv, cg = limited(ctx, v, f"{tag}-exchange", argv)
    p = ctx.procs.start(f"{tag}-exchange", argv)
    ctx.procs.wait_line(f"{tag}-exchange", p, r"^listening on (\S+)", timeout=STARTUP_TIMEOUT_S)
    ctx.procs.wait_line(f"{tag}-exchange", p, r"^debug listening on (\S+)",
                        timeout=STARTUP_TIMEOUT_S)
    return p, cg


def start_dsps(ctx, v, info, tag, client_ns):
    for i, (dname, node) in enumerate(zip(kubeproxy.DSP_NAMES, topology.DSP_NODES)):
        pname = f"{tag}-dsp-{node}"
        argv = ["ip", "netns", "exec", info["places"][node][0], "taskset", "-c", str(CLIENT_CORE),
                str(ctx.bins / "rtb-dsp"), "--dsp-name", dname, "--bind", info["places"][node][1],
                "--port", str(topology.DSP_PORT), "--base-url", info["dsp_urls"][i],
                "--onboard-endpoints", f"http://{info['exchange_addr']}/dsp",
                "--onboard-interval-s", "3600", "--latency", "fixed:0", "--workers", "1"]
        if v.limit_dsps:
            argv, _ = limited(ctx, v, pname, argv)
        dp = ctx.procs.start(pname, argv)
        ctx.procs.wait_line(pname, dp, r"^listening on (\S+)", timeout=STARTUP_TIMEOUT_S)
    end = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        _, listing = client_http(ctx.lab, client_ns, "GET", f"http://{info['exchange_addr']}/dsp")
        if all(n in listing for n in kubeproxy.DSP_NAMES):
            break
        if time.monotonic() > end:
            raise RuntimeError(f"{v.key}: DSPs did not onboard through {info['exchange_addr']}: "
                               f"{listing[:300]}")
        time.sleep(0.1)
    time.sleep(0.3)


def run_variant(ctx, v):
    """Measures every scenario of `v`; returns {scenario: result}. The caller tears down."""
    info = build_lab(ctx, v)
    places = info["places"]
    client_ns = places["client"][0]
    tag = re.sub(r"[^a-z0-9]+", "-", v.key.lower()).strip("-")[:40]
    extra = f", {info['rules']} nat rules per node ({v.proxy})" if "rules" in info else ""
    log(f"== {v.key}: lab up in {info['build_s']:.1f}s ({len(ctx.lab.created)} namespaces{extra}); "
        f"exchange at {info['exchange_addr']}, {v.workers} worker(s)")
    p, cg = start_exchange(ctx, v, info, tag)
    auction = f"http://{info['exchange_addr']}/openrtb2/auction"
    code, _ = client_http(ctx.lab, client_ns, "POST", auction, ctx.bodies[0])
    if code != 404:
        raise RuntimeError(f"{v.key}: exchange not reachable from the client ({auction} -> {code})")
    connect_ms, n = connect_probe(ctx.lab, client_ns, info["exchange_addr"])
    log(f"   TCP connect (new connection, median of {n}): {connect_ms:.3f} ms")
    syscall_ms = float("nan")
    if v.mode == "overlay-nat":
        syscall_ms = connect_syscall_probe(ctx.lab, places["exch"][0], kubeproxy.DSP_VIPS[0])
        log(f"   exchange pod -> DSP service: non-blocking connect() returns after {syscall_ms:.3f} ms")
    out = {}
    for sc in v.scenarios:
        if sc == "three-dsps":
            start_dsps(ctx, v, info, tag, client_ns)
            code, _ = client_http(ctx.lab, client_ns, "POST", auction, ctx.bodies[0])
            if code not in (200, 204):
                raise RuntimeError(f"{v.key}: auction with three DSPs answered {code}")
        if v.warmup and not ctx.smoke:
            measure(ctx, v, info, p.pid, sc, WARMUP_S, f"{v.key} {sc} warm-up")
        res = measure_counted(ctx, v, info, p.pid, sc, cg)
        res.update(build_s=info["build_s"], connect_ms=connect_ms, rules=info.get("rules", 0),
                   connect_syscall_ms=syscall_ms)
        out[sc] = res
        log_result(ctx.rl, sc, res)
    return out


def paws_timewait(lab, ns):
    """The namespace's TcpExtPAWSTimewait: SYNs that hit a TIME_WAIT socket and failed its
    timestamp (PAWS) check; each is answered with an ACK, reset and retried a second later."""
    lines = lab.ns(ns, ["cat", "/proc/net/netstat"], check=False).stdout.splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:]))
            return int(table.get("PAWSTimewait", 0))
    return 0


def measure_counted(ctx, v, info, pid, sc, cg):
    """measure() with the counters the client namespace cannot see read around it."""
    ct0 = conntrack.stats(ctx.lab) if v.mode == "overlay-nat" else None
    cg0 = ctx.cgroups.stats(cg) if cg else None
    exch_ns = info["places"]["exch"][0]
    paws0 = paws_timewait(ctx.lab, exch_ns)
    res = measure(ctx, v, info, pid, sc, ctx.args.duration_s, f"{v.key} {sc}")
    res["exchange_paws_timewait"] = paws_timewait(ctx.lab, exch_ns) - paws0
    if cg:
        cg1 = ctx.cgroups.stats(cg)
        res["cgroup"] = {k: cg1[k] - cg0[k] for k in cg1}
    if ct0 is not None:
        res["conntrack"] = conntrack.delta(ct0, conntrack.stats(ctx.lab))
    return res


def log_result(rl, sc, res):
    pct = res["percentiles_ms"]
    line = (f"   {sc:<11} {res['rps']:>8.0f} req/s  p50 {pct['50']:.3f} ms  p99 {pct['99']:.3f} ms  "
            f"p99.9 {pct['99.9']:.3f} ms  status {rl.fmt_status(res['status'])}  "
            f"socket errors {res['socket_errors']}  exchange {res['cpu_util'] * 100:.0f}% of a core")
    if "cgroup" in res:
        c = res["cgroup"]
        line += f"  throttled {c['throttled']}/{c['periods']} periods, {c['throttled_ms']:.0f} ms"
    if "conntrack" in res:
        c = res["conntrack"]
        line += (f"  conntrack: {c['entries']} entries, drop {c['drop']}, insert_failed "
                 f"{c['insert_failed']}, early_drop {c['early_drop']}")
    if sc == "three-dsps":
        line += (f"  DSP conns opened {res.get('pool_opened', 0):.0f}, timeouts "
                 f"{res.get('dsp_timeouts', 0):.0f}, breaker skipped {res.get('breaker_skipped', 0):.0f}")
    log(line)


def measure(ctx, v, info, pid, sc, duration_s, tag):
    """One wrk run from the client namespace (`netlab _measure`)."""
    argv = [sys.executable, str(NETLAB), "_measure",
            "--url-addr", info["exchange_addr"], "--debug-addr", info["debug_addr"],
            "--pid", str(pid), "--duration-s", str(duration_s), "--name", tag]
    if sc == "churn":
        argv.append("--connection-close")
    if sc == "three-dsps":
        argv.append("--timeline")
    argv += ["--"] + [str(b) for b in ctx.bodies]
    r = ctx.lab.ns(info["places"]["client"][0], argv, check=False)
    m = re.search(r"^NETLABJSON (.*)$", r.stdout, re.M)
    if r.returncode != 0 or not m:
        raise RuntimeError(f"measurement {tag} failed (exit {r.returncode}): "
                           f"{(r.stdout + r.stderr).strip()[-1500:]}")
    return json.loads(m.group(1))


# ---------------------------------------------------------------- inside the client namespace


def softirq_jiffies():
    """{cpuN: (softirq, total)} from /proc/stat: kube-proxy's rule walk runs in softirq, on the
    core that sent the packet (veth hands packets over on the sending CPU)."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        parts = line.split()
        if parts[0].startswith("cpu") and parts[0] != "cpu":
            vals = [int(x) for x in parts[1:]]
            out[parts[0]] = (vals[6], sum(vals))
    return out


def metric_total(metrics, name):
    return sum(v for (n, _), v in metrics.items() if n == name)


def sample_timeline(server, stop, samples):
    """Every TIMELINE_STEP_S: (seconds, DSP connections opened, DSP timeouts, breaker skips)."""
    t0 = time.monotonic()
    while not stop.is_set():
        m = server.metrics()
        samples.append((time.monotonic() - t0, metric_total(m, "rtb_dsp_pool_connections_opened_total"),
                        metric_total(m, "rtb_dsp_timeouts_total"), metric_total(m, "rtb_dsp_skipped_total")))
        stop.wait(TIMELINE_STEP_S)


def kept_alive_server(rl, args):
    """rtb-load's Server, but /metrics is read over one kept-alive connection opened before the
    run: a full conntrack table drops new connections, and a fresh connection per scrape would
    then fail with the very traffic it is measuring."""
    class KeptAlive(rl.Server):
        conn, lock = None, threading.Lock()

        def metrics(self):
            with self.lock:
                for _ in range(2):  # once more on a fresh connection if the kept one was closed
                    try:
                        if self.conn is None:
                            self.conn = http.client.HTTPConnection(self.debug, timeout=5)
                        self.conn.request("GET", "/metrics")
                        resp = self.conn.getresponse()
                        text = resp.read().decode(errors="replace")
                        return rl.parse_metrics(text) if resp.status == 200 else {}
                    except (OSError, http.client.HTTPException):
                        self.conn = None
                return {}

    return KeptAlive(args.name, args.url_addr, types.SimpleNamespace(pid=args.pid), args.debug_addr)


def measure_child(args, rl):
    """`_measure`: runs inside the client namespace (ip netns exec)."""
    server = kept_alive_server(rl, args)
    extra = ["-H", "Connection: close"] if args.connection_close else []
    stop, samples = threading.Event(), []
    sampler = threading.Thread(target=sample_timeline, args=(server, stop, samples), daemon=True)
    soft0 = softirq_jiffies()
    accepted0 = metric_total(server.metrics(), "rtb_connections_accepted_total")
    try:
        if args.timeline:
            sampler.start()
        res = rl.measured(lambda: rl.run_wrk(None, server, [Path(b) for b in args.bodies],
                                             CONNECTIONS, args.duration_s, extra), server,
                          allow_zero=args.connection_close)
    except rl.Failure as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        stop.set()
    soft1 = softirq_jiffies()
    res["accepted"] = metric_total(server.metrics(), "rtb_connections_accepted_total") - accepted0
    res["softirq_share"] = {cpu: (soft1[cpu][0] - soft0[cpu][0]) / max(1, soft1[cpu][1] - soft0[cpu][1])
                            for cpu in soft1 if cpu in soft0}
    if args.timeline:
        sampler.join(timeout=5)
        res["timeline"] = samples
    print("NETLABJSON " + json.dumps(res), flush=True)
    return 0
