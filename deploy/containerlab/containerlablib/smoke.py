"""The CI check (`containerlab --smoke`): the image is built and runs as it should, in podman.

Asserts, failing on the first that does not hold:
  - the image builds (prebuilt target, locally made base) and says USER 10001:10001, tini;
  - a container runs; the exchange's processes (tini and rtb-exchange) have UID 10001;
  - under podman's default seccomp profile the exchange logs driver=epoll, under the chart's
    profile io_uring (uring*), where the host kernel itself allows io_uring (else it says so);
  - three DSP containers onboard with the token (and POST /dsp without it answers 401); an
    auction answers 200 with all three seats, through the bridge address and through the
    published port;
  - `podman stop` while an auction is in flight: tini forwards SIGTERM, the exchange finishes
    that auction (200, answered after the signal), exits 0 within the grace period;
  - everything it made is gone afterwards: containers, network, images (intermediate layers
    too), CNI chains, ip_forward as before.
A first `podman run` that fails (the runtime cannot start containers here) is a SKIP with
podman's error, not a failure.
"""
import ctypes
import datetime
import json
import os
import re
import threading
import time
from pathlib import Path

from .podman import podman, run_flags
from .runner import DSP_NAMES, post, wait_onboarded
from .variants import (EXCH_PORT, EXCHANGE_HOST, Variant, drivers, start_dsps,
                       start_exchange)

UID = 10001
# The drain check: one DSP answers after SLOW_DSP_MS, the auction's deadline is longer, and
# `podman stop` is issued STOP_AFTER_S after the auction was sent, so it lands mid-auction.
SLOW_DSP_MS = 1500
DEADLINE_MS = 2500
STOP_AFTER_S = 0.3
GRACE_S = 10
# The smoke checks the containers' plumbing, one auction at a time, on a machine that may be
# busy with other work: the exchange's loop-lag shedding (default 10 ms) would turn a
# scheduling hiccup into a 204 without DSP calls. Shedding has its own tests.
SHED_LAG_MS = 1000
OUTCOMES = ("won", "no_bid", "shed", "invalid", "no_dsp")
SYS_IO_URING_SETUP = 425  # same number on x86_64 and aarch64
IO_URING_PARAMS_BYTES = 120


class Skip(Exception):
    """Podman cannot run containers here: the smoke prints SKIP with this reason."""


class Failed(Exception):
    """An assertion of the smoke did not hold."""


def ok(cond, what):
    if not cond:
        raise Failed(what)
    print(f"ok: {what}", flush=True)


def io_uring_available():
    """(True, '') when this kernel lets this process set up an io_uring, else (False, why)."""
    libc = ctypes.CDLL(None, use_errno=True)
    params = ctypes.create_string_buffer(IO_URING_PARAMS_BYTES)
    fd = libc.syscall(SYS_IO_URING_SETUP, 1, params)
    if fd >= 0:
        os.close(fd)
        return True, ""
    return False, os.strerror(ctypes.get_errno())


def uids(container):
    """{pid: real UID} of the container's PID 1 and its children, from /proc."""
    pid = container.pid
    pids = [pid] + [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    out = {}
    for p in pids:
        status = Path(f"/proc/{p}/status").read_text()
        out[p] = int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))
    return out


def check_image(session, tag, bin_dir):
    made_base = session.build_image(tag, bin_dir, own=True)
    cfg = json.loads(podman("image", "inspect", tag).stdout)[0]["Config"]
    ok(cfg.get("User") == f"{UID}:{UID}" and cfg.get("Entrypoint", [""])[0] == "/usr/bin/tini",
       f"image {tag} built ({'with a new' if made_base else 'on the existing'} base): "
       f"User {cfg.get('User')}, Entrypoint {cfg.get('Entrypoint')}")
    r = podman("run", "--rm", *run_flags(), "--network", "none", tag, "--version", check=False)
    if r.returncode != 0:
        raise Skip(f"podman cannot run containers here: {r.stderr.strip()[-600:]}")
    ok(r.stdout.startswith("rtb-exchange"), f"the image runs: {r.stdout.strip()}")


def check_default_profile(ctx):
    dep = start_exchange(ctx.session, ctx.image, Variant("default-seccomp", "host",
                                                         seccomp="default"), None)
    ids = uids(dep.exchange)
    ok(len(ids) == 2 and set(ids.values()) == {UID},
       f"tini and rtb-exchange run as UID {UID}: {ids}")
    drv = drivers(dep.exchange.logs())
    ok(drv == ["epoll"], f"podman's default seccomp profile: the exchange logs driver={drv}")
    ctx.session.remove_containers()


def auction_body(bodies):
    """The first load body with a tmax long enough for the slow DSP."""
    req = json.loads(Path(bodies[0]).read_bytes())
    req["tmax"] = DEADLINE_MS + 500
    return json.dumps(req).encode()


def check_auctions(ctx, body):
    """Exchange (chart profile) and three DSPs on the bridge, ports published."""
    dep = start_exchange(ctx.session, ctx.image, Variant("smoke", "published"), ctx.network,
                         extra=["--deadline-ms", str(DEADLINE_MS),
                                "--shed-lag-ms", str(SHED_LAG_MS),
                                "--shed-queue-wait-ms", str(SHED_LAG_MS)])
    drv = drivers(dep.exchange.logs())
    uring, why = io_uring_available()
    if uring:
        ok(bool(drv) and all(d.startswith("uring") for d in drv),
           f"the chart's seccomp profile: the exchange logs driver={drv}")
    else:
        print(f"SKIP io_uring check: the host kernel refuses io_uring itself ({why}); the "
              f"exchange logs driver={drv}", flush=True)
    start_dsps(ctx.session, ctx.image, dep, ctx.network,
               latencies=("fixed:0", "fixed:0", f"fixed:{SLOW_DSP_MS}"))
    listing = wait_onboarded(ctx.rl, dep)
    ok(all(f'"{n}"' in listing for n in DSP_NAMES), "three DSP containers onboarded (token)")
    code, _ = post(f"http://{dep.addr}/dsp", json.dumps(
        {"name": "intruder", "base_url": "http://192.0.2.1:5000"}).encode())
    ok(code == 401, f"POST /dsp without the token answers {code}")
    exchange = ctx.rl.Server("exchange", dep.addr, None, dep.debug)
    bridge = f"http://{ctx.network.host(EXCHANGE_HOST)}:{EXCH_PORT}/openrtb2/auction"
    for path, url in (("bridge address", bridge), ("published port (DNAT)", dep.auction_url)):
        before = exchange.metrics()
        code, text = post(url, body, timeout=DEADLINE_MS / 1000 + 5)
        after = exchange.metrics()
        bids = {n: int(ctx.rl.metric_sum(before, after, "rtb_dsp_bids_total", f'dsp="{n}"'))
                for n in DSP_NAMES}
        outcome = {o: int(ctx.rl.metric_sum(before, after, "rtb_auctions_total",
                                            f'outcome="{o}"')) for o in OUTCOMES}
        seats = sorted(set(re.findall(r'"seat"\s*:\s*"([^"]+)"', text)))
        ok(code == 200 and all(bids.values()) and seats and set(seats) <= set(DSP_NAMES),
           f"auction through the {path} ({url}): {code}, winning seats {seats}, bids per DSP "
           f"{bids}, outcome {({o: n for o, n in outcome.items() if n})}")
    return dep


def log_time(logs, message):
    """Epoch seconds of the first JSON log line with `message`, or None."""
    for line in logs.splitlines():
        if f'"message":"{message}"' in line:
            m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z$",
                         json.loads(line)["timestamp"])
            whole = datetime.datetime.fromisoformat(m.group(1) + "+00:00").timestamp()
            return whole + float("0." + (m.group(2) or "0"))
    return None


def check_drain(dep, body):
    """`podman stop` mid-auction: the auction still answers 200, the exchange exits 0."""
    answer = {}

    def send():
        try:
            answer["code"], _ = post(dep.auction_url, body, timeout=DEADLINE_MS / 1000 + 5)
        except OSError as e:
            answer["error"] = str(e)
        answer["at"] = time.time()

    t = threading.Thread(target=send, daemon=True)
    t.start()
    time.sleep(STOP_AFTER_S)
    t0 = time.monotonic()
    podman("stop", "-t", str(GRACE_S), dep.exchange.name, timeout=GRACE_S + 30)
    took = time.monotonic() - t0
    t.join(DEADLINE_MS / 1000 + 10)
    logs = dep.exchange.logs()
    signalled = log_time(logs, "shutdown signal received")
    ok('"signal":15' in logs and signalled is not None,
       "tini forwarded SIGTERM: the exchange logged `shutdown signal received` signal=15")
    ok(answer.get("code") == 200 and answer["at"] > signalled,
       f"the auction in flight at SIGTERM was finished: {answer.get('code')} "
       f"{answer.get('error', '')}, answered {answer.get('at', 0) - signalled:.2f} s after the "
       "signal")
    code = dep.exchange.exit_code()
    ok(code == 0 and took < GRACE_S and '"message":"stopped"' in logs,
       f"podman stop: exit {code} after {took:.2f} s (grace period {GRACE_S} s)")


def run(ctx, tag, bin_dir):
    """The smoke's checks in order; cleanup is the caller's (it runs on every exit path)."""
    check_image(ctx.session, tag, bin_dir)
    ctx.image = tag
    check_default_profile(ctx)
    ctx.network = ctx.session.network("net")
    body = auction_body(ctx.bodies)
    dep = check_auctions(ctx, body)
    check_drain(dep, body)


def check_clean(session, host, images_before):
    """After cleanup: nothing of the run left in podman's store or on the host."""
    left = session.cleanup()
    problems = host.restore()
    ok(not left, f"containers, network and images removed (left: {left})")
    extra = set(podman("images", "-a", "-q", "--no-trunc").stdout.split()) - images_before
    ok(not extra, f"no image or build layer left behind ({len(extra)} new)")
    ok(not problems, f"host as before: ip_forward, CNI chains, links ({problems})")

