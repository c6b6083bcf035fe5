#!/usr/bin/env python3
"""Render, lint, schema-validate and check the deploy/ Kubernetes manifests.

Run by deploy/validate.sh inside deploy/.venv (helm-python-sdk, which embeds
Helm's Go SDK, and kubernetes-validate). Offline: no cluster, no network.

  1. helm lint (strict) of each chart with each values file
  2. helm render of each chart in each mode, written to deploy/.out/rendered/
  3. kubernetes-validate --strict (its library) of every rendered document and
     every plain manifest, against each version in K8S_VERSIONS; custom
     resources (CRDs: Cilium, Prometheus Operator) are skipped with a note
  4. assertions on the rendered objects (modes, probes, ports, placement, CPU,
     the roster ConfigMap and its mount, loaded by the real `rtb-exchange
     --check-config`: RTB_EXCHANGE_BIN or the workspace's debug build)
  5. charts refuse bad values: values.schema.json (Helm validates values
     against it on every render) and the templates' own checks (fractional
     CPUs, a missing onboarding token, duplicate DSP names)
  6. the io_uring seccomp profile: well-formed, io_uring allowed, dangerous
     syscalls not allowed, every name known to systemd's syscall table
  7. the alert rules name only series the exchange exports, and equal
     deploy/prometheus/rtb-alerts.yaml when rendered with its selector (the
     rendered rules are written to .out/rendered/*.rules.yaml for promtool);
     the chart READMEs' values tables are current and every value has a
     schema entry

Prints one PASS/FAIL line per check and "N passed, M failed"; exits 1 on
any failure.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import re

import helm_python as helm
import kubernetes_validate
import yaml

DEPLOY = Path(__file__).resolve().parent
OUT = DEPLOY / ".out" / "rendered"
EXCHANGE = DEPLOY / "charts" / "rtb-exchange"
FLEET = DEPLOY / "charts" / "dsp-fleet"
# 1.30: the oldest version the charts target (preStop sleep action is beta and
# on by default from 1.30); plus the newest kubernetes-validate knows.
K8S_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
NAMESPACE = "rtb"
DEFAULT_DSPS = ["braid", "the-witness", "order-of-the-sinking-star"]
# The exchange renders only with a token (or an explicit openOnboarding): every case gets one
# the way an operator gives it, unless the case sets its own.
TOKEN = {"onboardToken": {"existingSecret": "rtb-onboard"}}
# Where the exchange's series names are written: every source file of the crates it is built
# from (the metric families live in several modules, which may move between these crates).
EXCHANGE_SOURCES = sorted(p for crate in ("exchange-bin", "rtb-io", "rtb-core")
                          for p in (DEPLOY.parent / crate / "src").rglob("*.rs"))
PLAIN_MANIFEST_DIRS = [DEPLOY / "cilium"]

results = {"passed": 0, "failed": 0}


def check(ok: bool, what: str, detail: str = "") -> bool:
    if ok:
        results["passed"] += 1
        print(f"PASS {what}")
    else:
        results["failed"] += 1
        print(f"FAIL {what}" + (f": {detail}" if detail else ""))
    return ok


def note(msg: str) -> None:
    print(f"NOTE {msg}")


def load_values(path: Path | None) -> dict | None:
    if path is None:
        return None
    return helm.values_from_yaml(path.read_text())


def with_token(values: dict | None) -> dict:
    """`values` plus the onboarding token, unless they set a token or open onboarding."""
    values = dict(values or {})
    if "onboardToken" not in values and not values.get("exchange", {}).get("openOnboarding"):
        values.update(TOKEN)
    return values


def render(chart: Path, values: dict | None, release: str) -> list[dict]:
    with helm.Chart.load(chart) as c:
        files = c.render(values=values, name=release, namespace=NAMESPACE, is_install=True)
    docs = []
    for name in sorted(files):
        if not name.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(files[name]):
            if doc:
                docs.append(doc)
    return docs


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d.get("kind") == kind]


def env_of(container: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def is_crd_kind(doc: dict) -> bool:
    """Custom resources: kubernetes-validate only knows built-in schemas."""
    group = doc.get("apiVersion", "").rpartition("/")[0]
    return group.endswith(("cilium.io", "coreos.com"))


# ---------------------------------------------------------------- schema
def schema_validate(label: str, docs: list[dict]) -> None:
    for doc in docs:
        kn = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        if is_crd_kind(doc):
            note(f"{label}: {kn} ({doc['apiVersion']}) is a custom resource: "
                 "kubernetes-validate has no schema for CRDs, skipped")
            continue
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
                check(True, f"kubernetes-validate --strict {version} {label}: {kn}")
            except kubernetes_validate.ValidationError as e:
                check(False, f"kubernetes-validate --strict {version} {label}: {kn}",
                      f"{e.message} at {'/'.join(str(p) for p in e.path)}")
            except kubernetes_validate.SchemaNotFoundError as e:
                check(False, f"kubernetes-validate {version} {label}: {kn}", f"no schema: {e}")


# ---------------------------------------------------------------- assertions
def exchange_workload(docs: list[dict], kind: str = "Deployment") -> dict | None:
    found = by_kind(docs, kind)
    check(len(found) == 1, f"exchange renders one {kind}", f"found {len(found)}")
    return found[0] if found else None


def assert_exchange(label: str, docs: list[dict], *, kind: str, host_network: bool,
                    guaranteed: bool = False) -> None:
    wl = exchange_workload(docs, kind)
    if wl is None:
        return
    pod = wl["spec"]["template"]["spec"]
    c = pod["containers"][0]
    ports = {p["containerPort"] for p in c.get("ports", [])}
    check(ports == {3000, 6060}, f"{label}: containerPorts 3000 and 6060", str(ports))
    check(pod.get("nodeSelector") == {"role": "exchange"},
          f"{label}: nodeSelector role=exchange only", str(pod.get("nodeSelector")))
    if host_network:
        check(pod.get("hostNetwork") is True, f"{label}: hostNetwork: true")
        check(pod.get("dnsPolicy") == "ClusterFirstWithHostNet",
              f"{label}: dnsPolicy ClusterFirstWithHostNet", str(pod.get("dnsPolicy")))
    else:
        check(not pod.get("hostNetwork"), f"{label}: pod network (no hostNetwork)")
    rp, lp = c.get("readinessProbe", {}), c.get("livenessProbe", {})
    check(rp.get("httpGet", {}).get("path") == "/readyz" and rp["httpGet"].get("port") == 3000,
          f"{label}: readiness probe GET /readyz on 3000", json.dumps(rp))
    check(lp.get("httpGet", {}).get("path") == "/healthz" and lp["httpGet"].get("port") == 3000,
          f"{label}: liveness probe GET /healthz on 3000", json.dumps(lp))
    res = c.get("resources", {})
    req_cpu = str(res.get("requests", {}).get("cpu"))
    check(req_cpu.isdigit(), f"{label}: whole-CPU request", req_cpu)
    env = env_of(c)
    check(env.get("RTB_EXCHANGE_WORKERS") == req_cpu,
          f"{label}: RTB_EXCHANGE_WORKERS defaults to the CPU request ({req_cpu})",
          str(env.get("RTB_EXCHANGE_WORKERS")))
    for var in ("RTB_EXCHANGE_PORT", "RTB_EXCHANGE_DEBUG_PORT", "RTB_EXCHANGE_BIND",
                "RTB_EXCHANGE_PIN", "RTB_EXCHANGE_IO_DRIVER", "RTB_EXCHANGE_DEADLINE_MS", "RUST_LOG"):
        check(var in env, f"{label}: env {var} set")
    if guaranteed:
        check(res.get("limits", {}).get("cpu") == res["requests"]["cpu"]
              and res.get("limits", {}).get("memory") == res["requests"]["memory"],
              f"{label}: guaranteed: limits == requests (Guaranteed QoS)", json.dumps(res))
    else:
        check("cpu" not in res.get("limits", {}), f"{label}: no CPU limit", json.dumps(res))
    pre = c.get("lifecycle", {}).get("preStop", {})
    secs = pre.get("sleep", {}).get("seconds") or int((pre.get("exec", {}).get("command") or [0, 0])[-1])
    check(bool(secs) and pod.get("terminationGracePeriodSeconds", 30) > secs,
          f"{label}: preStop sleep {secs}s shorter than terminationGracePeriodSeconds",
          json.dumps(pre))
    # A Service named rtb-exchange would inject RTB_EXCHANGE_PORT=tcp://... (service links).
    check(pod.get("enableServiceLinks") is False, f"{label}: enableServiceLinks false")
    sc = pod.get("securityContext", {})
    check(sc.get("runAsNonRoot") is True and sc.get("runAsUser") == 10001,
          f"{label}: runs as non-root user 10001")
    if kind == "Deployment":
        tsc = pod.get("topologySpreadConstraints", [])
        check(len(tsc) == 1 and tsc[0]["labelSelector"]["matchLabels"]
              == wl["spec"]["selector"]["matchLabels"],
              f"{label}: topologySpreadConstraints over the exchange pods")
    ann = wl["spec"]["template"]["metadata"].get("annotations", {})
    check(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == "6060",
          f"{label}: Prometheus scrape annotations on 6060")
    svcs = {s["metadata"]["name"]: s for s in by_kind(docs, "Service")}
    ports = {n: {(p["name"], p["port"]) for p in s["spec"]["ports"]} for n, s in svcs.items()}
    check(ports == {"rtb-exchange": {("web", 3000)},
                    "rtb-exchange-control": {("control", 3000), ("metrics", 6060)},
                    "rtb-exchange-pods": {("control", 3000)}},
          f"{label}: Services rtb-exchange (web 3000), rtb-exchange-control (control 3000, "
          "metrics 6060) and rtb-exchange-pods (control 3000)", str(ports))
    pods = svcs.get("rtb-exchange-pods", {}).get("spec", {})
    check(pods.get("clusterIP") == "None",
          f"{label}: rtb-exchange-pods is headless (one address per exchange pod)",
          str(pods.get("clusterIP")))
    control = svcs.get("rtb-exchange-control", {}).get("spec", {})
    check(control.get("type") == "ClusterIP", f"{label}: the control Service stays ClusterIP",
          str(control.get("type")))
    pdbs = by_kind(docs, "PodDisruptionBudget")
    check(len(pdbs) == 1 and pdbs[0]["spec"]["selector"]["matchLabels"]
          == wl["spec"]["selector"]["matchLabels"],
          f"{label}: a PodDisruptionBudget over the exchange pods")


def assert_exchange_ingress(label: str, docs: list[dict], debug_path: bool = False) -> None:
    ing = by_kind(docs, "Ingress")
    if not check(len(ing) == 1, f"{label}: one Ingress"):
        return
    rules = ing[0]["spec"]["rules"]
    paths = {p["path"]: (p["backend"]["service"]["name"], p["backend"]["service"]["port"]["number"])
             for p in rules[0]["http"]["paths"]}
    want = {"/openrtb2/": ("rtb-exchange", 3000)}
    if debug_path:
        want["/debug"] = ("rtb-exchange-control", 6060)
    check(rules[0]["host"] == "exchange.rtb.internal" and paths == want,
          f"{label}: Ingress exchange.rtb.internal routes only {sorted(want)}", str(paths))


def assert_fleet(label: str, docs: list[dict], names: list[str], *, host_network: bool = False,
                 replicas: dict | None = None, ports: dict | None = None) -> None:
    # Objects are <release>-<dsp name>; the DSP keeps its own name in the exchange's registry.
    deps = {d["metadata"]["name"].removeprefix("dsp-fleet-"): d for d in by_kind(docs, "Deployment")}
    svcs = {s["metadata"]["name"].removeprefix("dsp-fleet-"): s for s in by_kind(docs, "Service")}
    check(sorted(deps) == sorted(names), f"{label}: one Deployment per DSP ({len(names)}), dsp-fleet-<name>",
          str(sorted(deps)))
    check(sorted(svcs) == sorted(names), f"{label}: one Service per DSP ({len(names)}), dsp-fleet-<name>",
          str(sorted(svcs)))
    for name in names:
        if name not in deps or name not in svcs:
            continue
        port = (ports or {}).get(name, 5000)
        pod = deps[name]["spec"]["template"]["spec"]
        c = pod["containers"][0]
        env = env_of(c)
        check(env.get("RTB_DSP_NAME") == name, f"{label}/{name}: RTB_DSP_NAME")
        check(env.get("RTB_DSP_BASE_URL") == f"http://dsp-fleet-{name}:{port}",
              f"{label}/{name}: RTB_DSP_BASE_URL=http://dsp-fleet-{name}:{port}", str(env.get("RTB_DSP_BASE_URL")))
        check(env.get("RTB_DSP_ONBOARD_ENDPOINTS") == "http://rtb-exchange-pods:3000/dsp",
              f"{label}/{name}: RTB_DSP_ONBOARD_ENDPOINTS=http://rtb-exchange-pods:3000/dsp "
              "(the exchange chart's headless Service: every replica)")
        check(svcs[name]["spec"]["ports"][0]["port"] == port
              and svcs[name]["spec"]["selector"] == deps[name]["spec"]["selector"]["matchLabels"],
              f"{label}/{name}: Service port {port} selects the DSP's pods")
        tsc = pod.get("topologySpreadConstraints", [])
        check(len(tsc) == 1 and tsc[0]["maxSkew"] == 1,
              f"{label}/{name}: topologySpreadConstraints maxSkew 1")
        check("cpu" not in c.get("resources", {}).get("limits", {}), f"{label}/{name}: no CPU limit")
        want_rep = (replicas or {}).get(name, 1)
        check(deps[name]["spec"]["replicas"] == want_rep, f"{label}/{name}: replicas {want_rep}")
        if host_network:
            check(pod.get("hostNetwork") is True and pod.get("dnsPolicy") == "ClusterFirstWithHostNet",
                  f"{label}/{name}: hostNetwork with ClusterFirstWithHostNet")


def expect_render_failure(label: str, chart: Path, values: dict, needle: str) -> None:
    if chart == EXCHANGE:
        values = with_token(values)
    try:
        render(chart, values, "neg")
        check(False, f"chart refuses {label}", "rendered without error")
    except helm.HelmError as e:
        check(needle in str(e), f"chart refuses {label}", str(e)[:200])


# ---------------------------------------------------------------- alerts and docs
ALERTS = {"RtbAuctionP99NearDeadline", "RtbDspTimeoutRate", "RtbAuctionsShed", "RtbDspBreakerOpen",
          "RtbCurrencyRatesStale", "RtbHandlerPanics", "RtbRosterFileFailing"}
# The rules for Prometheus without Kubernetes: the chart's must equal them (rendered with
# STANDALONE_SELECTOR and the default thresholds).
STANDALONE_RULES = DEPLOY / "prometheus" / "rtb-alerts.yaml"
STANDALONE_SELECTOR = 'job="rtb-exchange"'


def exported_series() -> set:
    """Metric names the exchange's /metrics renders (string literals in its sources), with the
    histogram series suffixes."""
    names = set()
    for src in EXCHANGE_SOURCES:
        names |= set(re.findall(r'"((?:rtb|process)_[a-z0-9_]+)', src.read_text()))
    return names | {f"{n}_{s}" for n in names for s in ("bucket", "sum", "count")}


def assert_alert_rules(label: str, docs: list[dict]) -> None:
    rules = by_kind(docs, "PrometheusRule")
    if not check(len(rules) == 1, f"{label}: one PrometheusRule"):
        return
    alerts = [r for g in rules[0]["spec"]["groups"] for r in g["rules"]]
    check({a["alert"] for a in alerts} == ALERTS, f"{label}: alert rules {sorted(ALERTS)}",
          str(sorted(a["alert"] for a in alerts)))
    exported = exported_series()
    for a in alerts:
        used = set(re.findall(r"\b((?:rtb|process)_[a-z0-9_]+)", a["expr"]))
        unknown = sorted(used - exported)
        check(bool(used) and not unknown, f"{label}: {a['alert']} uses only exported series {sorted(used)}",
              f"not exported by the exchange: {unknown}")
        check(a["expr"].count("(") == a["expr"].count(")") and a["expr"].count("{") == a["expr"].count("}"),
              f"{label}: {a['alert']} expression is balanced")
        check(bool(a.get("annotations", {}).get("summary")) and a.get("labels", {}).get("severity")
              in ("warning", "critical"), f"{label}: {a['alert']} has a summary and a severity")
    p99 = next((a for a in alerts if a["alert"] == "RtbAuctionP99NearDeadline"), {"expr": ""})
    check("> 0.072" in p99["expr"], f"{label}: p99 threshold is 0.9 x 80 ms = 0.072 s", p99["expr"])


def squashed(rule: dict) -> dict:
    """A rule with the whitespace of its text collapsed: YAML folding and indentation differ
    between a template and a plain file, the text does not."""
    def text(v):
        return " ".join(str(v).split())
    return {k: {kk: text(vv) for kk, vv in v.items()} if isinstance(v, dict) else text(v)
            for k, v in rule.items()}


def chart_rule_groups(docs: list[dict]) -> list[dict]:
    rules = by_kind(docs, "PrometheusRule")
    return rules[0]["spec"]["groups"] if len(rules) == 1 else []


def write_rules_file(label: str, docs: list[dict]) -> Path:
    """The rendered PrometheusRule's groups as a plain rules file, for `promtool check rules`
    (deploy/validate.sh)."""
    path = OUT / f"{label}.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": chart_rule_groups(docs)}, sort_keys=False))
    return path


def assert_rules_match_standalone(label: str, docs: list[dict]) -> None:
    """The chart cannot drift from deploy/prometheus/rtb-alerts.yaml: same groups, same rules in
    the same order, field for field."""
    chart = chart_rule_groups(docs)
    plain = yaml.safe_load(STANDALONE_RULES.read_text())["groups"]
    check([g["name"] for g in chart] == [g["name"] for g in plain],
          f"{label}: rule groups named as in {STANDALONE_RULES.name}",
          f"{[g['name'] for g in chart]} vs {[g['name'] for g in plain]}")
    chart_rules = [squashed(r) for g in chart for r in g["rules"]]
    plain_rules = [squashed(r) for g in plain for r in g["rules"]]
    check([r.get("alert") for r in chart_rules] == [r.get("alert") for r in plain_rules],
          f"{label}: the same alerts in the same order as {STANDALONE_RULES.name}",
          f"{[r.get('alert') for r in chart_rules]} vs {[r.get('alert') for r in plain_rules]}")
    for c, p in zip(chart_rules, plain_rules):
        diff = {k: (c.get(k), p.get(k)) for k in set(c) | set(p) if c.get(k) != p.get(k)}
        check(not diff, f"{label}: {c.get('alert')} equals {STANDALONE_RULES.name}'s", str(diff))


def check_docs() -> None:
    spec = importlib.util.spec_from_file_location("chart_readme", DEPLOY / "scripts" / "chart-readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for chart in (EXCHANGE, FLEET):
        schema = json.loads((chart / "values.schema.json").read_text())
        values = yaml.safe_load((chart / "values.yaml").read_text())
        missing = module.undocumented(schema, values)
        check(not missing, f"{chart.name}: every key of values.yaml has a values.schema.json entry",
              str(missing))
        current, fresh = module.render(chart.name)
        check(current == fresh, f"{chart.name}: README.md values table is current "
              f"(deploy/scripts/chart-readme.py {chart.name})")


# ---------------------------------------------------------------- roster
ROSTER_MOUNT = "/etc/rtb/roster"
# Every field of a roster entry, as an operator writes them in values.
ROSTER_DSPS = [
    {"name": "braid", "url": "http://dsp-fleet-braid:5000/bid", "qps": 2000,
     "channels": ["site", "app"], "media": ["banner", "video"], "countries": ["USA", "CAN"],
     "tmax_ms": 50, "bid_adjustment": 0.95, "gzip": True},
    {"name": "the-witness", "url": "http://dsp-fleet-the-witness:5000/bid"},
]
ROSTER = {"roster": {"enabled": True, "dsps": ROSTER_DSPS}}


def exchange_binary() -> Path:
    """The rtb-exchange whose --check-config reads the rendered roster: RTB_EXCHANGE_BIN, or the
    workspace's debug build (scripts/test builds it before it runs validate.sh)."""
    given = os.environ.get("RTB_EXCHANGE_BIN")
    if given:
        return Path(given)
    return Path(os.environ.get("CARGO_TARGET_DIR") or DEPLOY.parent / "target") / "debug" / "rtb-exchange"


def mount_config_maps(label: str, docs: list[dict], pod: dict) -> Path:
    """Writes the pod's ConfigMap volumes the way the kubelet mounts them (each key a file in
    the mount's directory) under .out/rendered/<label>.root/; returns that root."""
    root = OUT / f"{label}.root"
    maps = {m["metadata"]["name"]: m for m in by_kind(docs, "ConfigMap")}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in pod["containers"][0].get("volumeMounts", []):
        name = volumes.get(mount["name"], {}).get("configMap", {}).get("name")
        if name in maps:
            directory = root / mount["mountPath"].lstrip("/")
            directory.mkdir(parents=True, exist_ok=True)
            for key, text in maps[name].get("data", {}).items():
                (directory / key).write_text(text)
    return root


def check_config(label: str, docs: list[dict]) -> subprocess.CompletedProcess | None:
    """The real exchange's `--check-config` with the rendered container's args and environment
    (a Secret's value stood in for), its roster path under the mounted ConfigMaps' root: the
    flags, the mount, the key and the file all have to agree for it to load."""
    binary = exchange_binary()
    if not check(binary.is_file(), f"{label}: rtb-exchange binary for --check-config ({binary})",
                 "build it (cargo build -p exchange-bin) or set RTB_EXCHANGE_BIN"):
        return None
    pod = next(w for w in docs if w.get("kind") in ("Deployment", "DaemonSet"))["spec"]["template"]["spec"]
    container = pod["containers"][0]
    root = mount_config_maps(label, docs, pod)
    env = {"PATH": os.environ.get("PATH", "")}
    for e in container.get("env", []):
        env[e["name"]] = e.get("value", "stand-in-for-a-secret")
    if "RTB_EXCHANGE_ROSTER" in env:
        env["RTB_EXCHANGE_ROSTER"] = str(root / env["RTB_EXCHANGE_ROSTER"].lstrip("/"))
    return subprocess.run([str(binary), *container.get("args", []), "--check-config"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def assert_roster(label: str, docs: list[dict], kind: str, *, config_map: str, key: str,
                  poll_ms: int, dsps: list[dict] | None) -> None:
    """The roster mounted and named in the environment; with `dsps` (not an existing ConfigMap)
    rendered as their JSON and loaded by the real exchange."""
    wls = by_kind(docs, kind)
    if not check(len(wls) == 1, f"{label}: one {kind}"):
        return
    pod = wls[0]["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = env_of(c)
    check(env.get("RTB_EXCHANGE_ROSTER") == f"{ROSTER_MOUNT}/{key}"
          and env.get("RTB_EXCHANGE_ROSTER_POLL_MS") == str(poll_ms),
          f"{label}: RTB_EXCHANGE_ROSTER={ROSTER_MOUNT}/{key}, RTB_EXCHANGE_ROSTER_POLL_MS={poll_ms}",
          str(env))
    check(pod.get("volumes") == [{"name": "roster", "configMap": {"name": config_map}}],
          f"{label}: volume roster from ConfigMap {config_map}", str(pod.get("volumes")))
    check(c.get("volumeMounts") == [{"name": "roster", "mountPath": ROSTER_MOUNT, "readOnly": True}],
          f"{label}: roster mounted read-only at {ROSTER_MOUNT} as a directory (a subPath mount "
          "would never be updated)", str(c.get("volumeMounts")))
    maps = by_kind(docs, "ConfigMap")
    if dsps is None:
        check(not maps, f"{label}: no ConfigMap rendered (existingConfigMap {config_map})")
        return
    if not check([m["metadata"]["name"] for m in maps] == [config_map], f"{label}: ConfigMap {config_map}"):
        return
    try:
        parsed = json.loads(maps[0].get("data", {}).get(key, ""))
    except ValueError as e:
        check(False, f"{label}: ConfigMap key {key} is JSON", str(e))
        return
    check(parsed == {"dsps": dsps}, f"{label}: ConfigMap key {key} is roster.dsps as JSON", str(parsed)[:300])
    run = check_config(label, docs)
    if run is not None:
        check(run.returncode == 0 and run.stdout.startswith("OK") and f": {len(dsps)} DSPs" in run.stdout,
              f"{label}: rtb-exchange --check-config, with the pod's args and env, loads the mounted "
              f"roster ({len(dsps)} DSPs)", (run.stdout + run.stderr).strip()[:300])


def expect_check_config_refusal(label: str, values: dict, needle: str) -> None:
    """A roster that the schema lets through but the exchange refuses: --check-config must fail
    on it (exit 2, naming the entry), so the check above is not one that cannot fail."""
    try:
        docs = render(EXCHANGE, with_token(values), "neg")
    except helm.HelmError as e:
        check(False, f"helm template {label}", str(e)[:200])
        return
    run = check_config("exchange-roster-refused", docs)
    if run is not None:
        check(run.returncode == 2 and needle in run.stderr,
              f"rtb-exchange --check-config refuses {label}", (run.stdout + run.stderr).strip()[:300])


# ---------------------------------------------------------------- seccomp
NEVER_ALLOWED = {
    "add_key", "keyctl", "request_key", "setns", "unshare", "bpf", "perf_event_open",
    "ptrace", "mount", "umount2", "pivot_root", "kexec_load", "kexec_file_load",
    "init_module", "finit_module", "delete_module", "reboot", "userfaultfd",
    "process_vm_readv", "process_vm_writev", "open_by_handle_at", "swapon", "swapoff",
}


def check_seccomp() -> None:
    path = EXCHANGE / "files" / "seccomp-rtb-io-uring.json"
    try:
        prof = json.loads(path.read_text())
    except ValueError as e:
        check(False, "seccomp profile is JSON", str(e))
        return
    allowed = set()
    for rule in prof.get("syscalls", []):
        if rule.get("action") == "SCMP_ACT_ALLOW":
            allowed |= set(rule.get("names", []))
    check(prof.get("defaultAction") == "SCMP_ACT_ERRNO", "seccomp profile denies by default")
    check({"io_uring_setup", "io_uring_enter", "io_uring_register"} <= allowed,
          "seccomp profile allows io_uring_setup/enter/register")
    bad = sorted(allowed & NEVER_ALLOWED)
    check(not bad, "seccomp profile allows none of the syscalls RuntimeDefault refuses", str(bad))
    essentials = {"execve", "exit_group", "futex", "epoll_wait", "epoll_ctl", "accept4", "socket",
                  "bind", "listen", "sched_setaffinity", "mmap", "clone3", "rseq", "getrandom"}
    check(essentials <= allowed, "seccomp profile allows what a threaded network server needs",
          str(sorted(essentials - allowed)))
    if shutil.which("systemd-analyze"):
        known = systemd_group("@known")
        if known:
            unknown = sorted(allowed - known)
            check(not unknown, "seccomp profile names only syscalls known to systemd's table", str(unknown))
        else:
            note("systemd-analyze syscall-filter @known gave nothing: syscall names not checked")
    else:
        note("systemd-analyze missing: seccomp syscall names not checked against a syscall table")


def systemd_group(group: str) -> set:
    """Syscall names of a systemd-analyze syscall-filter group: the profile generator's own
    expansion, so the check and the generator cannot disagree on what a group holds."""
    spec = importlib.util.spec_from_file_location(
        "gen_seccomp_profile", Path(__file__).parent / "scripts" / "gen-seccomp-profile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.expand(group, check=False)


# ---------------------------------------------------------------- main
def main() -> int:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    print(f"helm SDK {helm.helm_sdk_version()} (helm-python-sdk {helm.__version__}); "
          f"kubernetes-validate schemas: {', '.join(K8S_VERSIONS)}")

    exchange_cases = {
        "exchange-default": None,
        "exchange-hostnetwork": EXCHANGE / "values-hostnetwork.yaml",
        "exchange-cilium": EXCHANGE / "values-cilium.yaml",
        "exchange-all-options": EXCHANGE / "ci" / "all-options-values.yaml",
        "exchange-open-onboarding": {"exchange": {"openOnboarding": True}},
        "exchange-standalone-rules": {"metrics": {"prometheusRule": {
            "enabled": True, "seriesSelector": STANDALONE_SELECTOR}}},
        "exchange-roster": ROSTER,
        "exchange-hostnetwork-roster": {**load_values(EXCHANGE / "values-hostnetwork.yaml"), "roster": {
            "enabled": True, "existingConfigMap": "rtb-roster", "key": "dsps.json", "pollMs": 1000}},
    }
    fleet_cases = {
        "dsp-fleet-default": None,
        "dsp-fleet-hostnetwork": FLEET / "values-hostnetwork.yaml",
        "dsp-fleet-five-dsps": FLEET / "ci" / "five-dsps-values.yaml",
    }

    def case_values(chart: Path, vfile) -> dict | None:
        values = vfile if isinstance(vfile, dict) else load_values(vfile)
        return with_token(values) if chart == EXCHANGE else values

    # 1. helm lint
    for chart, cases in ((EXCHANGE, exchange_cases), (FLEET, fleet_cases)):
        for label, vfile in cases.items():
            try:
                rep = helm.lint(chart, case_values(chart, vfile), strict=True, kube_version="v1.30.0")
            except helm.HelmError as e:
                check(False, f"helm lint --strict {label}", str(e))
                continue
            problems = [m for m in rep.get("messages", []) if m.get("severity", 0) >= 2] + \
                [{"error": e} for e in rep.get("errors", [])]
            check(not problems, f"helm lint --strict {label}",
                  "; ".join(str(p.get("error")) for p in problems))

    # 2. render
    rendered: dict[str, list[dict]] = {}
    for chart, cases, release in ((EXCHANGE, exchange_cases, "rtb-exchange"),
                                  (FLEET, fleet_cases, "dsp-fleet")):
        for label, vfile in cases.items():
            try:
                docs = render(chart, case_values(chart, vfile), release)
            except helm.HelmError as e:
                check(False, f"helm template {label}", str(e))
                continue
            rendered[label] = docs
            (OUT / f"{label}.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
            check(bool(docs), f"helm template {label} ({len(docs)} objects)")

    # 3. schema
    for label, docs in rendered.items():
        schema_validate(label, docs)
    for d in PLAIN_MANIFEST_DIRS:
        for f in sorted(d.glob("*.yaml")):
            docs = [x for x in yaml.safe_load_all(f.read_text()) if x]
            manifests = [x for x in docs if isinstance(x, dict) and "apiVersion" in x and "kind" in x]
            if manifests:
                schema_validate(str(f.relative_to(DEPLOY)), manifests)

    # 4. assertions
    r = rendered
    if "exchange-default" in r:
        assert_exchange("exchange-default", r["exchange-default"], kind="Deployment", host_network=False)
        assert_exchange_ingress("exchange-default", r["exchange-default"])
        wl = by_kind(r["exchange-default"], "Deployment")
        check(bool(wl) and wl[0]["spec"]["template"]["spec"]["securityContext"]["seccompProfile"]["type"]
              == "RuntimeDefault", "exchange-default: seccomp RuntimeDefault")
        check(not by_kind(r["exchange-default"], "ServiceMonitor"), "exchange-default: no ServiceMonitor")
    if "exchange-hostnetwork" in r:
        assert_exchange("exchange-hostnetwork", r["exchange-hostnetwork"], kind="DaemonSet", host_network=True)
    # The roster in both workload variants: a Deployment on the pod network with a rendered
    # ConfigMap, the hostNetwork DaemonSet with the operator's own.
    if "exchange-roster" in r:
        assert_exchange("exchange-roster", r["exchange-roster"], kind="Deployment", host_network=False)
        assert_roster("exchange-roster", r["exchange-roster"], "Deployment", config_map="rtb-exchange-roster",
                      key="roster.json", poll_ms=250, dsps=ROSTER_DSPS)
    if "exchange-hostnetwork-roster" in r:
        docs = r["exchange-hostnetwork-roster"]
        assert_exchange("exchange-hostnetwork-roster", docs, kind="DaemonSet", host_network=True)
        assert_roster("exchange-hostnetwork-roster", docs, "DaemonSet", config_map="rtb-roster",
                      key="dsps.json", poll_ms=1000, dsps=None)
    if "exchange-cilium" in r:
        assert_exchange("exchange-cilium", r["exchange-cilium"], kind="Deployment", host_network=False)
        svc = [x for x in by_kind(r["exchange-cilium"], "Service") if x["metadata"]["name"] == "rtb-exchange"]
        check(bool(svc) and svc[0]["spec"]["type"] == "LoadBalancer"
              and svc[0]["metadata"]["labels"].get("rtb.io/lb-pool") == "exchange",
              "exchange-cilium: the auction Service is a LoadBalancer labelled for the LB-IPAM pool")
        pool = next(d for d in yaml.safe_load_all((DEPLOY / "cilium" / "lb-ipam-pool.yaml").read_text())
                    if d and d.get("kind") == "CiliumLoadBalancerIPPool")
        check(pool["spec"]["serviceSelector"]["matchLabels"] == {"rtb.io/lb-pool": "exchange"},
              "cilium/lb-ipam-pool.yaml selects the exchange Service")
    if "exchange-all-options" in r:
        docs = r["exchange-all-options"]
        assert_exchange("exchange-all-options", docs, kind="DaemonSet", host_network=False, guaranteed=True)
        assert_exchange_ingress("exchange-all-options", docs, debug_path=True)
        pdb = by_kind(docs, "PodDisruptionBudget")
        check(bool(pdb) and pdb[0]["spec"] == {**pdb[0]["spec"], "minAvailable": 1}
              and "maxUnavailable" not in pdb[0]["spec"],
              "exchange-all-options: PodDisruptionBudget minAvailable 1", str(pdb[0]["spec"] if pdb else None))
        assert_alert_rules("exchange-all-options", docs)
        write_rules_file("exchange-all-options", docs)
        roster = load_values(exchange_cases["exchange-all-options"])["roster"]
        assert_roster("exchange-all-options", docs, "DaemonSet", config_map="rtb-exchange-roster",
                      key=roster["key"], poll_ms=roster["pollMs"], dsps=roster["dsps"])
    if "exchange-standalone-rules" in r:
        assert_alert_rules("exchange-standalone-rules", r["exchange-standalone-rules"])
        assert_rules_match_standalone("exchange-standalone-rules", r["exchange-standalone-rules"])
        ds = by_kind(docs, "DaemonSet")
        if ds:
            sp = ds[0]["spec"]["template"]["spec"]["securityContext"]["seccompProfile"]
            check(sp == {"type": "Localhost", "localhostProfile": "profiles/rtb-io-uring.json"},
                  "exchange-all-options: seccomp Localhost profiles/rtb-io-uring.json", str(sp))
            env = env_of(ds[0]["spec"]["template"]["spec"]["containers"][0])
            check(isinstance(env.get("RTB_ONBOARD_TOKEN"), dict), "exchange-all-options: token from a Secret")
        check(len(by_kind(docs, "ServiceMonitor")) == 1 and len(by_kind(docs, "Secret")) == 1,
              "exchange-all-options: ServiceMonitor and Secret rendered")
        sm = by_kind(docs, "ServiceMonitor")
        check(bool(sm) and sm[0]["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/component")
              == "control", "exchange-all-options: the ServiceMonitor scrapes the control Service")
    if "exchange-default" in r:
        docs = r["exchange-default"]
        check(not by_kind(docs, "PrometheusRule"), "exchange-default: no PrometheusRule (off by default)")
        env = env_of(by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0])
        check(isinstance(env.get("RTB_ONBOARD_TOKEN"), dict) and "RTB_EXCHANGE_OPEN_ONBOARDING" not in env,
              "exchange-default: token from the existing Secret, onboarding not open")
        pdb = by_kind(docs, "PodDisruptionBudget")
        check(bool(pdb) and pdb[0]["spec"].get("maxUnavailable") == 1,
              "exchange-default: PodDisruptionBudget maxUnavailable 1")
        pod = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]
        check(not by_kind(docs, "ConfigMap") and "volumes" not in pod and "RTB_EXCHANGE_ROSTER" not in env,
              "exchange-default: no roster (no ConfigMap, volume or RTB_EXCHANGE_ROSTER)")
        run = check_config("exchange-default", docs)
        if run is not None:
            check(run.returncode == 0 and run.stdout.startswith("OK"),
                  "exchange-default: rtb-exchange --check-config accepts the pod's args and env",
                  (run.stdout + run.stderr).strip()[:300])
    if "exchange-open-onboarding" in r:
        env = env_of(by_kind(r["exchange-open-onboarding"], "Deployment")[0]["spec"]["template"]["spec"]
                     ["containers"][0])
        check(env.get("RTB_EXCHANGE_OPEN_ONBOARDING") == "true" and "RTB_ONBOARD_TOKEN" not in env,
              "exchange-open-onboarding: RTB_EXCHANGE_OPEN_ONBOARDING=true, no token")
    if "dsp-fleet-default" in r:
        assert_fleet("dsp-fleet-default", r["dsp-fleet-default"], DEFAULT_DSPS)
    if "dsp-fleet-hostnetwork" in r:
        assert_fleet("dsp-fleet-hostnetwork", r["dsp-fleet-hostnetwork"], DEFAULT_DSPS, host_network=True,
                     ports={"braid": 5000, "the-witness": 5001, "order-of-the-sinking-star": 5002})
    if "dsp-fleet-five-dsps" in r:
        assert_fleet("dsp-fleet-five-dsps", r["dsp-fleet-five-dsps"],
                     DEFAULT_DSPS + ["fez", "spelunky"], replicas={"the-witness": 3}, ports={"fez": 5001})

    # Two releases in one namespace share no object name.
    for chart, values in ((EXCHANGE, {**TOKEN, **ROSTER}), (FLEET, None)):
        names = []
        for release in ("one", "two"):
            try:
                names.append({(d["kind"], d["metadata"]["name"]) for d in render(chart, values, release)})
            except helm.HelmError as e:
                names.append(set())
                check(False, f"{chart.name}: render as release {release}", str(e)[:200])
        check(bool(names[0]) and not names[0] & names[1],
              f"{chart.name}: releases one and two in one namespace share no object name",
              str(sorted(names[0] & names[1])))
    # The DSP fleet's default onboarding URL names one of the exchange chart's control Services
    # (the headless one, rtb-exchange-pods).
    if "exchange-default" in r and "dsp-fleet-default" in r:
        control = {s["metadata"]["name"] for s in by_kind(r["exchange-default"], "Service")
                   if s["metadata"]["labels"].get("app.kubernetes.io/component") == "onboarding"}
        fleet_env = env_of(by_kind(r["dsp-fleet-default"], "Deployment")[0]["spec"]["template"]["spec"]
                           ["containers"][0])
        host = re.sub(r"^http://([^:/]+).*", r"\1", fleet_env.get("RTB_DSP_ONBOARD_ENDPOINTS", ""))
        check(host in control, "dsp-fleet's default onboard URL is the exchange's headless Service",
              f"{host} vs {control}")

    # 5. bad values: the schema (Helm validates values against values.schema.json) ...
    schema_error = "don't meet the specifications of the schema"
    for what, chart, values in (
        ("a replica count that is not a number", EXCHANGE, {"replicas": "two"}),
        ("a deadline of 0 ms", EXCHANGE, {"exchange": {"deadlineMs": 0}}),
        ("a misspelt key (replica)", EXCHANGE, {"replica": 2}),
        ("an unknown IO driver", EXCHANGE, {"exchange": {"ioDriver": "kqueue"}}),
        ("an unknown kind", EXCHANGE, {"kind": "StatefulSet"}),
        ("fractional CPU (1500m)", EXCHANGE, {"resources": {"cpu": "1500m"}}),
        ("debugPath: \"yes\"", EXCHANGE, {"ingress": {"debugPath": "yes"}}),
        ("a DSP name that is not a DNS label", FLEET, {"dsps": [{"name": "Bad_Name"}]}),
        ("an empty fleet", FLEET, {"dsps": []}),
        ("a misspelt DSP field (replica)", FLEET, {"dsps": [{"name": "a", "replica": 2}]}),
        ("a roster entry with an unknown field (tmax)", EXCHANGE,
         {"roster": {"enabled": True, "dsps": [{"name": "a", "url": "http://a/bid", "tmax": 5}]}}),
        ("a roster entry without a url", EXCHANGE, {"roster": {"enabled": True, "dsps": [{"name": "a"}]}}),
        ("a roster media type the exchange does not know (vdeo)", EXCHANGE,
         {"roster": {"enabled": True, "dsps": [{"name": "a", "url": "http://a/bid", "media": ["vdeo"]}]}}),
        ("a roster country that is not alpha-3 upper case (us)", EXCHANGE,
         {"roster": {"enabled": True, "dsps": [{"name": "a", "url": "http://a/bid", "countries": ["us"]}]}}),
        ("a roster poll of 0 ms", EXCHANGE, {"roster": {"enabled": True, "pollMs": 0}}),
    ):
        expect_render_failure(f"{what} (values.schema.json)", chart, values, schema_error)
    # ... and the templates' own rules.
    expect_render_failure("no onboarding token and no openOnboarding", EXCHANGE,
                          {"onboardToken": {"existingSecret": ""}}, "onboarding token is required")
    expect_render_failure("a token together with openOnboarding", EXCHANGE,
                          {"exchange": {"openOnboarding": True}, **TOKEN}, "drop one of them")
    expect_render_failure("a duplicate DSP name", FLEET, {"dsps": [{"name": "a"}, {"name": "a"}]}, "twice")
    entry = {"name": "a", "url": "http://a/bid"}
    expect_render_failure("a duplicate roster DSP name", EXCHANGE,
                          {"roster": {"enabled": True, "dsps": [entry, entry]}}, "twice")
    expect_render_failure("roster.dsps together with roster.existingConfigMap", EXCHANGE,
                          {"roster": {"enabled": True, "dsps": [entry], "existingConfigMap": "x"}}, "drop one")
    expect_render_failure("roster.dsps without roster.enabled", EXCHANGE,
                          {"roster": {"dsps": [entry]}}, "roster.enabled is false")
    # ... and the exchange's own parser, on what the schema cannot know (a forbidden address).
    expect_check_config_refusal("a roster DSP on a link-local address", {"roster": {"enabled": True, "dsps": [
        {"name": "metadata", "url": "http://169.254.169.254/bid"}]}}, "dsps[0] (metadata).url")

    # 6. seccomp profile
    check_seccomp()

    # 7. chart READMEs and schemas cover every value
    check_docs()

    print(f"check_rendered: {results['passed']} passed, {results['failed']} failed")
    print(f"rendered manifests: {os.path.relpath(OUT)}")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
