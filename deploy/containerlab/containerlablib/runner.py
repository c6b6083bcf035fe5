"""One variant of the lab: start its containers, probe them, measure both scenarios, remove them.

The measurement is rtb-load's (benches/scripts/rtb-load.py, imported): `run_wrk` (wrk -t1 with
load-wrk.lua on core 1) inside `measured` (the exchange's CPU time from /proc, status codes
from its /metrics deltas). It runs in a child process (`containerlab _measure`), entered into
the client container's network namespace with nsenter in bridge mode, so that wrk and the
/metrics scrape take the path under test. The exchange's cgroup throttling counters are read
around each run.
"""
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
import types
import urllib.request
from pathlib import Path

from . import cgroup
from .variants import DSP_NAMES, TOKEN_ENV, drivers, start_dsps, start_exchange

ROOT = Path(__file__).resolve().parents[3]
RTB_LOAD = ROOT / "benches" / "scripts" / "rtb-load.py"
SCENARIOS = ["no-dsp", "three-dsps"]
CONNECTIONS = 32  # rtb-load's closed-loop connections for both scenarios
WARMUP_S = 1
ONBOARD_TIMEOUT_S = 15.0
# After the last DSP shows in GET /dsp: every worker applies the registry and warms its pools.
ONBOARD_SETTLE_S = 0.3
MEASURE_GRACE_S = 60


def log(msg):
    print(msg, flush=True)


def load_rtb_load():
    """benches/scripts/rtb-load.py as a module (its file name has a dash)."""
    spec = importlib.util.spec_from_file_location("rtb_load", RTB_LOAD)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def post(url, data, timeout=5.0, headers=None):
    """(status, body) of a POST of raw bytes; no proxy (all lab addresses are local)."""
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"content-type": "application/json", **(headers or {})})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def get_with_token(url, timeout=5.0):
    """GET `url` with the run's onboarding token as a bearer token."""
    token = os.environ.get(TOKEN_ENV, "")
    req = urllib.request.Request(url, method="GET",
                                 headers={"authorization": f"Bearer {token}"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def wait_onboarded(rl, dep, names=DSP_NAMES, timeout=ONBOARD_TIMEOUT_S):
    end = time.monotonic() + timeout
    while True:
        # GET /dsp needs the onboarding token like POST does (the exchange's safe default).
        status, listing = get_with_token(f"http://{dep.addr}/dsp")
        if status == 200 and all(f'"{n}"' in listing for n in names):
            time.sleep(ONBOARD_SETTLE_S)
            return listing
        if time.monotonic() > end:
            logs = "\n".join(c.logs()[-600:] for c in dep.dsps)
            raise RuntimeError(f"{dep.variant.name}: DSPs did not onboard through "
                               f"{dep.onboard_url} ({status}: {listing[:300]}); DSP logs:\n{logs}")
        time.sleep(0.1)


def measure(cli, dep, bodies, duration_s, tag):
    """One wrk run through `cli _measure`, plus the exchange cgroup's throttling over it."""
    argv = [sys.executable, str(cli), "_measure", "--url-addr", dep.addr, "--debug-addr",
            dep.debug, "--pid", str(dep.exchange.pid), "--duration-s", str(duration_s),
            "--name", tag, "--", *map(str, bodies)]
    if dep.client_pid:
        argv = ["nsenter", "-t", str(dep.client_pid), "-n", *argv]
    cg = cgroup.cpu_dir(dep.exchange.pid)
    before = cgroup.throttling(cg)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + MEASURE_GRACE_S)
    after = cgroup.throttling(cg)
    m = re.search(r"^CLABJSON (.*)$", r.stdout, re.M)
    if r.returncode != 0 or not m:
        raise RuntimeError(f"measurement {tag} failed (exit {r.returncode}): "
                           f"{(r.stdout + r.stderr).strip()[-1500:]}")
    res = json.loads(m.group(1))
    res["throttling"] = cgroup.delta(before, after) if after else {}
    res["quota"] = cgroup.quota(cg)
    return res


def measure_child(args):
    """`containerlab _measure`: the load run itself (inside the client's namespace if any)."""
    rl = load_rtb_load()
    server = rl.Server(args.name, args.url_addr, types.SimpleNamespace(pid=args.pid),
                       args.debug_addr)
    try:
        res = rl.measured(lambda: rl.run_wrk(None, server, [Path(b) for b in args.bodies],
                                             CONNECTIONS, args.duration_s), server)
    except rl.Failure as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1
    print("CLABJSON " + json.dumps(res), flush=True)
    return 0


def run_variant(ctx, variant):
    """Both scenarios of one variant; returns {scenario: result}. ctx: session, rl, image,
    network, bodies, cli, args (duration_s, smoke)."""
    t0 = time.monotonic()
    dep = start_exchange(ctx.session, ctx.image, variant, ctx.network)
    drv = ",".join(drivers(dep.exchange.logs())) or "?"
    log(f"== {variant.name} ({variant.about()}): exchange up in {time.monotonic() - t0:.1f}s at "
        f"{dep.addr}, driver {drv}")
    code, _ = post(dep.auction_url, Path(ctx.bodies[0]).read_bytes())
    if code != 404:
        raise RuntimeError(f"{variant.name}: {dep.auction_url} answered {code}, not 404")
    out = {}
    for sc in SCENARIOS:
        if sc == "three-dsps":
            start_dsps(ctx.session, ctx.image, dep, ctx.network)
            wait_onboarded(ctx.rl, dep)
            code, _ = post(dep.auction_url, Path(ctx.bodies[0]).read_bytes())
            if code not in (200, 204):
                raise RuntimeError(f"{variant.name}: an auction with three DSPs answered {code}")
        if not ctx.args.smoke:
            measure(ctx.cli, dep, ctx.bodies, WARMUP_S, f"{variant.name} {sc} warm-up")
        res = measure(ctx.cli, dep, ctx.bodies, ctx.args.duration_s, f"{variant.name} {sc}")
        res["driver"] = drv
        out[sc] = res
        th = res["throttling"]
        log(f"   {sc:<11} {res['rps']:>8.0f} req/s  p50 {res['percentiles_ms']['50']:.3f} ms  "
            f"p99 {res['percentiles_ms']['99']:.3f} ms  status {ctx.rl.fmt_status(res['status'])}"
            f"  exchange {res['cpu_util'] * 100:.0f}% of a core  throttled "
            f"{th.get('nr_throttled', 0)}/{th.get('nr_periods', 0)} periods, "
            f"{th.get('throttled_ms', 0):.0f} ms")
    left = ctx.session.remove_containers()
    if left:
        raise RuntimeError(f"could not remove containers {left}")
    return out
