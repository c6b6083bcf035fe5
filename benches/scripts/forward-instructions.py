#!/usr/bin/env python3
"""forward-instructions: user-space instructions per request of the fan-out floor
(rtb-io's bench_forward) or of the exchange's auction (rtb-exchange), counted by callgrind, for
one or more builds: a steady, noise-free figure for changes to the client's write and read path
or to the auction's whole user-space cost, where CPU time on this shared machine moves by 20%
from day to day.

The server runs under valgrind on the epoll driver (valgrind does not model io_uring), with
N upstreams served by two fast rtb-dsp (always bid); one keep-alive client sends a sample
request (1,401 bytes for the floor, 3,528 for the exchange; `--sample` picks another) R1 then R2
times (after 20 to warm the pools); instructions per request = the
difference of the two runs' totals / (R2 - R1), every thread of the process counted. The
kernel's work and cache misses are not counted. With `--server exchange`, rtb-exchange (one
worker) is given the N upstreams as N onboarded DSPs and every request is a real auction
answered 200.

    benches/scripts/forward-instructions.py --build base=/tmp/base --build new=target/release --dsps 3,30
    benches/scripts/forward-instructions.py --server exchange --build old=/tmp/old \
        --build new=target/release --dsps 3         # the auction's user space, old against new

Each DIR holds rtb-dsp and examples/bench_forward (floor) or rtb-exchange (exchange).
"""
import argparse
import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT.parent / "shared" / "openrtb-samples"
# The floor's figures have always used the mobile-app request; the exchange's use a request the
# simulated DSPs' bids win (the mobile-app one has them all rejected, size_not_allowed), of the
# brief's size: every auction then decodes, runs, encodes a 200 and collects its notices.
DEFAULT_SAMPLE = {"floor": "03-iab26-req-mobile-app.json",
                  "exchange": "18-pbsjava-auction-req-app-rewarded-video.json"}
ROUNDS = (100, 600)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_dsps(bins):
    procs, addrs = [], []
    for i in range(2):
        p = subprocess.Popen([str(bins / "rtb-dsp"), "--dsp-name", f"d{i}", "--bind",
                              "127.0.0.1", "--port", "0", "--workers", "1", "--latency",
                              "fixed:0", "--bid-rate", "1", "--onboard-interval-s", "3600"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(p)
        for line in p.stdout:
            if m := re.match(r"^listening on (\S+)", line):
                addrs.append(m.group(1))
                break
    return procs, addrs


def send(port, request, n, warming=False):
    """Sends the request n times on one connection; each answer must be a 200, except while
    warming (the exchange's first auctions may run before its DSP pools are up: a 204)."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        for _ in range(n):
            s.sendall(request)
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += s.recv(65536)
            head, rest = buf.split(b"\r\n\r\n", 1)
            length = re.search(rb"(?i)content-length: (\d+)", head)
            while len(rest) < (int(length.group(1)) if length else 0):
                rest += s.recv(65536)
            assert warming or head.startswith(b"HTTP/1.1 200"), head


# Under valgrind the exchange runs some 50 times slower: its event loop "lags" and requests
# "wait", so its overload rules would shed them. Set through the environment, which a build
# without one of these flags ignores.
UNHURRIED = {**os.environ, "RTB_EXCHANGE_SHED_LAG_MS": "10000",
             "RTB_EXCHANGE_SHED_QUEUE_WAIT_MS": "10000"}


def server_argv(server, bins, port, addrs, upstreams):
    """The command line of the server measured: the floor forwarding to the upstreams, or the
    exchange (which is given them by onboarding, see `onboard`)."""
    if server == "floor":
        ups = [f"{addrs[i % len(addrs)]}/bid" for i in range(upstreams)]
        return [str(bins / "examples" / "bench_forward"), str(port), "1", "epoll", *ups]
    return [str(bins / "rtb-exchange"), "--bind", "127.0.0.1", "--port", str(port),
            "--debug-port", "0", "--workers", "1", "--io-driver", "epoll", "--dsp-ttl-s", "3600"]


def onboard(port, addrs, upstreams):
    """Registers N DSPs, named d0..dN-1, round robin over the rtb-dsp processes."""
    for i in range(upstreams):
        body = json.dumps({"name": f"d{i}", "base_url": f"http://{addrs[i % len(addrs)]}"})
        raw = (b"POST /dsp HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
               b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)) + body.encode()
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(raw)
            answer = s.recv(65536)
        assert answer.startswith(b"HTTP/1.1 201"), answer


def total_instructions(server, bins, upstreams, request, n, out):
    procs, addrs = start_dsps(bins)
    port = free_port()
    vg = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                           *server_argv(server, bins, port, addrs, upstreams)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=UNHURRIED)
    try:
        for _ in range(600):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.1)
        if server == "exchange":
            onboard(port, addrs, upstreams)
        send(port, request, 20, warming=True)
        send(port, request, n)
    finally:
        vg.send_signal(signal.SIGINT)
        vg.wait(timeout=120)
        for p in procs:
            p.kill()
            p.wait()
    return sum(int(line.split()[1]) for line in Path(out).read_text().splitlines()
               if line.startswith("summary:"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", action="append", required=True, help="LABEL=DIR (repeatable)")
    ap.add_argument("--dsps", default="3,30", help="comma-separated upstream counts")
    ap.add_argument("--server", choices=["floor", "exchange"], default="floor",
                    help="what is measured: bench_forward (the fan-out floor) or rtb-exchange")
    ap.add_argument("--sample", help="request body, a file of ../shared/openrtb-samples "
                    "(default: the mobile-app request for the floor, rewarded video for the exchange)")
    args = ap.parse_args()
    body = (SAMPLES / (args.sample or DEFAULT_SAMPLE[args.server])).read_bytes()
    request = (b"POST /openrtb2/auction HTTP/1.1\r\nhost: x\r\ncontent-type: "
               b"application/json\r\ncontent-length: %d\r\n\r\n" % len(body)) + body
    work = Path(subprocess.check_output(["mktemp", "-d"], text=True).strip())
    for n in [int(x) for x in args.dsps.split(",")]:
        for label, path in (b.split("=", 1) for b in args.build):
            a, b = (total_instructions(args.server, Path(path).resolve(), n, request, r,
                                       work / f"cg.{label}.{n}.{r}") for r in ROUNDS)
            per = (b - a) / (ROUNDS[1] - ROUNDS[0])
            print(f"{label} {n} upstreams: {per:,.0f} instructions per request "
                  f"(totals {a:,} and {b:,})", flush=True)


if __name__ == "__main__":
    main()
