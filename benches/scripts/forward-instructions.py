#!/usr/bin/env python3
"""forward-instructions: user-space instructions per request of the fan-out floor
(rtb-io's bench_forward), counted by callgrind, for one or more builds: a steady, noise-free
figure for changes to the client's write and read path, where CPU time on this shared machine
moves by 20% from day to day.

bench_forward runs under valgrind on the epoll driver (valgrind does not model io_uring), with
N upstreams served by two fast rtb-dsp; one keep-alive client sends a 1,401-byte sample request
R1 then R2 times (after 20 to warm the pools); instructions per request = the difference of the
two runs' totals / (R2 - R1). The kernel's work and cache misses are not counted.

    benches/scripts/forward-instructions.py --build base=/tmp/base --build new=target/release --dsps 3,30

Each DIR holds rtb-dsp and examples/bench_forward.
"""
import argparse
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT.parent / "shared" / "openrtb-samples" / "03-iab26-req-mobile-app.json"
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


def send(port, request, n):
    with socket.create_connection(("127.0.0.1", port)) as s:
        for _ in range(n):
            s.sendall(request)
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += s.recv(65536)
            head, rest = buf.split(b"\r\n\r\n", 1)
            length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
            while len(rest) < length:
                rest += s.recv(65536)
            assert head.startswith(b"HTTP/1.1 200"), head


def total_instructions(bins, upstreams, request, n, out):
    procs, addrs = start_dsps(bins)
    port = free_port()
    ups = [f"{addrs[i % len(addrs)]}/bid" for i in range(upstreams)]
    vg = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                           str(bins / "examples" / "bench_forward"), str(port), "1", "epoll",
                           *ups], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.1)
        send(port, request, 20)
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
    args = ap.parse_args()
    body = SAMPLE.read_bytes()
    request = (b"POST /openrtb2/auction HTTP/1.1\r\nhost: x\r\ncontent-type: "
               b"application/json\r\ncontent-length: %d\r\n\r\n" % len(body)) + body
    work = Path(subprocess.check_output(["mktemp", "-d"], text=True).strip())
    for n in [int(x) for x in args.dsps.split(",")]:
        for label, path in (b.split("=", 1) for b in args.build):
            a, b = (total_instructions(Path(path).resolve(), n, request, r,
                                       work / f"cg.{label}.{n}.{r}") for r in ROUNDS)
            per = (b - a) / (ROUNDS[1] - ROUNDS[0])
            print(f"{label} {n} upstreams: {per:,.0f} instructions per request "
                  f"(totals {a:,} and {b:,})", flush=True)


if __name__ == "__main__":
    main()
