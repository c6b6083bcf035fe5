"""containerlab's parts, one concern per module (the `containerlab` script next to this folder
is the CLI):

  podman     podman as this machine needs it (runc, explicit rlimits) and the Session that
             names, tracks and removes every container, network and image a run makes
  hoststate  what podman's CNI plugins change outside the containers (ip_forward, iptables
             chains, links): saved before a run, restored and checked after it
  cgroup     a container's CPU cgroup: CFS quota and its throttling counters (v1 or v2)
  variants   what one measured configuration is (network mode, seccomp profile, CPU limit) and
             how its exchange and DSP containers are started and reached
  runner     one variant: start, probe, measure both scenarios through rtb-load, tear down
  report     the table, the markdown report and its figure
  smoke      the CI check: image, UID, seccomp drivers, one auction, drain on podman stop,
             nothing left behind
"""
