"""What podman's CNI plugins change outside the containers: saved before a run, put back after.

The bridge plugin turns on net.ipv4.ip_forward; the firewall and portmap plugins add CNI-*
chains to the filter and nat tables (and jumps to them from FORWARD, PREROUTING, OUTPUT and
POSTROUTING) that stay after the last network is gone; podman's parent cgroup (libpod_parent,
cgroupfs manager) stays too. Each network's bridge device (cni-podmanN) and the containers'
veths go with `podman network rm` and the containers. A run restores ip_forward, removes the
CNI chains and parent cgroups that did not exist before it (only while no container is left
that could use them), and reports any link it leaves behind.
"""
import shlex
import subprocess
from pathlib import Path

from .podman import podman

IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
CGROUP_ROOT = Path("/sys/fs/cgroup")
# podman's parent cgroup (cgroupfs manager), with conmon's below it, in every hierarchy.
CGROUP_PARENT = "libpod_parent"
TABLES = ("filter", "nat")
CHAIN_PREFIX = "CNI-"


def _iptables(table, *args, check=False):
    return subprocess.run(["iptables", "-w", "-t", table, *args], capture_output=True,
                          text=True, check=check)


def cni_chains():
    """{(table, chain)} of the CNI-* chains that exist now."""
    out = set()
    for table in TABLES:
        for line in _iptables(table, "-S").stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "-N" and parts[1].startswith(CHAIN_PREFIX):
                out.add((table, parts[1]))
    return out


def podman_cgroups():
    """podman's parent cgroup directories, deepest first."""
    found = list(CGROUP_ROOT.glob(f"*/{CGROUP_PARENT}")) + list(CGROUP_ROOT.glob(CGROUP_PARENT))
    out = []
    for top in found:
        out += sorted((d for d in top.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts))
        out.append(top)
    return out


def links():
    r = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True)
    return {line.split(":")[1].strip().split("@")[0] for line in r.stdout.splitlines()
            if line.count(":") >= 2}


class HostState:
    def __init__(self, pristine=False):
        """pristine: as if podman had never run (for --cleanup after a killed run): every CNI
        chain and podman parent cgroup counts as the run's; ip_forward is left as it is."""
        self.ip_forward = IP_FORWARD.read_text().strip()
        self.chains = set() if pristine else cni_chains()
        self.links = links()
        self.cgroups = set() if pristine else set(podman_cgroups())

    def _remove_new_chains(self):
        new = cni_chains() - self.chains
        for table in TABLES:
            mine = {c for t, c in new if t == table}
            if not mine:
                continue
            # Jumps into our chains first (from any chain), then the chains themselves.
            for line in _iptables(table, "-S").stdout.splitlines():
                parts = shlex.split(line)  # comments are quoted strings with spaces
                if parts[:1] == ["-A"] and "-j" in parts and parts[parts.index("-j") + 1] in mine:
                    subprocess.run(["iptables", "-w", "-t", table, "-D", *parts[1:]],
                                   capture_output=True)
            for chain in mine:
                _iptables(table, "-F", chain)
            for chain in mine:
                _iptables(table, "-X", chain)
        return sorted(f"{t}/{c}" for t, c in cni_chains() - self.chains)

    def restore(self):
        """Puts back what the run changed; returns the problems left (empty when clean)."""
        problems = []
        if IP_FORWARD.read_text().strip() != self.ip_forward:
            IP_FORWARD.write_text(self.ip_forward + "\n")
        others = podman("ps", "-a", "-q", check=False).stdout.split()
        if others:
            if cni_chains() - self.chains:
                print(f"note: new CNI iptables chains kept: {len(others)} container(s) of "
                      "someone else may use them", flush=True)
        else:
            left = self._remove_new_chains()
            if left:
                problems.append(f"could not remove iptables chains {left}")
            for d in podman_cgroups():
                if d not in self.cgroups:
                    try:
                        d.rmdir()
                    except OSError as e:
                        problems.append(f"could not remove cgroup {d}: {e}")
        # Only podman's kinds: other work on the machine may add links of its own meanwhile.
        extra = {n for n in links() - self.links if n.startswith(("cni-", "veth"))}
        if extra:
            problems.append(f"links left behind: {sorted(extra)}")
        return problems
