"""Real packets between workloads: ping and a TCP echo (tests/lab/probe.py), each bounded in time."""

import json
from pathlib import Path

from tests.lab import netns
from tests.lab.processes import wait_for
from tests.lab.topology import Lab, Workload

PROBE = str(Path(__file__).with_name("probe.py"))
ECHO_PORT = 8080


def ping(src: Workload, address: str, count: int = 1, wait: float = 1) -> bool:
    result = netns.in_ns(src.netns, "ping", "-n", "-q", "-c", str(count), "-W", str(wait), address, check=False)
    return result.returncode == 0


def tcp(src: Workload, address: str, port: int = ECHO_PORT) -> bool:
    result = netns.in_ns(
        src.netns, "python3", PROBE, "probe", "2", json.dumps([[address, port, "tcp"]]), check=False, timeout=10
    )
    return result.returncode == 0 and json.loads(result.stdout) == [True]


def start_echo_servers(lab: Lab, port: int = ECHO_PORT) -> None:
    for workload in lab.workloads():
        name = f"echo-{workload.node}-{workload.name}"
        if any(d.name == name for d in lab.daemons):
            continue
        lab._daemon(name, ["ip", "netns", "exec", workload.netns, "python3", PROBE, "serve", str(port)])
    for workload in lab.workloads():
        wait_for(
            lambda: netns.in_ns(workload.netns, "ss", "-Hltn", f"sport = :{port}").stdout.strip(),
            timeout=10,
            what=f"echo server in {workload.name}",
        )


def reachability(lab: Lab, family: int = 4) -> dict[tuple[str, str], tuple[bool, bool]]:
    """(src, dst) -> (ping ok, tcp ok) for every ordered pair of distinct workloads."""
    table = {}
    for src in lab.workloads():
        for dst in lab.workloads():
            if src is dst:
                continue
            address = dst.ip if family == 4 else dst.ipv6
            table[(src.name, dst.name)] = (ping(src, address), tcp(src, address))
    return table
