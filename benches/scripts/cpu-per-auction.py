#!/usr/bin/env python3
"""cpu-per-auction: the exchange's CPU per auction, user and kernel apart, against the number of
DSPs it calls, for one or more builds side by side in the same run.

Each run: rtb-exchange with one worker pinned to core 0, N fast rtb-dsp (latency 0, always bid)
and wrk on core 1, closed loop. The exchange's utime and stime come from /proc/PID/stat before
and after the measured window; divided by the requests wrk completed in it, they give
microseconds of CPU per auction, the kernel's share (loopback TCP: the sender also pays the
receiver's processing) apart from user space. Builds and DSP counts are interleaved round by
round (A B, B A, ...), so drift on a shared machine shows up in both; medians are reported.

    benches/scripts/cpu-per-auction.py --build main=target/release --dsps 1,3,10
    benches/scripts/cpu-per-auction.py --build main=target/release --dsps 1,3,10,30 \
        --dsp-processes 2 --floor  # the slope per DSP, and the fan-out floor's; 30 DSP
                                   # names served by 2 rtb-dsp
    benches/scripts/cpu-per-auction.py --build old=/tmp/old --build new=target/release --rounds 5
    benches/scripts/cpu-per-auction.py --build off=target/release --build ledger=target/release \
        --exchange-args 'ledger=--ledger file:{work}/ledger.jsonl'   # same build, a flag apart
    benches/scripts/cpu-per-auction.py --build plain=target/release --build tls=target/release \
        --tls tls --half-load          # the DSPs over https; p99 at half the closed-loop rate
    benches/scripts/cpu-per-auction.py --build off=target/release --build lurl=target/release \
        --dsp-args 'lurl=--lurl'     # every bid carries a lurl: each auction fires loss notices
    benches/scripts/cpu-per-auction.py --build shed=target/release --build auction=target/release \
        --exchange-args 'shed=--max-auctions-in-flight 1' --dsp-args 'shed=--latency fixed:20' \
        --dsps 0,3                   # what a shed costs: one auction at a time, the rest shed,
                                     # beside a 404 (0 DSPs) and a real auction
    benches/scripts/cpu-per-auction.py --build plain=target/release --build gzip=target/release \
        --gzip gzip                  # gzip requests to the DSPs and gzip answers back
    benches/scripts/cpu-per-auction.py --build http=target/release --build roster=target/release \
        --roster roster=47           # 3 DSPs from a roster of 50 (47 match no request)

With --tls LABEL, that label's DSPs serve https with a certificate for 127.0.0.1 signed by a CA
made for the run with openssl, and the exchange trusts it through --dsp-ca-file. With
--half-load, each run is followed by one paced at half its closed-loop rate (wrk's per-request
delay on every connection), whose p50/p99 are reported.

Load runner and process handling come from benches/scripts/rtb-load.py (imported).
"""
import argparse
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TICKS_PER_S = os.sysconf("SC_CLK_TCK")
CONNECTIONS = 32
PACED_CONNECTIONS = 64
WARMUP_S = 1


def load_rtb_load():
    spec = importlib.util.spec_from_file_location("rtb_load", HERE / "rtb-load.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cpu_ticks(pid):
    """(utime, stime) of `pid`, in clock ticks (fields 14 and 15 of /proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[11]), int(fields[12])


def make_certs(work):
    """A CA and a certificate for 127.0.0.1 it signs (openssl, P-256); (ca, cert, key) paths."""
    ca_key, ca, key, csr, cert, ext = (work / n for n in (
        "ca.key", "ca.pem", "dsp.key", "dsp.csr", "dsp.pem", "dsp.ext"))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run = lambda *argv: subprocess.run(argv, check=True, capture_output=True)
    run("openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2",
        "-subj", "/CN=rtb bench CA")
    run("openssl", "req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-out", cert, "-days", "2", "-extfile", ext)
    return ca, cert, key


def start_fleet(rl, procs, bins, count, tag, certs=None, driver=None, dsp_args=(),
                processes=None):
    """`count` fast DSPs on the client core (https with `certs`, on `driver` when given);
    [(name, url)]. With `processes`, that many rtb-dsp serve them all, DSP i on process
    i % processes (the exchange still keeps a pool per DSP name and calls each once)."""
    fleet = []
    tls = ["--tls-cert", str(certs[1]), "--tls-key", str(certs[2])] if certs else []
    tls += ["--io-driver", driver] if driver else []
    scheme = "https://" if certs else "http://"
    urls = []
    # Fast DSPs unless the label's --dsp-args say otherwise (rtb-dsp takes each flag once).
    defaults = [arg for flag, value in (("--latency", "fixed:0"), ("--bid-rate", "1"),
                                        ("--hang-rate", "0"))
                if flag not in dsp_args for arg in (flag, value)]
    for i in range(min(count, processes or count)):
        name = f"{tag}-dsp{i}"
        p = procs.start(name, [
            str(bins / "rtb-dsp"), "--dsp-name", name, "--bind", "127.0.0.1", "--port", "0",
            "--workers", "1", *defaults,
            "--onboard-interval-s", "3600", *tls, *dsp_args], core=rl.CLIENT_CORE)
        urls.append(scheme + procs.wait_line(name, p, r"^listening on (\S+)"))
    for i in range(count):
        fleet.append((f"{tag}-dsp{i}", urls[i % len(urls)]))
    return fleet


def paced(rl, work, server, bodies, duration_s, rate, latency_ms):
    """A run at about `rate` req/s: each of PACED_CONNECTIONS pauses before every request for
    its share of the period less the closed loop's median latency (wrk's delay is in whole
    ms, so the rate reached is printed, not assumed)."""
    period_ms = 1000 * PACED_CONNECTIONS / max(rate, 1)
    os.environ["RTB_WRK_DELAY_MS"] = str(max(1, round(period_ms - latency_ms)))
    try:
        r = rl.run_wrk(work, server, bodies, PACED_CONNECTIONS, duration_s)
    finally:
        del os.environ["RTB_WRK_DELAY_MS"]
    return {"half_rps": r["rps"], "half_p50_ms": r["percentiles_ms"]["50"],
            "half_p99_ms": r["percentiles_ms"]["99"]}


def write_roster(work, tag, fleet, unmatched):
    """A roster file with the fleet's DSPs (no filter) and `unmatched` more that no request
    matches (a country none has), all at the first DSP's URL; its path."""
    entries = [{"name": name, "url": url + "/bid"} for name, url in fleet]
    entries += [{"name": f"{tag}-x{i}", "url": fleet[0][1] + "/bid", "countries": ["ZZZ"]}
                for i in range(unmatched)]
    path = work / f"roster-{tag}.json"
    path.write_text(json.dumps({"dsps": entries}))
    return path


def measure(rl, work, bins, dsps, bodies, duration_s, tag, extra_args=(), certs=None,
            half_load=False, dsp_driver=None, dsp_args=(), dsp_processes=None, floor=False,
            gzip=False, roster_unmatched=None):
    """One closed-loop run (and, with `half_load`, one at half its rate); the figures of the
    measured windows."""
    procs = rl.Procs(work)
    half = {}
    if certs:
        extra_args = [*extra_args, "--dsp-ca-file", str(certs[0])]
    try:
        if gzip:
            dsp_args = [*dsp_args, "--gzip"]
        fleet = start_fleet(rl, procs, bins, dsps, tag, certs, dsp_driver, dsp_args,
                            dsp_processes)
        if floor:
            server = rl.start_floor(procs, bins, fleet)
        elif roster_unmatched is not None:
            path = write_roster(work, tag, fleet, roster_unmatched)
            server = rl.start_exchange(procs, bins, "uring", [*extra_args, "--roster", str(path)])
        else:
            server = rl.start_exchange(procs, bins, "uring", extra_args)
            server.onboard(fleet, {"gzip": True} if gzip else None)
        time.sleep(rl.ONBOARD_SETTLE_S)
        rl.run_wrk(work, server, bodies, CONNECTIONS, WARMUP_S)
        before = cpu_ticks(server.proc.pid)
        t0 = time.monotonic()
        result = rl.run_wrk(work, server, bodies, CONNECTIONS, duration_s)
        wall = time.monotonic() - t0
        after = cpu_ticks(server.proc.pid)
        if half_load:
            half = paced(rl, work, server, bodies, duration_s, result["rps"] / 2,
                         result["percentiles_ms"]["50"])
    finally:
        procs.stop_all()
    n = max(result["requests"], 1)
    user_us = (after[0] - before[0]) / TICKS_PER_S / n * 1e6
    sys_us = (after[1] - before[1]) / TICKS_PER_S / n * 1e6
    return {"rps": result["rps"], "user_us": user_us, "sys_us": sys_us,
            "cpu_us": user_us + sys_us, "busy": (after[0] + after[1] - before[0] - before[1])
            / TICKS_PER_S / wall, "non_2xx": result["status"]["4xx/5xx"], **half}


def table(builds, counts, runs):
    lines = ["| build | DSPs | req/s | CPU us/auction | user us | kernel us | core busy | "
             "req/s vs first build | CPU vs first build |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    if "half_p99_ms" in next(iter(runs.values()))[0]:
        lines[0] += " half-load req/s | p50 ms | p99 ms |"
        lines[1] += "---:|---:|---:|"
    for n in counts:
        base = None
        for label, _ in builds:
            rs = runs[(label, n)]
            med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
            base = base or med
            lines.append(f"| {label} | {n} | {med['rps']:.0f} | {med['cpu_us']:.1f} | "
                         f"{med['user_us']:.1f} | {med['sys_us']:.1f} | {med['busy']:.2f} | "
                         f"{med['rps'] / base['rps']:.3f}x | "
                         f"{med['cpu_us'] / base['cpu_us']:.3f}x |"
                         + (f" {med['half_rps']:.0f} | {med['half_p50_ms']:.2f} | "
                            f"{med['half_p99_ms']:.2f} |" if "half_p99_ms" in med else ""))
    return "\n".join(lines)


def slope(counts, label, runs):
    """Least-squares µs of CPU per added DSP over the counts measured."""
    xs = counts
    ys = [statistics.median(r["cpu_us"] for r in runs[(label, n)]) for n in counts]
    if len(xs) < 2:
        return None
    mx, my = statistics.mean(xs), statistics.mean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def shape_builds(builds, bodies, specs, work):
    """Each build once per request shape: the new (label, dir) list and each label's bodies."""
    spec_mod = importlib.util.spec_from_file_location("request_shapes",
                                                      HERE / "request_shapes.py")
    shapes = importlib.util.module_from_spec(spec_mod)
    spec_mod.loader.exec_module(shapes)
    out, label_bodies = [], {}
    for spec in specs:
        files, mean = shapes.shaped_bodies(bodies, spec, work / f"shape-{spec.replace(':', '-')}")
        print(f"shape {spec}: {len(files)} bodies, mean {mean:.0f} bytes", flush=True)
        for label, bins in builds:
            out.append((f"{label} {spec}", bins))
            label_bodies[f"{label} {spec}"] = files
    return out, label_bodies


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", action="append", required=True,
                    help="LABEL=DIR with rtb-exchange and rtb-dsp (repeat to compare builds)")
    ap.add_argument("--dsps", default="3", help="comma-separated DSP counts (default 3)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration-s", type=int, default=3)
    ap.add_argument("--exchange-args", action="append", default=[],
                    help="LABEL=ARGS: extra rtb-exchange flags for that build label, split on "
                    "spaces, {work} replaced by a fresh directory per run (repeatable)")
    ap.add_argument("--tls", action="append", default=[],
                    help="LABEL whose DSPs serve https (a CA made for the run; repeatable)")
    ap.add_argument("--dsp-io-driver", choices=["auto", "uring", "epoll"],
                    help="the rtb-dsp fleet's IO driver (default: rtb-dsp's own, auto)")
    ap.add_argument("--half-load", action="store_true",
                    help="after each run, one at half its rate: p50/p99 reported")
    ap.add_argument("--dsp-args", action="append", default=[],
                    help="LABEL=ARGS: extra rtb-dsp flags for that build label (repeatable)")
    ap.add_argument("--dsp-processes", type=int,
                    help="serve the DSPs from at most this many rtb-dsp processes (default: one "
                    "per DSP); fewer keeps the DSP side cheap at 10-30 DSPs on two cores")
    ap.add_argument("--gzip", action="append", default=[],
                    help="LABEL whose DSPs are onboarded with gzip: true and run rtb-dsp --gzip "
                    "(requests and answers gzip-compressed; repeatable)")
    ap.add_argument("--roster", action="append", default=[],
                    help="LABEL=N: that label's exchange gets its DSPs from a roster file with N "
                    "more DSPs that match no request (the cost of planning with policy)")
    ap.add_argument("--floor", action="store_true",
                    help="also measure the fan-out floor (rtb-io's bench_forward: same DSPs and "
                    "pools, no JSON, no auction) as the build `floor`, or of each build as "
                    "`floor LABEL` when several are given")
    ap.add_argument("--shapes",
                    help="comma-separated request shapes (size:BYTES, imps:N; see "
                    "request_shapes.py): each build is measured once per shape, as the label "
                    "'LABEL SHAPE'")
    ap.add_argument("--json", type=Path, help="also write every run here")
    args = ap.parse_args()
    builds = [(b.split("=", 1)[0], Path(b.split("=", 1)[1]).resolve()) for b in args.build]
    extra = {e.split("=", 1)[0]: e.split("=", 1)[1].split() for e in args.exchange_args}
    dsp_extra = {e.split("=", 1)[0]: e.split("=", 1)[1].split() for e in args.dsp_args}
    rosters = {e.split("=", 1)[0]: int(e.split("=", 1)[1]) for e in args.roster}
    floors = []
    if args.floor:
        # One floor per build when builds are compared (a change to rtb-io's IO path moves
        # both), named `floor LABEL`; a single build's is just `floor`.
        for label, bins in builds[:len(args.build)]:
            floors.append("floor" if len(args.build) == 1 else f"floor {label}")
            builds.append((floors[-1], bins))
    counts = [int(x) for x in args.dsps.split(",") if x.strip()]
    if args.floor and min(counts) < 1:
        ap.error("--floor needs at least one DSP in every count")
    rl = load_rtb_load()
    rl.keep_harness_off_server_core()
    work = Path(tempfile.mkdtemp(prefix="rtb-cpu."))
    bodies, _lines, info = rl.prepare_bodies(work)
    label_bodies = {}
    if args.shapes:
        builds, label_bodies = shape_builds(builds, bodies, args.shapes.split(","), work)
    certs = make_certs(work) if args.tls else None
    print(f"bodies: {info['source']}, mean {info['mean_bytes']:.0f} bytes; wrk -t1 "
          f"-c{CONNECTIONS} -d{args.duration_s}s; {args.rounds} rounds", flush=True)
    runs = {(label, n): [] for label, _ in builds for n in counts}
    for rnd in range(args.rounds):
        order = builds if rnd % 2 == 0 else list(reversed(builds))
        for n in (counts if rnd % 2 == 0 else list(reversed(counts))):
            for label, bins in order:
                run_dir = Path(tempfile.mkdtemp(prefix=f"run-{label}.", dir=work))
                flags = [a.replace("{work}", str(run_dir)) for a in extra.get(label, [])]
                tag = re.sub(r"[^A-Za-z0-9._-]", "-", f"r{rnd}{label}{n}")
                r = measure(rl, work, bins, n, label_bodies.get(label, bodies), args.duration_s,
                            tag, flags,
                            certs if label in args.tls else None, args.half_load,
                            args.dsp_io_driver, dsp_extra.get(label, []), args.dsp_processes,
                            floor=label in floors, gzip=label in args.gzip,
                            roster_unmatched=rosters.get(label))
                r["dir_bytes"] = sum(f.stat().st_size for f in run_dir.iterdir())
                shutil.rmtree(run_dir, ignore_errors=True)
                runs[(label, n)].append(r)
                print(f"round {rnd + 1} {label} {n} DSPs: {r['rps']:.0f} req/s, "
                      f"{r['cpu_us']:.1f} us/auction ({r['user_us']:.1f} user, "
                      f"{r['sys_us']:.1f} kernel), non-2xx {r['non_2xx']}, "
                      f"{r['dir_bytes']} bytes written to {{work}}"
                      + (f", half load {r['half_rps']:.0f} req/s p50 {r['half_p50_ms']:.2f} ms "
                         f"p99 {r['half_p99_ms']:.2f} ms" if args.half_load else ""), flush=True)
    print()
    print(table(builds, counts, runs))
    for label, _ in builds:
        s = slope(counts, label, runs)
        if s is not None:
            print(f"\n{label}: {s:.1f} us of CPU per added DSP (least squares over {counts})")
    if args.json:
        args.json.write_text(json.dumps({f"{k[0]}/{k[1]}": v for k, v in runs.items()},
                                        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
