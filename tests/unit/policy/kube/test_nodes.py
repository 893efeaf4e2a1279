"""A deleted node's addresses: released after the grace period and a fresh re-check, never one a
live pod holds, never while a pod is listed on the node, a handle whole or not at all."""

import pytest

from policy.datastore.ipam import IPAM
from policy.datastore.store import ResourceStore, WriteMode
from policy.kube.client import KubeClient, api_client
from policy.kube.nodes import NodeReleaser, endpoint_ref, live_pods, plan_release
from policy.model.documents import parse_resource
from tests.fakes import FakeKV
from tests.lab.kube_api import KubeAPIServer
from tests.unit.policy.kube.conftest import PREFIX, endpoint, pod

POOL = {"apiVersion": "calyx.io/v1", "kind": "IPPool", "metadata": {"name": "p"}}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def world(tmp_path):
    """IPAM with two nodes' blocks in a fake etcd; the API server lists node1 only."""
    api = KubeAPIServer().start()
    kv = FakeKV()
    store = ResourceStore(kv, PREFIX)
    store.write([parse_resource({**POOL, "spec": {"cidr": "10.1.0.0/24", "blockSize": 28}})], WriteMode.CREATE)
    ipam = IPAM(kv, PREFIX, sleep=lambda s: None)
    gone_a = ipam.allocate("node2", "net.pod-a")  # 10.1.0.0, node2's block
    gone_b = ipam.allocate("node2", "net.pod-b")  # 10.1.0.1
    kept = ipam.allocate("node1", "net.pod-c")  # 10.1.0.16, node1's block
    store.write(
        [endpoint("a", "x", node="node2", ip=gone_a), endpoint("b", "x", node="node2", ip=gone_b)], WriteMode.CREATE
    )
    api.store.create("nodes", {"metadata": {"name": "node1"}})
    api.store.create("pods", pod("c", "x", {}, node="node1", ip=kept))
    clock = Clock()
    releaser = NodeReleaser(
        KubeClient(api_client(api.write_kubeconfig(tmp_path / "kc"))), kv, PREFIX, 60.0, 10.0, clock
    )
    yield api, kv, ipam, releaser, clock
    api.stop()


def allocated(ipam: IPAM) -> set[str]:
    return {b.address(o) for b in ipam.blocks() for o in b.allocations}


def test_nothing_is_released_before_the_grace_period(world):
    api, kv, ipam, releaser, clock = world
    releaser.observe({"node2"})
    clock.now += 59
    assert releaser.run_due() == [] and allocated(ipam) == {"10.1.0.0", "10.1.0.1", "10.1.0.16"}
    clock.now += 2
    [plan] = releaser.run_due()
    assert plan.handles == ["net.pod-a", "net.pod-b"] and allocated(ipam) == {"10.1.0.16"}
    assert {b.cidr for b in ipam.blocks()} == {"10.1.0.16/28"}  # node2's empty block is gone
    assert not [k for k in kv.data if "/workloadendpoints/" in k]  # and its endpoints
    assert releaser.pending == {}


def test_nothing_is_released_while_a_pod_is_listed_on_the_node(world):
    api, kv, ipam, releaser, clock = world
    api.store.create("pods", pod("a", "x", {}, node="node2", ip="10.1.0.0"))
    releaser.observe({"node2"})
    clock.now += 61
    [plan] = releaser.run_due()
    assert plan.deferred and allocated(ipam) == {"10.1.0.0", "10.1.0.1", "10.1.0.16"}
    clock.now += 5
    assert releaser.run_due() == []  # looked at again only after the re-check interval
    api.store.delete("pods", "x", "a")
    clock.now += 5
    [plan] = releaser.run_due()
    assert not plan.deferred and allocated(ipam) == {"10.1.0.16"}


def test_a_node_that_comes_back_keeps_everything(world):
    api, kv, ipam, releaser, clock = world
    releaser.observe({"node2"})
    api.store.create("nodes", {"metadata": {"name": "node2"}})  # the held state has not seen it yet
    clock.now += 61
    [plan] = releaser.run_due()
    assert plan.deferred == "the node is listed again" and allocated(ipam) == {"10.1.0.0", "10.1.0.1", "10.1.0.16"}
    assert releaser.pending == {}


def test_a_node_seen_again_before_the_grace_period_is_forgotten(world):
    api, kv, ipam, releaser, clock = world
    releaser.observe({"node2"})
    releaser.observe(set())
    clock.now += 61
    assert releaser.run_due() == [] and releaser.pending == {}


def test_an_address_a_live_pod_holds_is_kept_and_its_block_only_loses_its_affinity(world):
    api, kv, ipam, releaser, clock = world
    api.store.create("pods", pod("moved", "y", {}, node="node1", ip="10.1.0.1"))  # lives on elsewhere
    releaser.observe({"node2"})
    clock.now += 61
    [plan] = releaser.run_due()
    assert plan.kept == ["10.1.0.1"] and allocated(ipam) == {"10.1.0.1", "10.1.0.16"}
    node2_block = next(b for b in ipam.blocks() if b.cidr == "10.1.0.0/28")
    assert node2_block.affinity is None


def test_a_handle_is_released_whole_or_not_at_all():
    from policy.datastore.ipam import Block, Handle

    blocks = [Block("10.1.0.0/28", "p", "node2", {0: "h", 1: "h"})]
    handles = {"h": Handle("h", ["10.1.0.0", "10.1.0.1"])}
    live = live_pods([pod("p", "x", {}, node="node1", ip="10.1.0.1")])
    plan = plan_release("node2", blocks, handles, {}, live)
    assert plan.handles == [] and plan.kept == ["10.1.0.0", "10.1.0.1"]


def test_live_pods_are_read_leniently():
    live = live_pods(
        [
            pod("a", "x", {"bad label!": "v"}, node="n1", ip="fd00:0::1"),
            {"metadata": {"name": "done", "namespace": "x"}, "status": {"phase": "Failed", "podIP": "10.0.0.9"}},
            {"junk": True},
        ]
    )
    assert live.ips == {"fd00::1"} and live.pods == {("x", "a")} and live.on_node == {"n1": 1}


def test_endpoint_refs_are_read_from_any_bytes():
    assert endpoint_ref(b"not json") is None and endpoint_ref(b"[]") is None
    ref = endpoint_ref(endpoint("a", "x", node="n2").model_dump_json().encode())
    assert (ref.namespace, ref.pod, ref.node, ref.kubernetes) == ("x", "a", "n2", True)
