#!/usr/bin/env python3
"""pool-size: how many connections the exchange keeps to its DSPs after a burst, while the
traffic that follows is light (issue 19: pools sized by Little's law), for one or more builds
in the same run.

Each build: rtb-exchange (one worker pinned to core 0), N fast DSP names served by a few
rtb-dsp processes on core 1. A burst (wrk closed loop, many connections) grows every pool to
the burst's concurrency; then a trickle (wrk with a per-request delay, a few connections, about
100 auctions/s) runs for a while, and every few seconds the established connections to the
DSPs' ports are counted in /proc/net/tcp (the exchange's side only: remote port = a DSP's), and
the connections the exchange opened are read from its metrics. A pool that keeps whatever its
busiest second opened shows the burst's count to the end; a sized pool shrinks to what the
trickle needs without reopening any.

    benches/scripts/pool-size.py --build old=/tmp/old --build new=target/release --dsps 30
"""
import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load(name, file):
    spec = importlib.util.spec_from_file_location(name, HERE / file)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_build(rl, cpa, cm, work, label, bins, args, bodies):
    procs = rl.Procs(work)
    samples = []
    try:
        fleet = cpa.start_fleet(rl, procs, bins, args.dsps, label, processes=2)
        ports = {int(url.rsplit(":", 1)[1]) for _, url in fleet}
        server = rl.start_exchange(procs, bins, "uring", [
            "--dsp-connects-per-s", "1000000", "--dsp-connect-burst", "1000000"])
        server.onboard(fleet)
        time.sleep(rl.ONBOARD_SETTLE_S)
        rl.run_wrk(work, server, bodies, args.burst_connections, args.burst_s)
        open_now = lambda: sum(cm.established_to(p) for p in ports)  # noqa: E731
        samples.append(("after the burst", open_now(), server_opened(rl, server)))
        os.environ["RTB_WRK_DELAY_MS"] = str(args.trickle_delay_ms)
        try:
            for t in range(args.sample_s, args.trickle_s + 1, args.sample_s):
                rl.run_wrk(work, server, bodies, args.trickle_connections, args.sample_s)
                samples.append((f"trickle {t} s", open_now(),
                                server_opened(rl, server)))
        finally:
            del os.environ["RTB_WRK_DELAY_MS"]
    finally:
        procs.stop_all()
    return samples


def server_opened(rl, server):
    """Connections the exchange opened to the DSPs so far (its metrics)."""
    return int(rl.metric_sum({}, server.metrics(), "rtb_dsp_pool_connections_opened_total"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", action="append", required=True, help="LABEL=DIR (repeatable)")
    ap.add_argument("--dsps", type=int, default=30)
    ap.add_argument("--burst-connections", type=int, default=128)
    ap.add_argument("--burst-s", type=int, default=3)
    ap.add_argument("--trickle-connections", type=int, default=4)
    ap.add_argument("--trickle-delay-ms", type=int, default=40)
    ap.add_argument("--trickle-s", type=int, default=30)
    ap.add_argument("--sample-s", type=int, default=5)
    args = ap.parse_args()
    rl = load("rtb_load", "rtb-load.py")
    cpa = load("cpu_per_auction", "cpu-per-auction.py")
    cm = load("conn_memory", "conn-memory.py")
    work = Path(tempfile.mkdtemp(prefix="rtb-pool."))
    bodies, _lines, info = rl.prepare_bodies(work)
    print(f"bodies: {info['source']}; {args.dsps} DSPs; burst wrk -c{args.burst_connections} "
          f"{args.burst_s} s, then wrk -c{args.trickle_connections} with a "
          f"{args.trickle_delay_ms} ms delay per request for {args.trickle_s} s", flush=True)
    results = {}
    for b in args.build:
        label, bins = b.split("=", 1)
        results[label] = run_build(rl, cpa, cm, work, label, Path(bins).resolve(), args, bodies)
        for when, conns, opened_n in results[label]:
            print(f"{label}: {when}: {conns} connections to the DSPs, {opened_n} opened so far",
                  flush=True)
    print()
    print("| when | " + " | ".join(f"{label}: open / opened" for label in results) + " |")
    print("|---|" + "---:|" * len(results))
    for i, (when, _, _) in enumerate(next(iter(results.values()))):
        cells = [f"{r[i][1]} / {r[i][2]}" for r in results.values()]
        print(f"| {when} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
