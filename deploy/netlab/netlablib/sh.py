"""Running commands and the two ways netlab stops: a refusal (exit 2) and a failure (exit 1)."""
import subprocess


class Refused(Exception):
    """Exit 2: the lab will not run here (not root, leftovers of another run, a guard tripped)."""


def log(msg):
    print(msg, flush=True)


def run(argv, check=True, input=None, timeout=None):
    """argv's completed process (text); with check, a RuntimeError naming the command on failure."""
    r = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)[:300]} -> exit {r.returncode}: {r.stderr.strip()[:500]}")
    return r
