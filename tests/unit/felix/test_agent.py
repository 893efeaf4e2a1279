import gc
import json
import threading
import time

import pytest

from felix.agent import Agent
from felix.config import AgentConfig
from felix.kernel import KernelRoute
from policy.datastore.etcd import EtcdSettings
from policy.datastore.store import Ref, ResourceStore, WriteMode
from policy.model.documents import parse_resource
from policy.model.resources import Metadata, WorkloadEndpoint, WorkloadEndpointSpec
from policy.runtime.status import policy_status_key
from tests.fakes import FakeKernel, FakeKV, FakeNft


def wep(name, node="n1", interface="cxa", ips=("198.19.1.1",)):
    return WorkloadEndpoint(
        metadata=Metadata(name=name, namespace="default"),
        spec=WorkloadEndpointSpec(node=node, interfaceName=interface, ipNetworks=list(ips)),
    )


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


@pytest.fixture
def agent_world():
    """An agent on fakes (not started), with everything it talks to; stopped at the end."""
    kv, kernel, nft = FakeKV(), FakeKernel({"cxa": 5, "cxb": 6}), FakeNft()
    config = AgentConfig(node_name="n1", etcd=EtcdSettings(), etcd_prefix="/t", etcd_backoff_max=0.05)
    agent = Agent(config, kv, kernel, nft)
    thread = threading.Thread(target=agent.run, daemon=True)
    yield kv, kernel, nft, agent, thread
    agent.loop.stop()
    thread.join(timeout=5)
    assert not thread.is_alive()


@pytest.fixture
def world(agent_world):
    kv, kernel, _, agent, thread = agent_world
    return kv, kernel, agent, thread


def test_nothing_is_written_before_the_first_full_list(world):
    kv, kernel, agent, thread = world
    kernel.route_table = {KernelRoute("198.19.1.99/32", 5)}  # stale, from before a restart
    kv.set_down(True)
    thread.start()
    time.sleep(0.3)
    assert kernel.writes == [] and not kernel.forwarding and not agent.status.in_sync
    store = ResourceStore(kv, "/t")
    with kv.admin():
        revision = store.write(
            [wep("a"), wep("b", interface="cxb", ips=("198.19.1.2",)), wep("c", node="n2")], WriteMode.CREATE
        )
    kv.set_down(False)
    wait_until(lambda: agent.status.programmed_revision >= revision)
    assert kernel.forwarding
    assert kernel.routes_by_name() == {("198.19.1.1/32", "cxa"), ("198.19.1.2/32", "cxb")}


def test_a_bad_update_to_a_live_endpoint_keeps_its_route_until_a_valid_one_or_a_delete(world):
    kv, kernel, agent, thread = world
    store = ResourceStore(kv, "/t")
    store.write([wep("a"), wep("b", interface="cxb", ips=("198.19.1.2",))], WriteMode.CREATE)
    thread.start()
    wait_until(lambda: len(kernel.route_table) == 2)
    kv.put("/t/v1/workloadendpoints/default/b", b'{"kind": "WorkloadEndpoint", "spec": 7}')
    revision = kv.put("/t/v1/workloadendpoints/default/garbage", b"\xff not json")
    wait_until(lambda: agent.status.programmed_revision >= revision)
    assert kernel.routes_by_name() == {("198.19.1.1/32", "cxa"), ("198.19.1.2/32", "cxb")}
    assert agent.metrics.bad_resources.labels("WorkloadEndpoint")._value.get() == 2
    store.write([wep("b", interface="cxb", ips=("198.19.1.3",))], WriteMode.APPLY)
    wait_until(lambda: ("198.19.1.3/32", "cxb") in kernel.routes_by_name())
    revision = kv.delete("/t/v1/workloadendpoints/default/b")
    wait_until(lambda: agent.status.programmed_revision >= revision)
    assert kernel.routes_by_name() == {("198.19.1.1/32", "cxa")}
    assert thread.is_alive()


def test_changes_follow_in_order_and_report_the_programmed_revision(world):
    kv, kernel, agent, thread = world
    store = ResourceStore(kv, "/t")
    thread.start()
    wait_until(lambda: agent.status.in_sync)
    store.write([wep("a")], WriteMode.CREATE)
    revision = store.write([wep("a", ips=("198.19.1.1", "fd00::1"))], WriteMode.APPLY)
    wait_until(lambda: agent.status.programmed_revision >= revision)
    assert kernel.routes_by_name() == {("198.19.1.1/32", "cxa"), ("fd00::1/128", "cxa")}
    revision = kv.delete("/t/v1/workloadendpoints/default/a")
    wait_until(lambda: agent.status.programmed_revision >= revision)
    assert kernel.route_table == set()


def test_every_key_received_from_etcd_is_counted_once(world):
    kv, _, agent, thread = world
    store = ResourceStore(kv, "/t")
    store.write([wep("a"), wep("b", interface="cxb")], WriteMode.CREATE)
    thread.start()
    wait_until(lambda: agent.status.in_sync)
    changes = lambda: agent.metrics.registry.get_sample_value("calyx_felix_etcd_changes_total")  # noqa: E731
    assert changes() == 2  # the first list
    revision = store.write([wep("c", node="n2"), wep("d", node="n2")], WriteMode.CREATE)
    wait_until(lambda: agent.status.programmed_revision >= revision)
    assert changes() == 4  # the watch: each write once, whichever node it is for


def test_an_unexpected_kernel_error_is_survived_and_retried(world):
    kv, kernel, agent, thread = world
    store = ResourceStore(kv, "/t")
    failures = iter([RuntimeError("netlink surprise")])
    real_add = kernel.add_routes

    def flaky_add(routes):
        for failure in failures:
            raise failure
        return real_add(routes)

    kernel.add_routes = flaky_add
    revision = store.write([wep("a")], WriteMode.CREATE)
    thread.start()
    wait_until(lambda: agent.status.programmed_revision >= revision)
    assert kernel.routes_by_name() == {("198.19.1.1/32", "cxa")}
    assert thread.is_alive()


@pytest.fixture
def policy_world(agent_world):
    kv, _, nft, agent, thread = agent_world
    return kv, nft, agent, thread


DENY_POLICY = {
    "apiVersion": "calyx.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "deny", "namespace": "default"},
    "spec": {"selector": "all()", "types": ["Ingress"]},
}


def test_no_nftables_write_before_the_first_full_list_then_one_transaction(policy_world):
    kv, nft, agent, thread = policy_world
    kv.set_down(True)
    thread.start()
    time.sleep(0.3)
    assert nft.transactions == []
    with kv.admin():
        store = ResourceStore(kv, "/t")
        revision = store.write([wep("a"), parse_resource(DENY_POLICY)], WriteMode.CREATE)
    kv.set_down(False)
    wait_until(lambda: agent.status.programmed_revision >= revision)
    assert len(nft.transactions) == 1 and nft.maps["to-wl"]["cxa"].startswith("ep-in-")
    assert any(name.startswith("pol-in-") for name in nft.chains)


def test_bad_policy_data_keeps_the_last_good_version(policy_world):
    kv, nft, agent, thread = policy_world
    store = ResourceStore(kv, "/t")
    store.write([wep("a"), parse_resource(DENY_POLICY)], WriteMode.CREATE)
    thread.start()
    wait_until(lambda: agent.status.programmed_revision > 0)
    chains = dict(nft.chains)
    revision = kv.put("/t/v1/networkpolicies/default/deny", b'{"kind": "NetworkPolicy", "spec": {"selector": "(("}}')
    wait_until(lambda: agent.status.programmed_revision >= revision)
    assert nft.chains == chains  # still denying: dropping the policy would have opened traffic
    assert agent.metrics.bad_resources.labels("NetworkPolicy")._value.get() == 1


def test_a_policy_the_kernel_refuses_fails_closed_and_is_reported(policy_world):
    kv, nft, agent, thread = policy_world
    store = ResourceStore(kv, "/t")
    store.write([wep("a")], WriteMode.CREATE)
    thread.start()
    wait_until(lambda: agent.status.programmed_revision > 0)
    allow = {
        **DENY_POLICY,
        "metadata": {"name": "allow", "namespace": "default"},
        "spec": {"selector": "all()", "ingress": [{"action": "Allow"}]},
    }
    nft.refuse_next = 1
    revision = store.write([parse_resource(allow)], WriteMode.CREATE)
    wait_until(lambda: agent.status.programmed_revision >= revision)
    policy_chains = [rules for name, rules in nft.chains.items() if name.startswith("pol-in-")]
    assert policy_chains == [[[{"drop": None}]]]
    status = json.loads(kv.get(policy_status_key("/t", "n1")).value)
    assert (
        list(status) == ["/t/v1/networkpolicies/default/allow"]
        and "refused" in status["/t/v1/networkpolicies/default/allow"]
    )


def test_a_newer_endpoint_claiming_a_running_workloads_address_gets_nothing_and_is_reported(agent_world):
    kv, kernel, nft, agent, thread = agent_world
    store = ResourceStore(kv, "/t")
    store.write([wep("zz-old", interface="cxb")], WriteMode.CREATE)
    thread.start()
    wait_until(lambda: kernel.routes_by_name() == {("198.19.1.1/32", "cxb")})
    revision = store.write([wep("aa-new", interface="cxa", ips=("198.19.1.1", "198.19.1.2"))], WriteMode.CREATE)
    wait_until(lambda: agent.status.programmed_revision >= revision)
    assert kernel.routes_by_name() == {("198.19.1.1/32", "cxb"), ("198.19.1.2/32", "cxa")}
    sources = {json.loads(e)["concat"][1] + "@" + json.loads(e)["concat"][0] for e in nft.sets["wl-src4"]}
    assert sources == {"198.19.1.1@cxb", "198.19.1.2@cxa"}  # the newcomer may not send as the old one
    status = json.loads(kv.get(policy_status_key("/t", "n1")).value)
    assert status == {
        "/t/v1/workloadendpoints/default/aa-new": "address conflict: 198.19.1.1/32 is held by "
        "/t/v1/workloadendpoints/default/zz-old"
    }
    assert agent.metrics.ip_conflicts._value.get() == 1
    revision = store.delete([Ref(WorkloadEndpoint, "zz-old", "default")])
    wait_until(lambda: agent.status.programmed_revision >= revision)
    assert kernel.routes_by_name() == {("198.19.1.1/32", "cxa"), ("198.19.1.2/32", "cxa")}
    assert kv.get(policy_status_key("/t", "n1")) is None  # the conflict is over


def test_the_agent_keeps_a_projection_of_local_endpoints_never_the_decoded_resource(world):
    """10,000 decoded WorkloadEndpoints were ~4 KiB each of felix's heap: only what routes and
    policy use is kept, one object shared by both."""
    kv, kernel, agent, thread = world
    store = ResourceStore(kv, "/t")
    revision = store.write([wep("kept-a"), wep("kept-b", interface="cxb", ips=("198.19.1.2",))], WriteMode.CREATE)
    thread.start()
    wait_until(lambda: agent.status.programmed_revision >= revision)
    gc.unfreeze()  # the first sync froze what it built: out of get_objects()' sight
    gc.collect()
    held = [o for o in gc.get_objects() if isinstance(o, WorkloadEndpoint) and o.name.startswith("kept-")]
    assert held == []
    assert kernel.routes_by_name() == {("198.19.1.1/32", "cxa"), ("198.19.1.2/32", "cxb")}
