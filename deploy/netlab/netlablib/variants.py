"""What one measured configuration is, and the plan of a run: its sections and their variants.

Sections (each one table of the report, each with its own baseline measured in the same run):
  modes       bare (= hostNetwork), overlay, overlay-nat: the network paths (issue 7)
  cpu         bare with a 2-worker exchange under CPU limits (CFS quota), against no limit
  kube-proxy  overlay-nat with 0..30,000 extra services per proxy shape, three-dsps only (the
              exchange's DSP calls are the connections that the rules cost), measured from
              cold DSP pools (no warm-up)
  conntrack   connection churn (wrk with `Connection: close`, the 404 path) on overlay-nat per
              conntrack tuning level, against the same churn on bare
"""
from dataclasses import asdict, dataclass, field

from . import cgroups, conntrack

SECTIONS = ["modes", "cpu", "kube-proxy", "conntrack"]
MODES = ["bare", "overlay", "overlay-nat"]
HOSTNETWORK = "bare (hostNetwork)"


@dataclass
class Variant:
    section: str
    label: str
    mode: str
    scenarios: tuple
    baseline: str  # the label of this section's baseline row
    dummy: int = 0
    proxy: str = "iptables"
    workers: int = 1
    cpu: object = None  # cgroups.CpuLimit or None
    limit_dsps: bool = False
    ct_level: object = None  # conntrack level dict, or None: untouched
    warmup: bool = True  # False: measure from cold DSP pools (every DSP connection is new)
    notes: list = field(default_factory=list)

    @property
    def key(self):
        return f"{self.section}: {self.label}"


def _modes(args, smoke):
    out = []
    for m in args.mode_list:
        if m == "overlay-nat":
            for d in args.dummy_list:
                label = m if len(args.dummy_list) == 1 else f"{m}/{d}"
                out.append(Variant("modes", label, m, ("no-dsp", "three-dsps"), HOSTNETWORK,
                                   dummy=d))
        else:
            out.append(Variant("modes", HOSTNETWORK if m == "bare" else m, m,
                               ("no-dsp", "three-dsps"), HOSTNETWORK))
    return out


def _cpu(args, smoke):
    limits = [cgroups.CpuLimit.parse(x) for x in args.cpu_limits.split(",")]
    if smoke:
        limits = [cgroups.CpuLimit(1, 10)]
    scenarios = ("no-dsp",) if smoke else ("no-dsp", "three-dsps")
    base = limits[0].label
    return [Variant("cpu", lim.label, "bare", scenarios, base, workers=2, cpu=lim,
                    limit_dsps=args.cpu_limit_dsps) for lim in limits]


def _kube_proxy(args, smoke):
    pairs = [(p, d) for p in args.proxy_list for d in args.kp_rules_list]
    if smoke:
        pairs = [(args.proxy_list[-1], 1000)]
    base = f"{pairs[0][0]}/{pairs[0][1]}"
    # Cold: no warm-up, so the run starts with empty DSP pools as after a deploy, a DSP restart
    # or a burst of timeouts; that is when the rules are paid, once per new connection.
    return [Variant("kube-proxy", f"{p}/{d}", "overlay-nat", ("three-dsps",), base, dummy=d,
                    proxy=p, warmup=False) for p, d in pairs]


def _conntrack(args, smoke):
    levels = [conntrack.parse_level(x) for x in args.ct_levels.split(",")]
    if smoke:
        levels = [{"max": 131072, "tw": 60}]
    # Two references: bare (no VXLAN, no NAT) and overlay (VXLAN, no NAT, conntrack idle), so
    # the NAT + conntrack share of the churn cost is told apart from the overlay's.
    out = [] if smoke else [Variant("conntrack", "bare, untouched", "bare", ("churn",),
                                    "bare, untouched"),
                            Variant("conntrack", "overlay (no NAT), untouched", "overlay", ("churn",),
                                    "bare, untouched")]
    base = out[0].label if out else f"overlay-nat, {conntrack.level_label(levels[0])}"
    for lv in levels:
        out.append(Variant("conntrack", f"overlay-nat, {conntrack.level_label(lv)}", "overlay-nat",
                           ("churn",), base, ct_level=lv))
    return out


def plan(args, sections, smoke):
    """The variants of each requested section, in section order."""
    build = {"modes": _modes, "cpu": _cpu, "kube-proxy": _kube_proxy, "conntrack": _conntrack}
    return [v for s in sections for v in build[s](args, smoke)]


def to_json(v):
    d = asdict(v)
    d["cpu"] = None if v.cpu is None else (v.cpu.cpus, v.cpu.period_ms)
    return d


def from_json(d):
    d = dict(d)
    if d.get("cpu") is not None:
        d["cpu"] = cgroups.CpuLimit(*d["cpu"])
    d["scenarios"] = tuple(d["scenarios"])
    return Variant(**d)
