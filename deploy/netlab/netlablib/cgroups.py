"""CPU limits the way Kubernetes sets them: a cgroup with a CFS bandwidth quota.

A container's `resources.limits.cpu: N` becomes quota = N x period per period (period 100 ms
by default; the kubelet's `cpuCFSQuotaPeriod` can shorten it): cgroup v1 `cpu.cfs_quota_us` and
`cpu.cfs_period_us`, cgroup v2 `cpu.max` ("quota period"). Once the cgroup's threads together
have used the quota in a period, all of them wait for the next one: a 2-thread process at a
1-CPU limit that is busy on both cores runs 50 ms and stalls 50 ms of every 100 ms.

Every cgroup here is named rtbnl-* directly under the cpu hierarchy's root, created by this
run, and removed with its processes on every exit path (`netlab --cleanup` after a kill -9).
A process enters its cgroup before it execs (the wrapper writes its own pid), so every thread
the exchange starts is limited from the first instruction.
"""
import os
import signal
import time
from pathlib import Path

from .sh import Refused

PREFIX = "rtbnl-"
V1_ROOTS = [Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup/cpu,cpuacct")]
V2_ROOTS = [Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")]
RMDIR_TRIES = 50


def detect():
    """(kind, root, why): ('v1'|'v2', hierarchy root, '') or (None, None, why not)."""
    if os.geteuid() != 0:
        return None, None, "not root"
    for root in V1_ROOTS:
        if (root / "cpu.cfs_quota_us").exists() and os.access(root, os.W_OK):
            return "v1", root, ""
    for root in V2_ROOTS:
        ctrl, sub = root / "cgroup.controllers", root / "cgroup.subtree_control"
        if ctrl.exists() and "cpu" in ctrl.read_text().split():
            if "cpu" in sub.read_text().split():
                return "v2", root, ""
            return None, None, (f"cgroup v2 at {root} has the cpu controller but does not enable "
                                "it for children (cgroup.subtree_control)")
    return None, None, "no cgroup v1 `cpu` hierarchy and no cgroup v2 with the cpu controller"


class CpuLimit:
    """A limit as Kubernetes writes it: `cpus` CPUs per `period_ms` (None: unlimited)."""

    def __init__(self, cpus, period_ms=100):
        if cpus is not None and not (0 < cpus <= 64 and 1 <= period_ms <= 1000):
            raise ValueError(f"CPU limit {cpus} per {period_ms} ms out of range")
        self.cpus, self.period_ms = cpus, period_ms

    @classmethod
    def parse(cls, text):
        """'none', '1' (1 CPU per 100 ms), '0.5@10' (0.5 CPU per 10 ms)."""
        text = text.strip()
        if text in ("none", "0", ""):
            return cls(None)
        cpus, _, period = text.partition("@")
        return cls(float(cpus), int(period) if period else 100)

    @property
    def label(self):
        if self.cpus is None:
            return "no limit"
        return f"limit {self.cpus:g} CPU / {self.period_ms} ms"

    @property
    def quota_us(self):
        return int(self.cpus * self.period_ms * 1000)


class Cgroups:
    """The rtbnl-* cgroups of this run."""

    def __init__(self):
        self.kind, self.root, self.why = detect()
        self.created = []

    def create(self, name, limit):
        if not self.kind:
            raise Refused(f"CPU limits unavailable: {self.why}")
        path = self.root / (PREFIX + name)
        path.mkdir()
        self.created.append(path)
        if self.kind == "v1":
            (path / "cpu.cfs_period_us").write_text(str(limit.period_ms * 1000))
            (path / "cpu.cfs_quota_us").write_text(str(limit.quota_us))
        else:
            (path / "cpu.max").write_text(f"{limit.quota_us} {limit.period_ms * 1000}")
        return path

    @staticmethod
    def wrap(path, argv):
        """argv run inside cgroup `path`: the shell moves itself in, then execs argv."""
        return ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(path)] + list(argv)

    def stats(self, path):
        """{'periods', 'throttled', 'throttled_ms'} from the cgroup's cpu.stat."""
        raw = dict(line.split() for line in (path / "cpu.stat").read_text().splitlines()
                   if len(line.split()) == 2)
        if "throttled_usec" in raw:
            ms = int(raw["throttled_usec"]) / 1000
        else:
            ms = int(raw.get("throttled_time", 0)) / 1e6
        return {"periods": int(raw.get("nr_periods", 0)),
                "throttled": int(raw.get("nr_throttled", 0)), "throttled_ms": ms}

    def remove_all(self):
        """Kills what is left in our cgroups and removes them; returns those that remain."""
        left = [p for p in self.created if not _remove(p)]
        self.created = left
        return left


def _remove(path):
    for _ in range(RMDIR_TRIES):
        if not path.exists():
            return True
        try:
            pids = (path / "cgroup.procs").read_text().split()
        except OSError:
            pids = []
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        try:
            path.rmdir()
            return True
        except OSError:
            time.sleep(0.1)
    return not path.exists()


def cleanup_stale():
    """Removes rtbnl-* cgroups a killed run left behind; returns (removed, left)."""
    removed, left = [], []
    for root in V1_ROOTS + V2_ROOTS:
        if not root.is_dir():
            continue
        for path in root.glob(PREFIX + "*"):
            (removed if _remove(path) else left).append(str(path))
    return removed, left


def stale():
    return [str(p) for root in V1_ROOTS + V2_ROOTS if root.is_dir() for p in root.glob(PREFIX + "*")]
