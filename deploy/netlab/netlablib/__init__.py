"""netlab's parts, one concern per module (the `netlab` script next to this folder is the CLI):

  topology   network namespaces, veths, bridges, VXLAN: the lab's hosts and the Lab guard
  kubeproxy  kube-proxy's service rules: iptables (nft or legacy backend) and nftables mode
  cgroups    CPU limits as Kubernetes sets them (CFS quota, cgroup v1 or v2) and their counters
  hostsys    the root-namespace sysctls netlab must change (conntrack table size and buckets),
             saved before and restored on every exit path
  conntrack  conntrack statistics of a namespace and the tuning levels
  variants   what one measured configuration is (mode, proxy, rules, CPU limit, conntrack tuning)
  runner     one variant: build, start the processes, probe, measure, tear down
  report     the tables, the one-page markdown report and its figure
"""
