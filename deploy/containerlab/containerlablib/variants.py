"""What one measured configuration is, and how its containers are started and reached.

  host             every container on `--network host`: the exchange's own socket on
                   127.0.0.1, as on bare metal or in a hostNetwork pod (the baseline)
  bridge           every container on a podman bridge network (CNI bridge plugin: a veth per
                   container on one Linux bridge), the client too: wrk runs in the client
                   container's network namespace, the exchange calls the DSPs' container
                   addresses; pod to pod on one node
  published        exchange and DSPs on the bridge behind published ports (CNI portmap
                   plugin: iptables DNAT + masquerade, conntrack): the client on the host calls
                   127.0.0.1:<port>, the exchange calls <bridge gateway>:<port> (hairpin);
                   a hostPort / NodePort path
  seccomp-default  host network, the exchange under podman's default seccomp profile, which
                   refuses io_uring: the exchange falls back to epoll
  cpus-N           host network, the exchange limited with `--cpus N` (CFS quota)

Every exchange but seccomp-default's, and every DSP, runs under the chart's seccomp profile
(deploy/charts/rtb-exchange/files/seccomp-rtb-io-uring.json). The exchange has core 0
(`--cpuset-cpus 0`, one pinned worker); DSPs, the client container and wrk have core 1.
Onboarding needs a token (RTB_ONBOARD_TOKEN, passed by name) in every variant.
"""
import re
import socket
from dataclasses import dataclass

from .podman import DEPLOY

PROJECT_SECCOMP = DEPLOY / "charts" / "rtb-exchange" / "files" / "seccomp-rtb-io-uring.json"
EXCH_PORT = 3000
DEBUG_PORT = 6060
DSP_PORT = 5000
DSP_NAMES = ["braid", "the-witness", "order-of-the-sinking-star"]
EXCHANGE_CORE = 0
CLIENT_CORE = 1
# Static addresses on the lab's network (host-local IPAM; no DNS plugin is installed).
CLIENT_HOST, EXCHANGE_HOST, FIRST_DSP_HOST = 5, 10, 21
TOKEN_ENV = "RTB_ONBOARD_TOKEN"
ENTRY_DSP = ["/usr/bin/tini", "--", "/usr/local/bin/rtb-dsp"]
ENTRY_SLEEP = ["/usr/bin/tini", "--", "sleep", "infinity"]
# A DSP is onboarded once per variant; the exchange must not expire it mid-run.
DSP_TTL_S = 3600
NAMED = ["host", "bridge", "published", "seccomp-default"]


@dataclass
class Variant:
    name: str
    net: str  # host | bridge | published
    seccomp: str = "project"  # project | default
    cpus: float = None

    def about(self):
        net = {"host": "host network", "bridge": "bridge network, container to container",
               "published": "published ports (DNAT)"}[self.net]
        sec = "chart's seccomp profile" if self.seccomp == "project" else \
            "podman's default seccomp profile"
        lim = f", --cpus {self.cpus:g}" if self.cpus else ""
        return f"{net}, {sec}{lim}"


def parse(names, cpus_list):
    """Variants from `--variants` (host,bridge,published,seccomp-default,cpus) and `--cpus`."""
    out = []
    for n in names:
        if n == "seccomp-default":
            out.append(Variant(n, "host", seccomp="default"))
        elif n == "cpus":
            out += [Variant(f"cpus-{c:g}", "host", cpus=c) for c in cpus_list]
        elif n in ("host", "bridge", "published"):
            out.append(Variant(n, n))
        else:
            raise ValueError(f"unknown variant {n!r}; known: {', '.join(NAMED + ['cpus'])}")
    return out


def free_port(addr):
    with socket.socket() as s:
        s.bind((addr, 0))
        return s.getsockname()[1]


class Deployment:
    """The exchange of one variant, how the client reaches it, and its DSPs."""

    def __init__(self, variant, exchange, addr, debug, onboard_url, client_pid=None):
        self.variant = variant
        self.exchange = exchange
        self.addr = addr  # host:port the client (and the lab's probes) call
        self.debug = debug  # host:port of /metrics, same path as addr
        self.onboard_url = onboard_url  # what the DSP containers call
        self.client_pid = client_pid  # network namespace wrk runs in (None: the host's)
        self.dsps = []

    @property
    def auction_url(self):
        return f"http://{self.addr}/openrtb2/auction"


def start_exchange(session, image, variant, network, extra=()):
    """Starts the exchange (and, in bridge mode, the client container); waits for both ports."""
    argv = ["--workers", "1", "--pin", "true", "--dsp-ttl-s", str(DSP_TTL_S),
            "--log-format", "json", *extra]
    seccomp = PROJECT_SECCOMP if variant.seccomp == "project" else None
    common = dict(cpuset=EXCHANGE_CORE, cpus=variant.cpus, seccomp=seccomp, env=[TOKEN_ENV])
    name = f"{variant.name}-exchange"
    if variant.net == "host":
        c = session.run(name, image, ["--bind", "127.0.0.1", "--port", "0", "--debug-port", "0",
                                      *argv], network="host", **common)
        addr = c.wait_log(r"^listening on (\S+)")
        debug = c.wait_log(r"^debug listening on (\S+)")
        return Deployment(variant, c, addr, debug, f"http://{addr}/dsp")
    ip = network.host(EXCHANGE_HOST)
    publish = ()
    if variant.net == "published":
        port, dport = free_port("127.0.0.1"), free_port("127.0.0.1")
        publish = (f"127.0.0.1:{port}:{EXCH_PORT}", f"127.0.0.1:{dport}:{DEBUG_PORT}")
    c = session.run(name, image, ["--bind", "0.0.0.0", "--port", str(EXCH_PORT), "--debug-port",
                                  str(DEBUG_PORT), *argv], network=network.name, ip=ip,
                    publish=publish, **common)
    c.wait_log(r"^(debug listening on) ")
    onboard = f"http://{ip}:{EXCH_PORT}/dsp"
    if variant.net == "published":
        return Deployment(variant, c, f"127.0.0.1:{port}", f"127.0.0.1:{dport}", onboard)
    client = session.run(f"{variant.name}-client", image, [], network=network.name,
                         ip=network.host(CLIENT_HOST), cpuset=CLIENT_CORE,
                         entrypoint=ENTRY_SLEEP)
    return Deployment(variant, c, f"{ip}:{EXCH_PORT}", f"{ip}:{DEBUG_PORT}", onboard, client.pid)


def start_dsps(session, image, dep, network, latencies=("fixed:0",) * len(DSP_NAMES)):
    """One rtb-dsp container per name (DSP_NAMES), each with its latency (rtb-dsp --latency);
    each onboards itself with the token and its own URL."""
    for i, (dsp, latency) in enumerate(zip(DSP_NAMES, latencies)):
        argv = ["--dsp-name", dsp, "--onboard-endpoints", dep.onboard_url,
                "--onboard-interval-s", str(DSP_TTL_S), "--latency", latency, "--workers", "1"]
        kw = dict(cpuset=CLIENT_CORE, seccomp=PROJECT_SECCOMP, entrypoint=ENTRY_DSP,
                  env=[TOKEN_ENV])
        what = f"{dep.variant.name}-dsp{i + 1}"
        if dep.variant.net == "host":
            # No --base-url: the DSP announces http://127.0.0.1:<its bound port>.
            c = session.run(what, image, ["--bind", "127.0.0.1", "--port", "0", *argv],
                            network="host", **kw)
        else:
            ip = network.host(FIRST_DSP_HOST + i)
            publish, base = (), f"http://{ip}:{DSP_PORT}"
            if dep.variant.net == "published":
                port = free_port(network.gateway)
                publish, base = (f"{network.gateway}:{port}:{DSP_PORT}",), \
                    f"http://{network.gateway}:{port}"
            c = session.run(what, image, ["--bind", "0.0.0.0", "--port", str(DSP_PORT),
                                          "--base-url", base, *argv],
                            network=network.name, ip=ip, publish=publish, **kw)
        c.wait_log(r"^listening on (\S+)")
        dep.dsps.append(c)


def drivers(logs):
    """The I/O drivers the exchange's workers logged at start (JSON log lines)."""
    return sorted(set(re.findall(r'"message":"worker started".*?"driver":"([a-z_]+)"', logs)))
