"""The lab's hosts as network namespaces, and the guard that keeps every change inside them.

A client, an exchange node and three DSP nodes hang off one L2 "fabric" bridge that lives in its
own namespace. `bare` runs the processes on the node addresses (bare metal, hostNetwork pods);
`overlay` and `overlay-nat` put them in pod namespaces behind a cni0 bridge, the nodes joined by
VXLAN (flannel's vxlan backend: id 1, UDP 8472, MTU 1450, static FDB and ARP entries). Service
rules (overlay-nat) are kubeproxy.py's. No node has a default route: no packet leaves the lab.
"""
import os
import re
import signal
import subprocess

from .sh import Refused, log, run

PREFIX = "rtbnl-"
FABRIC = PREFIX + "fabric"
# Hosts: (name, underlay address, pod subnet index). The client is a node too (an ingress or a
# caller in the same cluster); the exchange and every DSP run on their own node.
NODES = [("client", "10.250.0.10", 0), ("exch", "10.250.0.11", 1),
         ("dsp1", "10.250.0.21", 2), ("dsp2", "10.250.0.22", 3), ("dsp3", "10.250.0.23", 4)]
DSP_NODES = ("dsp1", "dsp2", "dsp3")
UNDERLAY_PREFIX = 24
VXLAN_ID = 1
VXLAN_PORT = 8472
OVERLAY_MTU = 1450
EXCH_PORT = 3000
DEBUG_PORT = 3001
DSP_PORT = 8080


def node_ns(name):
    return f"{PREFIX}n-{name}"


def pod_ns(name):
    return f"{PREFIX}p-{name}"


def vtep_mac(idx):
    return f"0a:58:0a:f4:{idx:02x}:00"


def netns_list():
    out = run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def root_snapshot():
    """What the lab must never change: the root namespace's links, addresses, routes, rules."""
    parts = []
    for argv in (["ip", "-o", "link", "show"], ["ip", "-o", "addr", "show"],
                 ["ip", "route", "show", "table", "all"], ["ip", "-6", "route", "show", "table", "all"]):
        out = run(argv, check=False).stdout
        # Counters and link state flags can change on their own; keep names/addresses/routes.
        parts.append("\n".join(sorted(re.sub(r"\s+(state|qlen|mode|group)\s+\S+", "", line)
                                      for line in out.splitlines())))
    return "\n--\n".join(parts)


def kill_ns_processes(ns):
    """SIGKILL every process in `ns` (only processes a netlab run started live in rtbnl-*)."""
    for pid in run(["ip", "netns", "pids", ns], check=False).stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


class Lab:
    """Namespaces this process created; every ip/iptables call goes through `ns()` or `ip()`,
    which refuse any namespace that is not ours."""

    def __init__(self, verbose=False):
        self.created = []
        self.verbose = verbose

    def _own(self, ns):
        if not ns.startswith(PREFIX) or ns not in self.created:
            raise Refused(f"refusing to touch namespace {ns!r}: not created by this netlab run")

    def add_ns(self, name):
        if not name.startswith(PREFIX):
            raise Refused(f"namespace {name!r} lacks the {PREFIX} prefix")
        run(["ip", "netns", "add", name])
        self.created.append(name)
        self.ip(name, "link", "set", "lo", "up")

    def ip(self, ns, *args):
        self._own(ns)
        if self.verbose:
            log(f"  ip -n {ns} {' '.join(args)}")
        return run(["ip", "-n", ns] + list(args))

    def ns(self, ns, argv, input=None, check=True, timeout=None):
        self._own(ns)
        if self.verbose:
            log(f"  [{ns}] {' '.join(argv)[:200]}")
        return run(["ip", "netns", "exec", ns] + argv, input=input, check=check, timeout=timeout)

    def ns_parallel(self, namespaces, argv, input, timeout):
        """`argv` with `input` on stdin in each of `namespaces` at once; RuntimeError if any
        fails or outlives `timeout`."""
        procs = []
        for ns in namespaces:
            self._own(ns)
            procs.append((ns, subprocess.Popen(["ip", "netns", "exec", ns] + argv, text=True,
                                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                               stderr=subprocess.PIPE)))
        failed = []
        for ns, p in procs:
            try:
                _, err = p.communicate(input, timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                _, err = p.communicate()
                err = f"timed out after {timeout}s"
            if p.returncode != 0:
                failed.append(f"{ns}: {argv[0]} -> {p.returncode}: {err.strip()[:400]}")
        if failed:
            raise RuntimeError("; ".join(failed))

    def sysctl(self, ns, key, value):
        self.ns(ns, ["sysctl", "-qw", f"{key}={value}"])

    def teardown(self):
        """Kills whatever still runs in our namespaces (by pid: only processes this lab started
        live there), then deletes them; their veths, bridges, vxlans and rules go with them."""
        for ns in reversed(self.created):
            kill_ns_processes(ns)
        left = []
        for ns in reversed(self.created):
            if run(["ip", "netns", "del", ns], check=False).returncode != 0:
                left.append(ns)
        self.created = [ns for ns in self.created if ns in left]
        return left


def _underlay(lab):
    lab.add_ns(FABRIC)
    lab.ip(FABRIC, "link", "add", "br0", "type", "bridge")
    lab.ip(FABRIC, "link", "set", "br0", "up")
    for name, addr, _ in NODES:
        ns = node_ns(name)
        lab.add_ns(ns)
        # The host side of the node's "NIC" stays in the fabric namespace, on its bridge.
        lab.ip(FABRIC, "link", "add", f"u-{name}", "type", "veth", "peer", "name", "eth0",
               "netns", ns)
        lab.ip(FABRIC, "link", "set", f"u-{name}", "master", "br0", "up")
        lab.ip(ns, "addr", "add", f"{addr}/{UNDERLAY_PREFIX}", "dev", "eth0")
        lab.ip(ns, "link", "set", "eth0", "up")


def _vxlan_node(lab, name, addr, idx):
    """flannel's vxlan backend on one node: flannel.1 with static FDB/ARP for every peer."""
    ns = node_ns(name)
    lab.sysctl(ns, "net.ipv4.ip_forward", 1)
    lab.ip(ns, "link", "add", "flannel.1", "address", vtep_mac(idx), "type", "vxlan",
           "id", str(VXLAN_ID), "dstport", str(VXLAN_PORT), "local", addr, "dev", "eth0",
           "nolearning")
    lab.ip(ns, "link", "set", "flannel.1", "mtu", str(OVERLAY_MTU), "up")
    lab.ip(ns, "addr", "add", f"10.244.{idx}.0/32", "dev", "flannel.1")
    for other, oaddr, oidx in NODES:
        if other == name:
            continue
        lab.ip(ns, "route", "add", f"10.244.{oidx}.0/24", "via", f"10.244.{oidx}.0",
               "dev", "flannel.1", "onlink")
        lab.ip(ns, "neigh", "add", f"10.244.{oidx}.0", "lladdr", vtep_mac(oidx),
               "dev", "flannel.1", "nud", "permanent")
        lab.ns(ns, ["bridge", "fdb", "append", vtep_mac(oidx), "dev", "flannel.1",
                    "dst", oaddr, "self", "permanent"])


def _pod(lab, name, idx):
    """The node's cni0 bridge and one pod namespace on it; returns the pod's address."""
    ns, pns = node_ns(name), pod_ns(name)
    lab.ip(ns, "link", "add", "cni0", "type", "bridge")
    lab.ip(ns, "link", "set", "cni0", "mtu", str(OVERLAY_MTU), "up")
    lab.ip(ns, "addr", "add", f"10.244.{idx}.1/24", "dev", "cni0")
    lab.add_ns(pns)
    lab.ip(ns, "link", "add", "veth0", "mtu", str(OVERLAY_MTU), "type", "veth", "peer",
           "name", "eth0", "netns", pns)
    lab.ip(ns, "link", "set", "veth0", "master", "cni0", "up")
    lab.ip(pns, "link", "set", "eth0", "mtu", str(OVERLAY_MTU), "up")
    lab.ip(pns, "addr", "add", f"10.244.{idx}.2/24", "dev", "eth0")
    # Pods route everything via cni0; nodes have no default route: nothing leaves the lab.
    lab.ip(pns, "route", "add", "default", "via", f"10.244.{idx}.1")
    return f"10.244.{idx}.2"


def build(lab, mode):
    """The lab for one network mode (bare, overlay, overlay-nat); returns where each process
    runs and which addresses it uses. overlay-nat's service rules are added by kubeproxy."""
    _underlay(lab)
    if mode == "bare":
        places = {n: (node_ns(n), a) for n, a, _ in NODES}
    else:
        places = {}
        for name, addr, idx in NODES:
            _vxlan_node(lab, name, addr, idx)
            places[name] = (pod_ns(name), _pod(lab, name, idx))
    exch = places["exch"][1]
    return {"places": places, "exchange_addr": f"{exch}:{EXCH_PORT}",
            "debug_addr": f"{exch}:{DEBUG_PORT}",
            "dsp_urls": [f"http://{places[d][1]}:{DSP_PORT}" for d in DSP_NODES]}
