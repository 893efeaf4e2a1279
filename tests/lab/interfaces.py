"""Many interfaces at once for benchmarks, and a kernel that has finished with them.

Routes need an interface that is up, not a veth: a device without a peer (dummy, or ifb where
this kernel has no dummy module) costs half as much to make and to remove. Every interface
made here carries a link group, so removing thousands is one netlink request
(`ip link del group N`, one batched unregister) instead of the kernel tearing them down one by
one for minutes when their namespace goes; the caller then polls until they are gone."""

import functools
import os
import time

from tests.lab import netns

BENCH_GROUP = 77  # the link group of every interface a benchmark makes


def load_average() -> float:
    return float(open("/proc/loadavg").read().split()[0])


@functools.cache
def single_kind() -> str:
    """dummy if this kernel can make one, else ifb (both: one device, no peer)."""
    probe = f"cxprobe{time.monotonic_ns() % 100000}"
    netns.add(probe)
    try:
        made = netns.run("ip", "-n", probe, "link", "add", "name", "cxk0", "type", "dummy", check=False)
        return "dummy" if made.returncode == 0 else "ifb"
    finally:
        netns.remove(probe)


def add_interfaces(ns: str, names: list[str], timeout: float = 300) -> None:
    """Up, peerless interfaces named `names` in ns, all in BENCH_GROUP."""
    kind = single_kind()
    lines = "".join(f"link add name {n} group {BENCH_GROUP} type {kind}\nlink set {n} up\n" for n in names)
    netns.run("ip", "-n", ns, "-batch", "-", input=lines, timeout=timeout)


def group_count(ns: str) -> int:
    out = netns.run("ip", "-n", ns, "-o", "link", "show", "group", str(BENCH_GROUP), check=False).stdout
    return out.count("\n")


def remove_interfaces(ns: str, timeout: float = 120) -> float:
    """Delete every BENCH_GROUP interface of ns in one request and wait until the kernel lists
    none (bounded); returns the seconds it took."""
    started = time.monotonic()
    netns.run("ip", "-n", ns, "link", "del", "group", str(BENCH_GROUP), check=False, timeout=timeout)
    while group_count(ns) and time.monotonic() - started < timeout:
        time.sleep(0.2)
    left = group_count(ns)
    if left:
        raise TimeoutError(f"{left} interfaces still in {ns} after {timeout}s")
    return time.monotonic() - started


def busy_cores(seconds: float = 5) -> float:
    """Cores busy over the next `seconds` (/proc/stat: all but idle and iowait): the load now,
    where the 1-minute average still carries the minutes before."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in open("/proc/stat").readline().split()[1:9]]
        return sum(fields), fields[3] + fields[4]

    total, idle = sample()
    time.sleep(seconds)
    total2, idle2 = sample()
    ticks = total2 - total
    return (ticks - (idle2 - idle)) / ticks * (os.cpu_count() or 1) if ticks else 0.0


def wait_for_quiet(limit: float = 1.0, timeout: float = 120) -> float:
    """Wait (bounded) for the 1-minute load average to fall under limit, or for the cores busy
    over 5 s to be under it (after a busy benchmark the average takes minutes to fall though
    the machine is idle); return the load average either way.

    On a shared 2-core machine it may never get there: the figures are ratios against a
    baseline of the same run, and each benchmark prints the load it ran at."""
    deadline = time.monotonic() + timeout
    while load_average() > limit and time.monotonic() < deadline:
        if busy_cores() <= limit:
            break
    return load_average()
