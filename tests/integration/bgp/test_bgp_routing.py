"""Workloads on three nodes reach each other, and the fabric reaches them, over routes learned
by BGP only: through a BIRD route reflector, and through a node-to-node mesh."""

import ipaddress

import pytest

from policy.datastore.ipam import IPAM
from tests.integration.bgp.conftest import unreachable
from tests.lab import netns
from tests.lab.bgp_lab import node_address
from tests.lab.processes import wait_for

pytestmark = pytest.mark.integration


def own_blocks(lab, node: str) -> set[str]:
    return {b.cidr for b in IPAM(lab.kv, lab.prefix).blocks() if b.affinity == node}


def expected_routes(lab, node: str) -> dict[str, set[str]]:
    """Every other node's blocks via that node, and the borrowed workload via node3."""
    wanted = {}
    for other in lab.nodes:
        if other != node:
            v4, v6 = node_address(lab.nodes[other].index)
            for block in own_blocks(lab, other):
                wanted[block] = {v6 if ":" in block else v4}
    d = next(w for w in lab.workloads() if w.name == "d")
    if node != "node3":
        v4, v6 = node_address(3)
        wanted[f"{d.ip}/32"], wanted[f"{d.ipv6}/128"] = {v4}, {v6}
    return wanted


def test_route_reflector_carries_block_aggregates_and_only_borrowed_host_routes(bgp_lab_factory):
    lab = bgp_lab_factory(reflector=True)
    d = next(w for w in lab.workloads() if w.name == "d")
    blocks = {b for n in lab.nodes for b in own_blocks(lab, n)}
    assert all(ipaddress.ip_network(b).prefixlen in (26, 122) for b in blocks) and len(blocks) == 6
    wanted_bird = blocks | {f"{d.ip}/32", f"{d.ipv6}/128"}
    wait_for(lambda: lab.bird_routes() == wanted_bird, timeout=10, what=lambda: f"BIRD routes {lab.bird_routes()}")
    for node in lab.nodes:
        wait_for(
            lambda: lab.learned_routes(node) == expected_routes(lab, node),
            timeout=10,
            what=lambda: f"{node} routes {lab.learned_routes(node)} != {expected_routes(lab, node)}",
        )
        assert lab.blackholes(node) == own_blocks(lab, node)
    assert not unreachable(lab)
    # The fabric (BIRD exports to its kernel) reaches every workload from outside the nodes.
    for w in lab.workloads():
        assert netns.in_ns(lab.fabric, "ping", "-c", "1", "-W", "2", w.ip, check=False).returncode == 0, w.ip

    def tor_session():  # the IPv4 session: IPv4 prefixes only; published at most once a second
        status = lab.policyctl("node", "status", "node1", "-o", "json")
        return next(s for s in status["sessions"] if s["peer"] == "198.18.100.1")

    # sent: node1's block; received: node2's and node3's blocks, and d's /32
    wait_for(
        lambda: (s := tor_session())["state"] == "up" and s["sent"] == 1 and s["received"] == 3,
        timeout=5,
        what=tor_session,
    )


def test_node_to_node_mesh_without_a_reflector(bgp_lab_factory):
    lab = bgp_lab_factory(reflector=False)
    for node in lab.nodes:
        wait_for(
            lambda: lab.learned_routes(node) == expected_routes(lab, node),
            timeout=15,
            what=lambda: f"{node} routes {lab.learned_routes(node)} != {expected_routes(lab, node)}",
        )
    assert not unreachable(lab)

    def mesh_sessions():  # published at most once a second: it may trail the routes a little
        status = lab.policyctl("node", "status", "node2", "-o", "json")
        return {s["name"]: s["state"] for s in status["sessions"] if s["name"].startswith("mesh:")}

    wait_for(lambda: mesh_sessions() == {"mesh:node1": "up", "mesh:node3": "up"}, timeout=5, what=mesh_sessions)
    table = lab.policyctl_text("node", "status", "node2")
    assert "mesh:node1" in table and "PEER" in table
