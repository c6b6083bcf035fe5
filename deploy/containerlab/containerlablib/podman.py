"""podman as this lab drives it, and the Session that removes everything a run made.

Measured on the development machine (podman 4.3 from Debian 12, kernel 6.18, hybrid cgroup
v1), podman's defaults need three changes there:
  - runc, not crun: crun refuses the hybrid cgroup layout (RTB_OCI_RUNTIME overrides it);
  - explicit RLIMIT_NOFILE and RLIMIT_NPROC: podman asks for 1048576 of each, more than the
    hard limits it runs under (20000 open files, 32768 processes), and runc then fails with
    "error setting rlimit type 7 (then 6): operation not permitted";
  - a locally made base image (deploy/scripts/make-base-image.sh): no registry is reachable.

Every container, network and smoke image a run makes is named rtbcl-<run id>-*; the Session
removes them on every exit path, and `cleanup_stale` removes any rtbcl-* a killed run left.
"""
import ipaddress
import json
import os
import re
import resource
import subprocess
import time
from pathlib import Path

PREFIX = "rtbcl-"
RUNTIME = os.environ.get("RTB_OCI_RUNTIME", "runc")
# RLIMIT_NPROC counts every thread of UID 10001 on the machine: the lab's containers use a
# few dozen.
NPROC = 4096
NOFILE_MAX = 1048576
TIMEOUT_S = 120
STARTUP_TIMEOUT_S = 20.0
REMOVE_ATTEMPTS = 3
DEPLOY = Path(__file__).resolve().parents[2]
BUILD_IMAGE = DEPLOY / "scripts" / "build-image.sh"


class PodmanError(RuntimeError):
    """A podman command that failed; the message names it and ends with its stderr."""


def podman(*args, check=True, timeout=TIMEOUT_S, env=None):
    r = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout,
                       env=env)
    if check and r.returncode != 0:
        raise PodmanError(f"podman {' '.join(args)[:300]} -> exit {r.returncode}: "
                          f"{r.stderr.strip()[-800:]}")
    return r


def run_flags():
    """The flags every `podman run` of the lab gets (see the module doc)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = NOFILE_MAX if hard == resource.RLIM_INFINITY else min(hard, NOFILE_MAX)
    return ["--runtime", RUNTIME, "--pull", "never", "--ulimit", f"nofile={nofile}:{nofile}",
            "--ulimit", f"nproc={NPROC}:{NPROC}"]


def image_ids():
    """Every image id in the store, intermediate build layers included."""
    return set(podman("images", "-a", "-q", "--no-trunc").stdout.split())


class Network:
    def __init__(self, name, subnet, gateway):
        self.name = name
        self.subnet = ipaddress.ip_network(subnet)
        self.gateway = gateway

    def host(self, index):
        """The subnet's index-th address (static container addresses: no DNS plugin here)."""
        return str(self.subnet.network_address + index)


class Container:
    def __init__(self, name):
        self.name = name
        self._pid = None

    def inspect(self):
        return json.loads(podman("inspect", self.name).stdout)[0]

    @property
    def pid(self):
        """Host pid of the container's PID 1 (tini); the service is its only child."""
        if self._pid is None:
            self._pid = int(self.inspect()["State"]["Pid"])
        return self._pid

    def logs(self):
        r = podman("logs", self.name, check=False)
        return r.stdout + r.stderr

    def exit_code(self):
        return int(self.inspect()["State"]["ExitCode"])

    def running(self):
        return bool(self.inspect()["State"]["Running"])

    def wait_log(self, pattern, timeout=STARTUP_TIMEOUT_S):
        """First capture group of `pattern` in the logs, or PodmanError with their tail."""
        rx = re.compile(pattern, re.M)
        end = time.monotonic() + timeout
        while True:
            logs = self.logs()
            m = rx.search(logs)
            if m:
                return m.group(1)
            if time.monotonic() > end or not self.running():
                raise PodmanError(f"{self.name}: no /{pattern}/ in its log within {timeout:.0f} s;"
                                  f" log tail:\n{logs[-1500:]}")
            time.sleep(0.1)


class Session:
    """Names, starts and tracks this run's containers, networks and images; `cleanup` removes
    them (images only those it was asked to own)."""

    def __init__(self, run_id):
        self.run_id = run_id
        self.containers = []
        self.networks = []
        self.images = []

    def name(self, what):
        return f"{PREFIX}{self.run_id}-{what}"

    def network(self, what):
        name = self.name(what)
        podman("network", "create", name)
        self.networks.append(name)
        info = json.loads(podman("network", "inspect", name).stdout)[0]["subnets"][0]
        return Network(name, info["subnet"], info["gateway"])

    def run(self, what, image, argv, *, network="host", ip=None, publish=(), cpuset=None,
            cpus=None, seccomp=None, entrypoint=None, env=None, stop_timeout=None):
        """`podman run -d`. seccomp: a profile path, or None for podman's default profile.
        env: variables passed by name only (their values come from os.environ, so a token
        never shows in argv)."""
        name = self.name(what)
        args = ["run", "-d", "--name", name, *run_flags(), "--network", network]
        if ip:
            args += ["--ip", ip]
        for p in publish:
            args += ["-p", p]
        if cpuset is not None:
            args += ["--cpuset-cpus", str(cpuset)]
        if cpus is not None:
            args += ["--cpus", str(cpus)]
        if seccomp is not None:
            args += ["--security-opt", f"seccomp={seccomp}"]
        if entrypoint:
            args += ["--entrypoint", json.dumps(entrypoint)]
        for var in env or ():
            args += ["--env", var]
        if stop_timeout is not None:
            args += ["--stop-timeout", str(stop_timeout)]
        self.containers.append(name)
        podman(*args, image, *argv)
        return Container(name)

    def build_image(self, tag, bin_dir, own):
        """deploy/scripts/build-image.sh (which makes the base when it is missing). With `own`,
        cleanup removes the image and, when this build made it, the base as well."""
        base = base_image_name()
        had_base = podman("image", "exists", base, check=False).returncode == 0
        r = subprocess.run([str(BUILD_IMAGE), "--bin-dir", str(bin_dir), "--tag", tag],
                           capture_output=True, text=True, timeout=900)
        if own:
            self.images.append(tag)
            if not had_base:
                self.images.append(base)
        if r.returncode != 0:
            raise PodmanError(f"build-image.sh failed (exit {r.returncode}):\n{r.stderr[-2500:]}")
        return not had_base

    def remove_containers(self):
        # A `podman rm` killed mid-way (Ctrl-C) leaves a container that the next `rm` may
        # fail on while podman finishes with it: a few attempts, a second apart.
        for attempt in range(REMOVE_ATTEMPTS):
            if not self.containers:
                break
            if attempt:
                time.sleep(1)
            podman("rm", "-f", "-t", "2", *self.containers, check=False)
            self.containers = [c for c in self.containers
                               if podman("container", "exists", c, check=False).returncode == 0]
        return list(self.containers)

    def cleanup(self):
        """Removes containers, then networks, then owned images; returns what is left."""
        left = self.remove_containers()
        for n in list(self.networks):
            if podman("network", "rm", "-f", n, check=False).returncode == 0:
                self.networks.remove(n)
        for image in list(self.images):
            if podman("rmi", image, check=False).returncode == 0:
                self.images.remove(image)
        return left + self.networks + self.images


def base_image_name():
    """The runtime-base stage's FROM in deploy/Containerfile (what make-base-image.sh tags)."""
    m = re.search(r"^FROM (\S+) AS runtime-base$", (DEPLOY / "Containerfile").read_text(), re.M)
    if not m:
        raise PodmanError("no 'FROM ... AS runtime-base' line in deploy/Containerfile")
    return m.group(1)


def stale():
    """rtbcl-* containers, networks and images in the store (another or a killed run)."""
    names = podman("ps", "-a", "--format", "{{.Names}}").stdout.split()
    nets = podman("network", "ls", "--format", "{{.Name}}").stdout.split()
    images = podman("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    return ([n for n in names if n.startswith(PREFIX)], [n for n in nets if n.startswith(PREFIX)],
            [i for i in images if i.startswith(f"localhost/{PREFIX}")])


def cleanup_stale():
    containers, nets, images = stale()
    if containers:
        podman("rm", "-f", "-t", "0", *containers, check=False)
    for n in nets:
        podman("network", "rm", "-f", n, check=False)
    for i in images:
        podman("rmi", i, check=False)
    return [x for group in stale() for x in group]
