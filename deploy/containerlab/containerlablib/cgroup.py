"""A container's CPU cgroup: its CFS quota and the throttling counters the kernel keeps.

`podman run --cpus N` writes a CFS bandwidth quota of N x period per period (period 100 ms):
cgroup v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`, cgroup v2 `cpu.max`. Once the group's
threads have used the quota in a period they all wait for the next one; `cpu.stat` counts the
periods (nr_periods), the periods that ended throttled (nr_throttled) and the time spent
throttled (v1 throttled_time in ns, v2 throttled_usec).
"""
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
V1_CPU_MOUNTS = ("cpu", "cpu,cpuacct")


def cpu_dir(pid):
    """The cgroup directory holding `pid`'s cpu controller files, or None."""
    v2 = None
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            for mount in V1_CPU_MOUNTS:
                d = CGROUP_ROOT / mount / path.lstrip("/")
                if (d / "cpu.stat").exists():
                    return d
        elif controllers == "":
            v2 = CGROUP_ROOT / path.lstrip("/")
    if v2 is not None and (v2 / "cpu.max").exists():
        return v2
    return None


def quota(d):
    """'50 ms / 100 ms' style text, or 'none'."""
    if d is None:
        return "n/a"
    if (d / "cpu.max").exists():
        q, period = (d / "cpu.max").read_text().split()
    else:
        q = (d / "cpu.cfs_quota_us").read_text().strip()
        period = (d / "cpu.cfs_period_us").read_text().strip()
    if q in ("max", "-1"):
        return "none"
    return f"{int(q) / 1000:g} ms per {int(period) / 1000:g} ms"


def throttling(d):
    """{'nr_periods', 'nr_throttled', 'throttled_ms'} now, or {} without a cpu cgroup."""
    if d is None:
        return {}
    stat = dict(line.split() for line in (d / "cpu.stat").read_text().splitlines()
                if len(line.split()) == 2)
    if "throttled_usec" in stat:
        ms = int(stat["throttled_usec"]) / 1000
    else:
        ms = int(stat.get("throttled_time", 0)) / 1e6
    return {"nr_periods": int(stat.get("nr_periods", 0)),
            "nr_throttled": int(stat.get("nr_throttled", 0)), "throttled_ms": ms}


def delta(before, after):
    return {k: after[k] - before.get(k, 0) for k in after}
