#!/usr/bin/env python3
"""Render, lint, schema-validate and check the deploy/ Kubernetes manifests.

Run by deploy/validate.sh inside deploy/.venv (helm-python-sdk, which embeds
Helm's Go SDK, and kubernetes-validate). Offline: no cluster, no network.

  1. helm lint (strict) of each chart with each values file
  2. helm render of each chart in each mode, written to deploy/.out/rendered/
  3. kubernetes-validate --strict (its library) of every rendered document and
     every plain manifest, against each version in K8S_VERSIONS; custom
     resources (CRDs: Cilium, Prometheus Operator) are skipped with a note
  4. assertions on the rendered objects (modes, probes, ports, placement, CPU)
  5. charts refuse bad values (fractional CPUs, bad or duplicate DSP names)
  6. the io_uring seccomp profile: well-formed, io_uring allowed, dangerous
     syscalls not allowed, every name known to systemd's syscall table

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
    svcs = by_kind(docs, "Service")
    svc_ok = len(svcs) == 1 and svcs[0]["metadata"]["name"] == "rtb-exchange" and \
        {(p["name"], p["port"]) for p in svcs[0]["spec"]["ports"]} == {("web", 3000), ("metrics", 6060)}
    check(svc_ok, f"{label}: Service rtb-exchange with web 3000 and metrics 6060")


def assert_exchange_ingress(label: str, docs: list[dict], debug_path: bool = True) -> None:
    ing = by_kind(docs, "Ingress")
    if not check(len(ing) == 1, f"{label}: one Ingress"):
        return
    rules = ing[0]["spec"]["rules"]
    paths = {p["path"]: p["backend"]["service"]["port"]["number"]
             for p in rules[0]["http"]["paths"]}
    want = {"/": 3000, "/debug": 6060} if debug_path else {"/": 3000}
    check(rules[0]["host"] == "exchange.rtb.internal" and paths == want,
          f"{label}: Ingress exchange.rtb.internal {want}", str(paths))


def assert_fleet(label: str, docs: list[dict], names: list[str], *, host_network: bool = False,
                 replicas: dict | None = None, ports: dict | None = None) -> None:
    deps = {d["metadata"]["name"]: d for d in by_kind(docs, "Deployment")}
    svcs = {s["metadata"]["name"]: s for s in by_kind(docs, "Service")}
    check(sorted(deps) == sorted(names), f"{label}: one Deployment per DSP ({len(names)})", str(sorted(deps)))
    check(sorted(svcs) == sorted(names), f"{label}: one Service per DSP ({len(names)})", str(sorted(svcs)))
    for name in names:
        if name not in deps or name not in svcs:
            continue
        port = (ports or {}).get(name, 5000)
        pod = deps[name]["spec"]["template"]["spec"]
        c = pod["containers"][0]
        env = env_of(c)
        check(env.get("RTB_DSP_NAME") == name, f"{label}/{name}: RTB_DSP_NAME")
        check(env.get("RTB_DSP_BASE_URL") == f"http://{name}:{port}",
              f"{label}/{name}: RTB_DSP_BASE_URL=http://{name}:{port}", str(env.get("RTB_DSP_BASE_URL")))
        check(env.get("RTB_DSP_ONBOARD_ENDPOINTS") == "http://rtb-exchange:3000/dsp",
              f"{label}/{name}: RTB_DSP_ONBOARD_ENDPOINTS=http://rtb-exchange:3000/dsp")
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
    try:
        render(chart, values, "neg")
        check(False, f"chart refuses {label}", "rendered without error")
    except helm.HelmError as e:
        check(needle in str(e), f"chart refuses {label}", str(e)[:200])


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
    }
    fleet_cases = {
        "dsp-fleet-default": None,
        "dsp-fleet-hostnetwork": FLEET / "values-hostnetwork.yaml",
        "dsp-fleet-five-dsps": FLEET / "ci" / "five-dsps-values.yaml",
    }

    # 1. helm lint
    for chart, cases in ((EXCHANGE, exchange_cases), (FLEET, fleet_cases)):
        for label, vfile in cases.items():
            try:
                rep = helm.lint(chart, load_values(vfile), strict=True, kube_version="v1.30.0")
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
                docs = render(chart, load_values(vfile), release)
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
    if "exchange-cilium" in r:
        assert_exchange("exchange-cilium", r["exchange-cilium"], kind="Deployment", host_network=False)
        svc = by_kind(r["exchange-cilium"], "Service")
        check(bool(svc) and svc[0]["spec"]["type"] == "LoadBalancer"
              and svc[0]["metadata"]["labels"].get("rtb.io/lb-pool") == "exchange",
              "exchange-cilium: LoadBalancer Service labelled for the LB-IPAM pool")
        pool = next(d for d in yaml.safe_load_all((DEPLOY / "cilium" / "lb-ipam-pool.yaml").read_text())
                    if d and d.get("kind") == "CiliumLoadBalancerIPPool")
        check(pool["spec"]["serviceSelector"]["matchLabels"] == {"rtb.io/lb-pool": "exchange"},
              "cilium/lb-ipam-pool.yaml selects the exchange Service")
    if "exchange-all-options" in r:
        docs = r["exchange-all-options"]
        assert_exchange("exchange-all-options", docs, kind="DaemonSet", host_network=False, guaranteed=True)
        assert_exchange_ingress("exchange-all-options", docs, debug_path=False)
        ds = by_kind(docs, "DaemonSet")
        if ds:
            sp = ds[0]["spec"]["template"]["spec"]["securityContext"]["seccompProfile"]
            check(sp == {"type": "Localhost", "localhostProfile": "profiles/rtb-io-uring.json"},
                  "exchange-all-options: seccomp Localhost profiles/rtb-io-uring.json", str(sp))
            env = env_of(ds[0]["spec"]["template"]["spec"]["containers"][0])
            check(isinstance(env.get("RTB_ONBOARD_TOKEN"), dict), "exchange-all-options: token from a Secret")
        check(len(by_kind(docs, "ServiceMonitor")) == 1 and len(by_kind(docs, "Secret")) == 1,
              "exchange-all-options: ServiceMonitor and Secret rendered")
    if "dsp-fleet-default" in r:
        assert_fleet("dsp-fleet-default", r["dsp-fleet-default"], DEFAULT_DSPS)
    if "dsp-fleet-hostnetwork" in r:
        assert_fleet("dsp-fleet-hostnetwork", r["dsp-fleet-hostnetwork"], DEFAULT_DSPS, host_network=True,
                     ports={"braid": 5000, "the-witness": 5001, "order-of-the-sinking-star": 5002})
    if "dsp-fleet-five-dsps" in r:
        assert_fleet("dsp-fleet-five-dsps", r["dsp-fleet-five-dsps"],
                     DEFAULT_DSPS + ["fez", "spelunky"], replicas={"the-witness": 3}, ports={"fez": 5001})

    # 5. bad values
    expect_render_failure("fractional CPU (1500m)", EXCHANGE, {"resources": {"cpu": "1500m"}}, "whole number")
    expect_render_failure("an unknown kind", EXCHANGE, {"kind": "StatefulSet"}, "Deployment or DaemonSet")
    expect_render_failure("a DSP name that is not a DNS label", FLEET, {"dsps": [{"name": "Bad_Name"}]}, "DNS-1035")
    expect_render_failure("a duplicate DSP name", FLEET, {"dsps": [{"name": "a"}, {"name": "a"}]}, "twice")
    expect_render_failure("an empty fleet", FLEET, {"dsps": []}, "at least one")

    # 6. seccomp profile
    check_seccomp()

    print(f"check_rendered: {results['passed']} passed, {results['failed']} failed")
    print(f"rendered manifests: {os.path.relpath(OUT)}")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
