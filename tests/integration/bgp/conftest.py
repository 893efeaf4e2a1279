"""BGP labs: three nodes on one rack with a BIRD top-of-rack, felix and calyx-bgp on each node,
workloads addressed by IPAM. Every route between nodes comes from BGP."""

import json
import subprocess

import pytest

from policy.datastore.store import WriteMode
from tests.lab.bgp_lab import BgpLab
from tests.lab.processes import wait_for
from tests.lab.traffic import PROBE, start_echo_servers

ECHO_PORT = 8080


def build(lab: BgpLab) -> BgpLab:
    lab.build()
    for node in lab.nodes:
        lab.start_bgp(node)
    lab.add_ipam_workload("node1", "a")
    lab.add_ipam_workload("node2", "b")
    lab.add_ipam_workload("node3", "c")
    lab.add_ipam_workload("node3", "d", borrow_from="node1")
    revision = lab.store.write([w.endpoint() for w in lab.workloads()], WriteMode.CREATE)
    for node in lab.nodes:
        lab.start_felix(node)
    for node in lab.nodes:
        lab.wait_programmed(node, revision, timeout=20)
    wait_for(lambda: all(lab.bgp_ready(n) for n in lab.nodes), timeout=20, what="calyx-bgp ready on every node")
    wait_for(lambda: lab.bird_established() == 6, timeout=20, what=lambda: lab.birdc("show", "protocols"))
    start_echo_servers(lab, ECHO_PORT)
    return lab


@pytest.fixture
def bgp_lab_factory():
    labs = []

    def make(reflector: bool = True) -> BgpLab:
        lab = BgpLab(nodes=3, reflector=reflector)
        labs.append(lab)  # destroyed even when the build fails half-way
        return build(lab)

    yield make
    for lab in labs:
        print(lab.logs())
        lab.destroy()


def unreachable(lab: BgpLab, timeout: float = 2.0) -> list[tuple[str, str]]:
    """(source, destination address) pairs where a TCP echo failed, both families, all pairs."""
    failures = []
    for src in lab.workloads():
        targets = [
            [address, ECHO_PORT, "tcp"] for dst in lab.workloads() if dst is not src for address in (dst.ip, dst.ipv6)
        ]
        result = subprocess.run(
            ["ip", "netns", "exec", src.netns, "python3", PROBE, "probe", str(timeout), json.dumps(targets)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        answers = json.loads(result.stdout)
        failures += [(src.name, target[0]) for target, ok in zip(targets, answers, strict=True) if not ok]
    return failures
