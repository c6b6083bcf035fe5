#!/usr/bin/env python3
"""conn-memory: what a connection costs the exchange in memory (issue 19), user space and
kernel apart.

Client connections: rtb-exchange (one worker, release build) is started fresh for each count
(100,000 needs a hard fd limit above it: CAP_SYS_RESOURCE, which this machine withholds);
this script opens that many keep-alive connections to it (from several loopback source
addresses, 10,000 each) and measures; then it
sends one `GET /healthz` on each and reads the answer, so every connection has been served
once and is idle, as a keep-alive client between two requests is, and measures again. The exchange's resident set
(VmRSS) and the kernel's socket memory (Slab in /proc/meminfo, plus TCP buffer pages from
/proc/net/sockstat) are read before and after; the deltas divided by the count are the
figures. The kernel figure covers both ends of each loopback connection (the client's socket is
on this machine too), so half of it is the server's share.

Pooled DSP connections: one rtb-dsp, and the exchange started with `--dsp-prewarm K`; `--dsps`
names all onboarded with the same URL, so the worker opens K connections for each (the pool's
idle cap bounds K); the same deltas, divided by the connections established to the DSP
(counted in /proc/net/tcp).

Machine-wide kernel figures move with whatever else runs: run it alone (`rtb-measure`).

    benches/scripts/conn-memory.py --bins target/release --clients 10000,19000 --dsps 50
"""
import argparse
import importlib.util
import resource
import socket
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PAGE_KB = resource.getpagesize() // 1024
# Source addresses for client connections: 127.0.0.2.. (all of 127/8 is loopback on Linux).
# Ports are picked at connect time (IP_BIND_ADDRESS_NO_PORT), so each address could take the
# whole ephemeral range for one destination; 10,000 leaves room for TIME_WAIT of earlier runs.
SOURCES_PER_ADDRESS = 10_000
IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h; not exported by Python's socket module
SETTLE_S = 1.0
# fds beyond the connections: the process's own files, the exchange's listeners and rings.
FDS_SPARE = 500
DSP_PREWARM = 64
HEALTH_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: rtb\r\n\r\n"


def load_rtb_load():
    spec = importlib.util.spec_from_file_location("rtb_load", HERE / "rtb-load.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def rss_kb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def kernel_kb():
    """Slab plus TCP buffer memory, kB (machine-wide)."""
    slab = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Slab:"):
            slab = int(line.split()[1])
    tcp_pages = 0
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            fields = line.split()
            tcp_pages = int(fields[fields.index("mem") + 1])
    return slab + tcp_pages * PAGE_KB


def established_to(port):
    """Established TCP connections whose remote end is 127.0.0.1:`port` (/proc/net/tcp):
    the exchange's pooled connections to the DSP (the exchange's pool gauges are refreshed by
    auctions, and none run here)."""
    want = f"0100007F:{port:04X}"
    n = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[2] == want and fields[3] == "01":
            n += 1
    return n


def connect_clients(addr, count):
    """`count` connections to `addr`, accepted by the exchange but not used yet."""
    host, port = addr.rsplit(":", 1)
    socks = []
    for i in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        s.bind((f"127.0.0.{2 + i // SOURCES_PER_ADDRESS}", 0))
        s.connect((host, int(port)))
        socks.append(s)
    return socks


def serve_once(socks):
    """One GET /healthz on every connection, answers read; the connections stay open."""
    for s in socks:
        s.sendall(HEALTH_REQUEST)
    for s in socks:
        s.settimeout(10)
        if not s.recv(4096).startswith(b"HTTP/1.1 200"):
            raise RuntimeError("a /healthz answer was not 200")


def clients_case(rl, work, bins, count):
    """Two rows: the connections accepted and never used, then the same served once."""
    procs = rl.Procs(work)
    try:
        server = rl.start_exchange(procs, bins, "uring", [
            "--connections-per-worker", str(count + 1000), "--idle-timeout-s", "600"])
        time.sleep(SETTLE_S)
        rss0, k0 = rss_kb(server.proc.pid), kernel_kb()
        socks = connect_clients(server.addr, count)
        time.sleep(SETTLE_S)
        rss1, k1 = rss_kb(server.proc.pid), kernel_kb()
        serve_once(socks)
        time.sleep(SETTLE_S)
        rss2, k2 = rss_kb(server.proc.pid), kernel_kb()
        open_now = server.metrics().get(("rtb_connections_open", ""), 0)
        for s in socks:
            s.close()
    finally:
        procs.stop_all()
    row = {"count": count, "reported_open": open_now}
    return [{**row, "what": f"{count} client connections, accepted, never used",
             "rss_kb": rss1 - rss0, "kernel_kb": k1 - k0},
            {**row, "what": f"{count} client connections, idle after one request",
             "rss_kb": rss2 - rss0, "kernel_kb": k2 - k0}]


def pool_case(rl, work, bins, dsps):
    procs = rl.Procs(work)
    try:
        server = rl.start_exchange(procs, bins, "uring", [
            "--dsp-prewarm", str(DSP_PREWARM), "--dsp-connects-per-s", "1000000",
            "--dsp-connect-burst", "1000000", "--dsp-connects-in-flight", "64",
            "--max-dsps", str(max(dsps, 1))])
        p = procs.start("dsp", [str(bins / "rtb-dsp"), "--dsp-name", "mem", "--bind",
                                "127.0.0.1", "--port", "0", "--workers", "1",
                                "--onboard-interval-s", "3600"], core=rl.CLIENT_CORE)
        url = "http://" + procs.wait_line("dsp", p, r"^listening on (\S+)")
        time.sleep(SETTLE_S)
        rss0, k0 = rss_kb(server.proc.pid), kernel_kb()
        server.onboard([(f"mem{i}", url) for i in range(dsps)])
        dsp_port = int(url.rsplit(":", 1)[1])
        idle, deadline = 0, time.monotonic() + 30
        while time.monotonic() < deadline:
            time.sleep(SETTLE_S)
            now = established_to(dsp_port)
            if now == idle and now > 0:
                break
            idle = now
        rss1, k1 = rss_kb(server.proc.pid), kernel_kb()
    finally:
        procs.stop_all()
    return {"what": f"{dsps} DSPs x up to {DSP_PREWARM} pooled connections", "count": idle,
            "reported_open": idle, "rss_kb": rss1 - rss0, "kernel_kb": k1 - k0}


def raise_fd_limit(want):
    """Raises this process's fd limit (inherited by the exchange it starts) to `want`; raising
    the hard limit needs CAP_SYS_RESOURCE, which some sandboxes withhold (this one caps at
    20,000), so a count that cannot fit fails here with the reason."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if want > hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return
        except (ValueError, OSError) as e:
            sys.exit(f"conn-memory: {want} fds wanted, hard limit {hard} and it cannot be "
                     f"raised here ({e}); ask for fewer --clients")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bins", type=Path, required=True, help="release target dir")
    ap.add_argument("--clients", default="10000,19000",
                    help="client connection counts (default 10000,19000: this machine's hard "
                         "fd limit is 20,000 and cannot be raised)")
    ap.add_argument("--dsps", type=int, default=50)
    ap.add_argument("--work", type=Path, default=Path("/tmp/rtb-conn-memory"))
    args = ap.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    raise_fd_limit(max(counts) + FDS_SPARE)
    args.work.mkdir(parents=True, exist_ok=True)
    rl = load_rtb_load()
    rows = [row for c in counts for row in clients_case(rl, args.work, args.bins, c)]
    rows.append(pool_case(rl, args.work, args.bins, args.dsps))
    print("| connections | counted (exchange gauge; /proc/net/tcp for pools) | exchange RSS per connection | "
          "kernel per connection (both ends) |")
    print("|---|---:|---:|---:|")
    for r in rows:
        n = max(r["count"], 1)
        print(f"| {r['what']} | {int(r['reported_open'])} | {r['rss_kb'] * 1024 / n:,.0f} B | "
              f"{r['kernel_kb'] * 1024 / n:,.0f} B |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
