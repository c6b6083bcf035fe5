#!/usr/bin/env python3
"""Generate charts/rtb-exchange/files/seccomp-rtb-io-uring.json.

Allow-list profile: systemd's @system-service syscall group (as known to the
local systemd-analyze), plus the three io_uring syscalls, minus the syscalls
that container runtimes' default profiles refuse to unprivileged containers
(keyring, namespaces, cross-process memory access, userfaultfd, ...).
Everything else fails with EPERM. Native architectures only (x86_64, aarch64).

Usage: python3 deploy/scripts/gen-seccomp-profile.py > deploy/charts/rtb-exchange/files/seccomp-rtb-io-uring.json
"""
import json
import subprocess
import sys

IO_URING = ["io_uring_setup", "io_uring_enter", "io_uring_register"]
# Refused by RuntimeDefault (containerd/Docker) for containers without
# CAP_SYS_ADMIN / CAP_SYS_PTRACE; the exchange needs none of them.
DENY = {
    "add_key", "keyctl", "request_key",           # kernel keyring is not namespaced
    "setns", "unshare",                          # namespace escapes / user namespaces
    "migrate_pages", "move_pages",               # other processes' memory placement
    "process_vm_readv", "process_vm_writev",     # other processes' memory
    "kcmp", "name_to_handle_at", "open_by_handle_at",
    "userfaultfd",                               # exploitation primitive
}
# Checked by deploy/check_rendered.py: none of these may ever be allowed.
NEVER = sorted(DENY | {
    "bpf", "perf_event_open", "ptrace", "mount", "umount2", "pivot_root",
    "kexec_load", "kexec_file_load", "init_module", "finit_module",
    "delete_module", "reboot", "swapon", "swapoff", "syslog", "acct",
    "clock_settime", "settimeofday", "quotactl", "lookup_dcookie",
    "fanotify_init", "iopl", "ioperm", "vhangup", "open_tree", "move_mount",
    "fsopen", "fsmount", "fsconfig", "fspick", "mount_setattr",
})


def expand(group, seen=None, check=True):
    """Syscall names of a systemd-analyze syscall-filter group, nested groups expanded
    (also used by deploy/check_rendered.py, with check=False)."""
    seen = set() if seen is None else seen
    out = subprocess.run(["systemd-analyze", "syscall-filter", group],
                         check=check, capture_output=True, text=True).stdout
    names = set()
    for line in out.splitlines()[1:]:
        word = line.strip().split(" ")[0] if line.strip() else ""
        if not word or word.startswith("#"):
            continue
        if word.startswith("@"):
            if word not in seen:
                seen.add(word)
                names |= expand(word, seen, check)
        else:
            names.add(word)
    return names


def main():
    # Only names in this systemd's syscall table (@known): @default also lists
    # other architectures' calls (set_tls) that some runtimes reject by name.
    known = expand("@known")
    allowed = ((expand("@system-service") & known) | set(IO_URING)) - set(NEVER)
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
        "syscalls": [
            {"names": sorted(allowed), "action": "SCMP_ACT_ALLOW"},
        ],
    }
    json.dump(profile, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
