"""Conntrack under connection churn: the tuning levels and the counters that judge them.

A level is `default` or settings joined by '+': `max=N` (nf_conntrack_max, global), `buckets=N`
(hash buckets, global), `tw=S` (nf_conntrack_tcp_timeout_time_wait, per namespace: set on every
node of the lab), `notrack=1` (raw-table NOTRACK for the VXLAN packets, UDP 8472, on every node).
Every closed connection stays in the table for tw seconds (120 by default), so a node needs
max >= new connections per second x tw, or new connections are dropped ("nf_conntrack: table
full") and their SYNs retransmitted a second later. Through VXLAN a connection costs more than
one entry: each direction's outer UDP packets are tracked too, as two one-way flows (the outer
source port is a hash of the inner flow), which stay 30 s (nf_conntrack_udp_timeout).
"""
from .topology import NODES, VXLAN_PORT, node_ns

KEYS = {"max": "net.netfilter.nf_conntrack_max", "buckets": "net.netfilter.nf_conntrack_buckets"}
TW_KEY = "net.netfilter.nf_conntrack_tcp_timeout_time_wait"
STAT_FIELDS = ("found", "invalid", "insert", "insert_failed", "drop", "early_drop", "error",
               "search_restart", "clash_resolve", "chaintoolong")


def parse_level(text):
    """'default' -> {}; 'max=8192+tw=1' -> {'max': 8192, 'tw': 1}."""
    text = text.strip()
    if text in ("", "default"):
        return {}
    out = {}
    for part in text.split("+"):
        key, _, value = part.partition("=")
        if key not in ("max", "buckets", "tw", "notrack") or not value.isdigit() or int(value) < 1:
            raise ValueError(f"conntrack level {text!r}: expected max=N, buckets=N, tw=S, notrack=1 "
                             "joined by +")
        out[key] = int(value)
    return out


def level_label(level):
    return "default" if not level else " + ".join(f"{k}={v}" for k, v in level.items())


def apply(lab, host, level):
    """Global keys through the root-namespace guard, time_wait in every node namespace."""
    for key, sysctl in KEYS.items():
        if key in level:
            host.set(sysctl, level[key])
    for name, _, _ in NODES:
        if "tw" in level:
            lab.sysctl(node_ns(name), TW_KEY, level["tw"])
        if level.get("notrack"):
            for chain in ("PREROUTING", "OUTPUT"):
                lab.ns(node_ns(name), ["iptables", "-t", "raw", "-A", chain, "-p", "udp", "--dport",
                                       str(VXLAN_PORT), "-j", "NOTRACK"])


def stats(lab, nodes=None):
    """Counters summed over the node namespaces (`conntrack -S`, per CPU) and entries now."""
    total = {f: 0 for f in STAT_FIELDS}
    total["entries"] = 0
    total["entries_by_node"] = {}
    for name in nodes or [n for n, _, _ in NODES]:
        out = lab.ns(node_ns(name), ["conntrack", "-S"], check=False).stdout
        for line in out.splitlines():
            for field in line.split():
                key, _, value = field.partition("=")
                if key in total and value.isdigit():
                    total[key] += int(value)
        # The namespace's own count (`conntrack -C` may report another scope on some versions).
        count = lab.ns(node_ns(name), ["cat", "/proc/sys/net/netfilter/nf_conntrack_count"],
                       check=False).stdout.strip()
        total["entries"] += int(count) if count.isdigit() else 0
        total["entries_by_node"][name] = int(count) if count.isdigit() else 0
    return total


def delta(before, after):
    """Counter deltas; the entries (now, per node too) as they are after."""
    return {k: after[k] if k.startswith("entries") else after[k] - before[k] for k in after}
