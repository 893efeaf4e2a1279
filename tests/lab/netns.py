"""Small helpers to run commands in, enter and remove network namespaces created by the lab."""

import ctypes
import os
import subprocess

CLONE_NEWNET = 0x40000000


# Generous: while the kernel still tears down a previous run's thousands of veths, it holds
# the rtnl lock and even `ip netns add` waits.
DEFAULT_TIMEOUT = 120


def run(
    *cmd: str, check: bool = True, timeout: float = DEFAULT_TIMEOUT, input: str | None = None
) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}"
        )
    return result


def in_ns(ns: str, *cmd: str, **kwargs) -> subprocess.CompletedProcess:
    return run("ip", "netns", "exec", ns, *cmd, **kwargs)


def add(ns: str) -> None:
    run("ip", "netns", "add", ns)
    in_ns(ns, "ip", "link", "set", "lo", "up")


def remove(ns: str) -> None:
    """Kill what still runs inside (it is ours: we made the namespace), then delete it."""
    pids = run("ip", "netns", "pids", ns, check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), 9)
        except (ProcessLookupError, ValueError):
            pass
    run("ip", "netns", "del", ns, check=False)


def exists(ns: str) -> bool:
    return os.path.exists(f"/run/netns/{ns}")


def enter(ns: str) -> None:
    """Move this (still single-threaded) process into ns, so its own sockets live there too.

    Threads started afterwards inherit it; the host's namespace is never touched."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns({ns}) failed")
    finally:
        os.close(fd)
