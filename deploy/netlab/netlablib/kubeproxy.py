"""kube-proxy's service rules on every node of the lab, in the three shapes it can take.

  iptables         kube-proxy's iptables mode through `iptables-restore` as installed (on this
                   Debian the nf_tables backend, iptables-nft: the rules become nft bytecode but
                   KUBE-SERVICES stays a linear list, one rule per service)
  iptables-legacy  the same rules through `iptables-legacy-restore` (x_tables: a linear walk too)
  nftables         kube-proxy's nftables mode (1.31+): one verdict map keyed by
                   address . protocol . port, so a new connection costs one hash lookup whatever
                   the number of services

Every shape has `dummy` extra two-endpoint services (never hit: a /16 nobody uses) ahead of the
real ones, masquerade-all, and the statistic / numgen endpoint choice. The rules only see a
connection's first packet (conntrack handles the rest), so their cost is per new connection.
"""
import hashlib

from .topology import DSP_NODES, DSP_PORT, EXCH_PORT, NODES, node_ns

PROXIES = ["iptables", "iptables-legacy", "nftables"]
SVC_PORT = 80
EXCH_VIP = "10.96.0.10"
DSP_VIPS = ["10.96.1.1", "10.96.1.2", "10.96.1.3"]
DSP_NAMES = ["braid", "the-witness", "order-of-the-sinking-star"]
RESTORE_TIMEOUT_S = 600


def _h(s):
    return hashlib.sha256(s.encode()).hexdigest()[:16].upper()


def services(places, dummy):
    """[(name, vip, [(endpoint ip, port)])]: the dummies first, then the exchange and DSPs."""
    out = []
    for i in range(dummy):
        a, b = i // 250, i % 250 + 1
        out.append((f"netlab-dummy/svc-{i}:http", f"10.97.{a}.{b}",
                    [(f"10.245.{a}.{b}", 8080), (f"10.246.{a}.{b}", 8080)]))
    out.append(("rtb/rtb-exchange:http", EXCH_VIP, [(places["exch"][1], EXCH_PORT)]))
    for vip, dname, node in zip(DSP_VIPS, DSP_NAMES, DSP_NODES):
        out.append((f"rtb/dsp-{dname}:http", vip, [(places[node][1], DSP_PORT)]))
    return out


def iptables_rules(places, dummy):
    """iptables-restore input shaped like kube-proxy's iptables mode (masquerade-all): every new
    connection to a real service is matched against all dummies first (a linear chain)."""
    chains = ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"]
    rules = [
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
        "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000",
        "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
        "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000",
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" '
        "-j MASQUERADE --random-fully",
    ]
    for name, vip, endpoints in services(places, dummy):
        svc = "KUBE-SVC-" + _h(name)
        chains.append(svc)
        rules.append(f'-A KUBE-SERVICES -d {vip}/32 -p tcp -m comment --comment "{name} cluster IP" '
                     f"-m tcp --dport {SVC_PORT} -j {svc}")
        rules.append(f'-A {svc} -d {vip}/32 -p tcp -m comment --comment "{name} cluster IP" '
                     f"-m tcp --dport {SVC_PORT} -j KUBE-MARK-MASQ")
        for i, (ip, port) in enumerate(endpoints):
            sep = "KUBE-SEP-" + _h(f"{name}/{ip}:{port}")
            chains.append(sep)
            left = len(endpoints) - i
            prob = f" -m statistic --mode random --probability {1.0 / left:.11f}" if left > 1 else ""
            rules.append(f'-A {svc} -m comment --comment "{name} -> {ip}:{port}"{prob} -j {sep}')
            rules.append(f'-A {sep} -s {ip}/32 -m comment --comment "{name}" -j KUBE-MARK-MASQ')
            rules.append(f'-A {sep} -p tcp -m comment --comment "{name}" -m tcp '
                         f"-j DNAT --to-destination {ip}:{port}")
    rules.append('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this '
                 'must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS')
    return "*nat\n" + "".join(f":{c} - [0:0]\n" for c in chains) + "\n".join(rules) + "\nCOMMIT\n"


def _chain(name, *statements):
    return "  chain " + name + " {\n" + "".join(f"    {st}\n" for st in statements) + "  }"


def nft_ruleset(places, dummy):
    """`nft -f` input shaped like kube-proxy's nftables mode (masquerade-all): table ip
    kube-proxy, a `services` chain that is one verdict-map lookup, a chain per service (numgen
    endpoint choice), a chain per endpoint with the DNAT."""
    out = ["table ip kube-proxy {",
           _chain("mark-for-masquerade", "meta mark set meta mark | 0x4000"),
           _chain("masquerading", "meta mark & 0x4000 == 0 return",
                  "meta mark set meta mark ^ 0x4000", "masquerade fully-random"),
           _chain("nat-prerouting", "type nat hook prerouting priority dstnat; policy accept;",
                  "jump services"),
           _chain("nat-output", "type nat hook output priority -100; policy accept;",
                  "jump services"),
           _chain("nat-postrouting", "type nat hook postrouting priority srcnat; policy accept;",
                  "jump masquerading")]
    # The dummies' map entries all point at one two-endpoint chain pair: nft 1.0.6 loads 90,000
    # chains in O(n^2) (240 s for 30,000 services), and the lookup a packet pays is the same
    # hash lookup whichever chain its verdict names. The real services get their own chains.
    dummy_svc = "svc-dummies"
    out.append(_chain("sep-dummy-a", "ip saddr 10.245.0.1 jump mark-for-masquerade",
                      "meta l4proto tcp dnat to 10.245.0.1:8080"))
    out.append(_chain("sep-dummy-b", "ip saddr 10.246.0.1 jump mark-for-masquerade",
                      "meta l4proto tcp dnat to 10.246.0.1:8080"))
    out.append(_chain(dummy_svc, "jump mark-for-masquerade",
                      "numgen random mod 2 vmap { 0 : goto sep-dummy-a, 1 : goto sep-dummy-b }"))
    elements = []
    for name, vip, endpoints in services(places, dummy):
        if name.startswith("netlab-dummy/"):
            elements.append(f"{vip} . tcp . {SVC_PORT} : goto {dummy_svc}")
            continue
        svc = "svc-" + _h(name)
        seps = ["sep-" + _h(f"{name}/{ip}:{port}") for ip, port in endpoints]
        for sep, (ip, port) in zip(seps, endpoints):
            out.append(_chain(sep, f"ip saddr {ip} jump mark-for-masquerade",
                              f"meta l4proto tcp dnat to {ip}:{port}"))
        out.append(_chain(svc, f"ip daddr {vip} tcp dport {SVC_PORT} jump mark-for-masquerade",
                          f"goto {seps[0]}"))
        elements.append(f"{vip} . tcp . {SVC_PORT} : goto {svc}")
    out.append("  map service-ips {\n    type ipv4_addr . inet_proto . inet_service : verdict\n"
               "    elements = { " + ", ".join(elements) + " }\n  }")
    out.append(_chain("services", "ip daddr . meta l4proto . th dport vmap @service-ips"))
    out.append("}")
    return "\n".join(out) + "\n"


def install(lab, proxy, places, dummy):
    """Loads the service rules into every node namespace, all nodes at once (a restore of
    30,000 services takes seconds per node); returns the rule count per node."""
    if proxy not in PROXIES:
        raise ValueError(f"unknown proxy {proxy!r}; known: {', '.join(PROXIES)}")
    if proxy == "nftables":
        text, argv = nft_ruleset(places, dummy), ["nft", "-f", "-"]
        count = text.count("\n    ") - text.count("\n    type ") + dummy
    else:
        text = iptables_rules(places, dummy)
        argv = ["iptables-restore" if proxy == "iptables" else "iptables-legacy-restore"]
        count = text.count("\n-A ")
    lab.ns_parallel([node_ns(name) for name, _, _ in NODES], argv, text, RESTORE_TIMEOUT_S)
    return count


def iptables_backend():
    """What `iptables` is here: 'nf_tables' or 'legacy' (from `iptables --version`)."""
    import subprocess
    r = subprocess.run(["iptables", "--version"], capture_output=True, text=True)
    return "nf_tables" if "nf_tables" in r.stdout else "legacy" if r.returncode == 0 else "absent"
