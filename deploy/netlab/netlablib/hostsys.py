"""The root-namespace sysctls netlab changes, and their restoration on every exit path.

Conntrack's table size (`net.netfilter.nf_conntrack_max`) and its hash buckets
(`nf_conntrack_buckets`) are global: a network namespace can read them but not write them, and
every namespace's table is checked against the one maximum. So the conntrack levels must change
the root namespace's values. Before the first change each original value is written to STATE;
`restore()` writes them back (called after every variant and in the run's `finally`, which
Ctrl-C, SIGTERM and SIGHUP reach), and `netlab --cleanup` restores from STATE after a kill -9.
A run refuses to start while STATE exists.
"""
import json
import os
from pathlib import Path

from .sh import log

STATE = Path("/run/rtbnl-sysctl.json")
ALLOWED = ("net.netfilter.nf_conntrack_max", "net.netfilter.nf_conntrack_buckets")


def _path(key):
    return Path("/proc/sys") / key.replace(".", "/")


def read(key):
    return _path(key).read_text().strip()


def _write(key, value):
    _path(key).write_text(f"{value}\n")


class HostSysctls:
    def __init__(self):
        self.saved = {}

    def set(self, key, value):
        if key not in ALLOWED:
            raise ValueError(f"netlab does not change {key} in the root namespace")
        if key not in self.saved:
            self.saved[key] = read(key)
            tmp = STATE.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.saved))
            os.replace(tmp, STATE)
        _write(key, value)

    def restore(self):
        """Writes every saved value back; returns the keys that could not be restored."""
        failed = _restore(self.saved)
        if not failed:
            self.saved = {}
            STATE.unlink(missing_ok=True)
        return failed


def _restore(saved):
    failed = []
    # Buckets first: a table resized back before its maximum is raised again never overflows.
    for key in sorted(saved, key=lambda k: k != "net.netfilter.nf_conntrack_buckets"):
        try:
            if read(key) != saved[key]:
                _write(key, saved[key])
        except OSError as e:
            log(f"netlab: WARNING: could not restore {key}={saved[key]}: {e}")
            failed.append(key)
    return failed


def restore_stale():
    """`--cleanup`: restores what a killed run saved. Returns the keys left unrestored."""
    if not STATE.exists():
        return []
    saved = json.loads(STATE.read_text())
    failed = _restore(saved)
    if not failed:
        log(f"restored {', '.join(f'{k}={v}' for k, v in saved.items())} from {STATE}")
        STATE.unlink()
    return failed
