"""What one write to etcd, or one workload, must not be able to do to a node (issue 10), with real
felix, etcd, nftables and packets in namespaces."""

import json
import subprocess
import sys
import urllib.request

import pytest

from policy.datastore.keys import resource_key
from policy.datastore.kv import ANY, Write
from policy.datastore.store import WriteMode, encode
from policy.model.resources import WorkloadEndpoint
from tests.lab import netns
from tests.lab.processes import wait_for
from tests.lab.traffic import start_echo_servers, tcp

pytestmark = pytest.mark.integration

SPOOF_PORT = 9977


def _metric(node, name: str, labels: str) -> float:
    with urllib.request.urlopen(f"http://{node.address}:9099/metrics", timeout=2) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(f"{name}{{{labels}}}"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def _put_raw(cluster, key: str, value: bytes) -> int:
    return cluster.kv.commit([Write(key, value, ANY)])


def _endpoint_key(cluster, workload) -> str:
    return resource_key(cluster.prefix, WorkloadEndpoint, workload.name, workload.namespace)


def test_a_key_that_is_not_utf8_is_counted_and_programming_goes_on(cluster):
    node = cluster.nodes["node1"]
    raw = f"{cluster.prefix}/v1/workloadendpoints/default/".encode() + b"\xff\xfe"
    _put_raw(cluster, raw.decode("utf-8", "surrogateescape"), b"{}")
    late = cluster.add_workload("node1", "late")
    revision = cluster.store.write([late.endpoint()], WriteMode.CREATE)
    status = cluster.wait_programmed("node1", revision)
    assert status["datastore"] == "ok"
    assert (f"{late.ip}/32", late.interface) in cluster.kernel_routes("node1")
    assert _metric(node, "calyx_felix_bad_resources_total", 'kind="UndecodableKey"') >= 1


def test_a_bad_update_to_a_live_endpoint_keeps_its_route_and_traffic(cluster):
    a = cluster.nodes["node1"].workloads[0]
    remote = cluster.nodes["node2"].workloads[0]
    start_echo_servers(cluster)
    revision = _put_raw(cluster, _endpoint_key(cluster, a), b'{"kind": "WorkloadEndpoint", "spec": 7}')
    cluster.wait_programmed("node1", revision)
    assert (f"{a.ip}/32", a.interface) in cluster.kernel_routes("node1")
    assert tcp(remote, a.ip) and tcp(a, remote.ip)


def test_a_second_endpoint_claiming_an_address_gets_nothing(cluster):
    a = cluster.nodes["node1"].workloads[0]
    remote = cluster.nodes["node2"].workloads[0]
    start_echo_servers(cluster)
    thief = cluster.add_workload("node1", "aaa-thief")  # its key sorts before a's
    endpoint = thief.endpoint(networks=[f"{a.ip}/32", f"{a.ipv6}/128"])
    revision = cluster.store.write([endpoint], WriteMode.CREATE)
    cluster.wait_programmed("node1", revision)
    routes = cluster.kernel_routes("node1")
    assert (f"{a.ip}/32", a.interface) in routes and (f"{a.ip}/32", thief.interface) not in routes
    assert tcp(remote, a.ip)
    # IPv6 may first wait for neighbour discovery on a busy machine: a few bounded tries
    wait_for(lambda: tcp(remote, a.ipv6), timeout=10, what=f"{a.ipv6} to answer over its own interface")


def test_an_endpoint_naming_the_uplink_is_refused_and_the_uplink_untouched(cluster):
    node = cluster.nodes["node1"]
    proxy_arp = "/proc/sys/net/ipv4/conf/fabric0/proxy_arp"
    before = netns.in_ns(node.netns, "cat", proxy_arp).stdout
    bad = cluster.nodes["node1"].workloads[0].endpoint()
    document = json.loads(encode(bad))
    document["metadata"]["name"] = "uplink"
    document["spec"]["interfaceName"] = "fabric0"
    document["spec"]["ipNetworks"] = ["198.19.1.250/32"]
    key = resource_key(cluster.prefix, WorkloadEndpoint, "uplink", "default")
    revision = _put_raw(cluster, key, json.dumps(document).encode())
    cluster.wait_programmed("node1", revision)
    assert netns.in_ns(node.netns, "cat", proxy_arp).stdout == before
    assert not any(device == "fabric0" for _, device in cluster.kernel_routes("node1"))
    assert _metric(node, "calyx_felix_bad_resources_total", 'kind="WorkloadEndpoint"') >= 1


_SEND = """
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
if sys.argv[5] == "answered":  # the victim: repeated until its echo comes back (neighbour discovery may delay it)
    s.settimeout(1)
    for _ in range(8):
        s.sendto(b"victim", (sys.argv[3], int(sys.argv[4])))
        try:
            s.recvfrom(100)
            sys.exit(0)
        except socket.timeout:
            pass
    sys.exit("no answer")
for _ in range(int(sys.argv[5])):
    s.sendto(b"attacker", (sys.argv[3], int(sys.argv[4])))
"""

_COUNT = """
import socket, sys, time
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(0.2)
count, deadline = 0, time.monotonic() + float(sys.argv[3])
while time.monotonic() < deadline:
    try:
        data, peer = s.recvfrom(100)
        s.sendto(data, peer)  # an answer makes the flow established in conntrack
        count += data == b"attacker"
    except socket.timeout:
        pass
print(count)
"""


@pytest.mark.parametrize("family", [4, 6])
def test_a_workload_cannot_inject_into_another_workloads_flow_with_its_source(cluster, family):
    node = cluster.nodes["node1"]
    attacker, victim = node.workloads
    remote = cluster.nodes["node2"].workloads[0]
    for conf in ("all", "default", attacker.interface):  # rp_filter would hide the hole for IPv4
        netns.in_ns(node.netns, "sysctl", "-qw", f"net.ipv4.conf.{conf}.rp_filter=0")
    victim_ip, remote_ip = (victim.ip, remote.ip) if family == 4 else (victim.ipv6, remote.ipv6)
    counter = subprocess.Popen(
        ["ip", "netns", "exec", remote.netns, sys.executable, "-c", _COUNT, remote_ip, str(SPOOF_PORT), "6"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(
            lambda: netns.in_ns(remote.netns, "ss", "-Hlun", f"sport = :{SPOOF_PORT}").stdout.strip(),
            timeout=5,
            what="the counting receiver",
        )
        send = [sys.executable, "-c", _SEND, victim_ip, "40000", remote_ip, str(SPOOF_PORT)]
        netns.in_ns(victim.netns, *send, "answered", timeout=15)  # the victim's own flow, answered: established
        prefix = "32" if family == 4 else "128"
        netns.in_ns(
            attacker.netns,
            "ip",
            "addr",
            "add",
            f"{victim_ip}/{prefix}",
            "dev",
            "eth0",
            *(["nodad"] if family == 6 else []),
        )
        netns.in_ns(attacker.netns, *send, "5", timeout=10)  # five with the victim's source and port
        received = counter.communicate(timeout=15)[0].strip()
    finally:
        if counter.poll() is None:
            counter.kill()
            counter.wait()
    assert received == "0", f"{received} of the attacker's 5 datagrams arrived in the victim's flow"


def _connects(workload, address: str, port: int) -> bool:
    """A TCP handshake from the workload completes (the health server does not echo like the probe)."""
    code = f"import socket; socket.create_connection(({address!r}, {port}), timeout=2).close()"
    return netns.in_ns(workload.netns, sys.executable, "-c", code, check=False, timeout=10).returncode == 0


def test_a_workload_reaches_its_host_only_where_the_operator_allows(cluster):
    a = cluster.nodes["node1"].workloads[0]
    b = cluster.nodes["node2"].workloads[0]
    node1, node2 = cluster.nodes["node1"], cluster.nodes["node2"]
    assert not _connects(a, node1.address, 9099), "felix's metrics must be closed to workloads by default"
    assert _connects(a, node2.address, 9099), "another node's address is not this host: it is policy's business"
    cluster.stop_felix("node2")
    cluster.start_felix("node2", "--endpoint-to-host-allow", "tcp:9099")
    wait_for(lambda: _connects(b, node2.address, 9099), timeout=20, what="the allowed host port")
    assert not _ping(b, node2.address), "only the listed port is open under Drop"


def _ping(workload, address: str) -> bool:
    return netns.in_ns(workload.netns, "ping", "-n", "-q", "-c", "1", "-W", "1", address, check=False).returncode == 0
