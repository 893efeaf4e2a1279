"""What the agent does to routes over its life: removal, sweeping, restarts, late interfaces."""

import time

import pytest

from policy.datastore.keys import resource_key
from policy.datastore.store import Ref, WriteMode
from policy.model.resources import WorkloadEndpoint
from tests.lab import netns
from tests.lab.processes import Daemon, wait_for
from tests.lab.traffic import ping, start_echo_servers, tcp

pytestmark = pytest.mark.integration


def expected_routes(workloads) -> set[tuple[str, str]]:
    return {(f"{w.ip}/32", w.interface) for w in workloads} | {(f"{w.ipv6}/128", w.interface) for w in workloads}


def test_deleting_an_endpoint_removes_its_route_and_leaves_foreign_routes(cluster):
    node = cluster.nodes["node1"]
    a, b = node.workloads
    netns.in_ns(node.netns, "ip", "route", "add", "198.19.1.200/32", "dev", a.interface, "proto", "static")
    netns.in_ns(
        node.netns, "ip", "route", "add", "blackhole", "198.19.1.64/26", "proto", "76"
    )  # an IPAM block: not felix's
    revision = cluster.store.delete([Ref(WorkloadEndpoint, a.name, a.namespace)])
    cluster.wait_programmed("node1", revision)
    assert cluster.kernel_routes("node1") == expected_routes([b])
    # A restart forces a full sweep; it still leaves the foreign and the blackhole route alone.
    cluster.stop_felix("node1")
    cluster.start_felix("node1")
    cluster.wait_programmed("node1", revision)
    routes = netns.in_ns(node.netns, "ip", "route", "show").stdout
    assert f"198.19.1.200 dev {a.interface} proto static" in routes
    assert "blackhole 198.19.1.64/26 proto 76" in routes
    assert not ping(b, a.ip)


def test_kill9_keeps_traffic_flowing_and_restart_sweeps_only_the_stale_route(cluster):
    node = cluster.nodes["node1"]
    a, b = node.workloads
    remote = cluster.nodes["node2"].workloads[0]
    start_echo_servers(cluster)
    monitor = Daemon("route-monitor", ["ip", "-n", node.netns, "monitor", "route"], cluster.dir / "monitor.log").start()
    cluster.daemons.append(monitor)
    try:
        node.felix.kill9()
        assert cluster.kernel_routes("node1") == expected_routes([a, b])
        assert ping(a, b.ip) and tcp(a, remote.ip) and tcp(remote, b.ip)
        revision = cluster.store.delete([Ref(WorkloadEndpoint, b.name, b.namespace)])
        time.sleep(0.5)
        assert cluster.kernel_routes("node1") == expected_routes([a, b]), "nothing may change while felix is down"
        cluster.daemons.remove(node.felix)
        cluster.start_felix("node1")
        cluster.wait_programmed("node1", revision, timeout=15)
        assert cluster.kernel_routes("node1") == expected_routes([a])
        assert tcp(a, remote.ip) and tcp(remote, a.ip)
    finally:
        monitor.stop()
    deleted = [line for line in monitor.log_path.read_text().splitlines() if line.startswith("Deleted")]
    assert deleted and all(b.ip in line or b.ipv6 in line for line in deleted), deleted


def test_etcd_restart_and_compaction_past_the_agent_converge_within_5s(cluster):
    node = cluster.nodes["node1"]
    a, b = node.workloads
    c = cluster.add_workload("node1", "node1-c")
    cluster.restart_etcd(local_only=True)  # etcd is back, but the nodes cannot reach it...
    b_key = resource_key(cluster.prefix, WorkloadEndpoint, b.name, b.namespace)
    cluster.etcdctl("del", b_key)
    moved = a.endpoint(networks=[f"{a.ip}/32"])  # a loses its IPv6 address
    for workload, endpoint in ((a, moved), (c, c.endpoint())):
        key = resource_key(cluster.prefix, WorkloadEndpoint, workload.name, workload.namespace)
        from policy.datastore.store import encode

        cluster.etcdctl("put", key, encode(endpoint).decode())
    revision = int(__import__("json").loads(cluster.etcdctl("get", key, "-w", "json"))["header"]["revision"])
    cluster.etcdctl("compact", str(revision))  # ...and history the agent would need is gone
    cluster.restart_etcd()
    started = time.monotonic()
    wanted = {(f"{a.ip}/32", a.interface)} | expected_routes([c])
    wait_for(
        lambda: cluster.kernel_routes("node1") == wanted,
        timeout=5,
        interval=0.05,
        what=lambda: f"node1 to converge: want {sorted(wanted)}, kernel has {sorted(cluster.kernel_routes('node1'))}",
    )
    elapsed = time.monotonic() - started
    stored, _ = cluster.store.list_kind(WorkloadEndpoint)
    from_etcd = {(n, e.spec.interfaceName) for e in stored if e.spec.node == "node1" for n in e.spec.ipNetworks}
    assert cluster.kernel_routes("node1") == from_etcd == wanted
    print(f"converged {elapsed:.2f}s after etcd came back")


def test_endpoint_before_its_interface_and_interface_that_goes_away(lab_factory):
    lab = lab_factory(nodes=1)
    peer = lab.add_workload("node1", "peer")
    late = lab.add_workload("node1", "late", attach=False)
    revision = lab.store.write([peer.endpoint(), late.endpoint()], WriteMode.CREATE)
    lab.start_felix("node1")
    lab.wait_programmed("node1", revision, timeout=20)
    assert lab.kernel_routes("node1") == expected_routes([peer])
    lab.attach(late)
    wait_for(
        lambda: lab.kernel_routes("node1") == expected_routes([peer, late]),
        timeout=3,
        what="route on the late interface",
    )
    assert ping(peer, late.ip) and ping(late, peer.ip)
    lab.remove_workload_interface(late)
    wait_for(
        lambda: lab.kernel_routes("node1") == expected_routes([peer]),
        timeout=3,
        what="routes of the removed interface to go",
    )
    lab.attach(late)
    wait_for(
        lambda: lab.kernel_routes("node1") == expected_routes([peer, late]), timeout=3, what="route after re-attach"
    )
    assert lab.felix_status("node1")["pending"] is False
    log = lab.nodes["node1"].felix.log_path.read_text()
    assert "Traceback" not in log and "failed" not in log, log
