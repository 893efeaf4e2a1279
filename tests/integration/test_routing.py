"""Workloads reach each other through the routes felix programs (static fabric routes between nodes)."""

import pytest

from tests.lab.processes import wait_for
from tests.lab.traffic import ping, reachability, start_echo_servers, tcp

pytestmark = pytest.mark.integration


def test_all_workloads_reach_each_other_by_ping_and_tcp(cluster):
    start_echo_servers(cluster)
    table = reachability(cluster)
    assert len(table) == 12
    failures = {pair: result for pair, result in table.items() if result != (True, True)}
    assert not failures, f"unreachable (ping, tcp): {failures}"


def test_ipv6_same_node_and_across_nodes(cluster):
    a, b = cluster.nodes["node1"].workloads
    c = cluster.nodes["node2"].workloads[0]
    start_echo_servers(cluster)
    # A fresh veth's link-local addresses need duplicate address detection (~1-2 s) before
    # neighbour discovery can answer: allow for it once, then expect every packet to pass.
    wait_for(lambda: ping(a, b.ipv6) and ping(a, c.ipv6), timeout=5, what="IPv6 neighbour discovery")
    assert ping(a, b.ipv6, count=3) and tcp(a, b.ipv6)
    assert ping(a, c.ipv6, count=3) and tcp(a, c.ipv6)


def test_kernel_routes_match_endpoints_and_interfaces_are_configured(cluster):
    for name, node in cluster.nodes.items():
        expected = {(f"{w.ip}/32", w.interface) for w in node.workloads} | {
            (f"{w.ipv6}/128", w.interface) for w in node.workloads
        }
        assert cluster.kernel_routes(name) == expected
        sysctl = lambda key: open_ns_sysctl(node.netns, key)  # noqa: E731
        for w in node.workloads:
            assert sysctl(f"net.ipv4.conf.{w.interface}.proxy_arp") == "1"
            assert sysctl(f"net.ipv4.conf.{w.interface}.rp_filter") == "1"
            assert sysctl(f"net.ipv4.neigh.{w.interface}.proxy_delay") == "0"
            assert sysctl(f"net.ipv4.conf.{w.interface}.forwarding") == "1"
            assert sysctl(f"net.ipv6.conf.{w.interface}.proxy_ndp") == "1"
            assert sysctl(f"net.ipv6.neigh.{w.interface}.proxy_delay") == "0"
            assert sysctl(f"net.ipv6.conf.{w.interface}.accept_ra") == "0"
        assert sysctl("net.ipv4.ip_forward") == "1"


def open_ns_sysctl(ns: str, key: str) -> str:
    from tests.lab import netns

    return netns.in_ns(ns, "sysctl", "-n", key).stdout.strip()
