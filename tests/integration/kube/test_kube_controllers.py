"""calyx-kube-controllers with real packets: label changes enforced within a second (measured),
a restart and an expired watch change nothing, a deleted node's addresses come back only after
the grace period and never while a pod is listed on it."""

import json
import time

import pytest

from policy.datastore.ipam import IPAM
from policy.datastore.keys import kind_prefix
from policy.datastore.store import WriteMode
from policy.model.documents import parse_resource
from policy.model.names import host_interface_name
from policy.model.resources import Node, WorkloadEndpoint
from tests.integration.kube.conftest import GRACE
from tests.integration.policy.test_network_policy import knp
from tests.lab.kube_lab import measured, pod_object
from tests.lab.netpol import Reachability
from tests.lab.processes import wait_for

pytestmark = pytest.mark.integration

ALLOW_FROM_B = knp(
    "allow-b",
    "x",
    "  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]\n",
)
ALLOW_FROM_PROD = knp(
    "allow-prod",
    "x",
    "  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {env: prod}}}]}]\n",
)


def enforced_after(netpol, change) -> float:
    """Seconds from a change at the API server to both felixes having programmed its result."""
    kube, lab = netpol.kube, netpol.lab

    def programmed() -> bool:
        resource, version = change.result
        revision = kube.handled(resource, version, timeout=5)
        return all(lab.felix_status(n)["programmedRevision"] >= revision for n in lab.nodes)

    return measured(change, programmed)


class Change:
    def __init__(self, run):
        self.run, self.result = run, None

    def __call__(self):
        self.result = self.run()


def test_a_pod_label_change_is_enforced_within_a_second(netpol):
    netpol.apply(ALLOW_FROM_B)
    api = netpol.kube.api.store

    def relabel_c_as_b():
        current = api.get("pods", "x", "c")
        current["metadata"]["labels"] = {"pod": "b"}
        return "pods", api.update("pods", current, "x")["metadata"]["resourceVersion"]

    seconds = enforced_after(netpol, Change(relabel_c_as_b))
    print(f"pod label change -> enforced on both nodes: {seconds * 1000:.0f} ms")
    assert seconds < 1.0
    Reachability(True).ingress("x/a", False).expect("x/b", "x/a", True).expect("x/c", "x/a", True).check(
        netpol.matrix(80, "tcp"), "x/c relabelled pod=b at the API server"
    )


def test_a_namespace_label_change_is_enforced_within_a_second(netpol):
    netpol.apply(ALLOW_FROM_PROD)
    Reachability(True).ingress("x/a", False).check(netpol.matrix(80, "tcp"), "no namespace is prod")
    seconds = enforced_after(
        netpol, Change(lambda: ("namespaces", netpol.relabel_namespace("y", {"ns": "y", "env": "prod"})))
    )
    print(f"namespace label change -> enforced on both nodes: {seconds * 1000:.0f} ms")
    assert seconds < 1.0
    expected = Reachability(True).ingress("x/a", False)
    for pod in ("y/a", "y/b", "y/c"):
        expected.expect(pod, "x/a", True)
    expected.check(netpol.matrix(80, "tcp"), "y labelled env=prod at the API server")


def etcd_state(netpol) -> dict[str, bytes]:
    return {item.key: item.value for page, _ in netpol.lab.kv.pages(netpol.lab.prefix + "/v1/") for item in page}


def test_a_restart_and_an_expired_watch_rewrite_nothing_and_leave_the_exact_state(netpol):
    netpol.apply(ALLOW_FROM_B)
    before, revision = etcd_state(netpol), netpol.etcd_revision()
    netpol.kube.stop()
    netpol.kube.start()
    time.sleep(1.0)  # a restarted controller that meant to write would have by now
    assert netpol.etcd_revision() == revision, "the restart rewrote something"
    netpol.kube.api.store.expire()  # every watch ends; its version is now too old: 410, list again
    version = netpol.kube.api.store.version
    for resource in ("pods", "namespaces", "networkpolicies", "serviceaccounts", "nodes"):
        netpol.kube.handled(resource, version)
    assert netpol.etcd_revision() == revision, "the re-list after 410 rewrote something"
    assert etcd_state(netpol) == before
    wep = json.loads(before[next(k for k in before if k.endswith("/workloadendpoints/x/" + netpol.pods["x/c"].name))])
    assert wep["metadata"]["labels"] == {"pod": "c"} and wep["spec"]["profiles"] == ["ksa.x.default"]
    Reachability(True).ingress("x/a", False).expect("x/b", "x/a", True).check(netpol.matrix(80, "tcp"), "after 410")
    netpol.relabel("x/c", {"pod": "b"})  # and the next change still flows
    Reachability(True).ingress("x/a", False).expect("x/b", "x/a", True).expect("x/c", "x/a", True).check(
        netpol.matrix(80, "tcp"), "a change after the 410"
    )


def test_a_deleted_nodes_addresses_are_released_after_the_grace_period_never_while_a_pod_is_listed(netpol):
    lab, api = netpol.lab, netpol.kube.api.store
    pool = {"apiVersion": "calyx.io/v1", "kind": "IPPool", "metadata": {"name": "node3-pool"}}
    lab.store.write([parse_resource({**pool, "spec": {"cidr": "198.19.30.0/24", "blockSize": 28}})], WriteMode.APPLY)
    ipam = IPAM(lab.kv, lab.prefix)
    held, freed = ipam.allocate("node3", "k8s-pod-network.c1"), ipam.allocate("node3", "k8s-pod-network.c2")
    node3 = parse_resource({"apiVersion": "calyx.io/v1", "kind": "Node", "metadata": {"name": "node3"}})
    lab.store.write([node3], WriteMode.APPLY)
    endpoints = []
    for name, address in (("held", held), ("freed", freed)):
        wep = WorkloadEndpoint.model_validate(
            {
                "metadata": {"name": f"node3-k8s-{name}-eth0", "namespace": "z"},
                "spec": {
                    "node": "node3",
                    "interfaceName": host_interface_name("z", name),
                    "orchestrator": "k8s",
                    "pod": name,
                    "workload": name,
                    "ipNetworks": [f"{address}/32"],
                },
            }
        )
        endpoints.append(wep)
    lab.store.write(endpoints, WriteMode.APPLY)
    api.create("nodes", {"metadata": {"name": "node3"}})
    api.create("pods", pod_object("held", "z", "node3", [held], {"pod": "held"}))
    netpol.kube.handled("pods", api.version)

    def allocated() -> set[str]:
        return {b.address(o) for b in ipam.blocks() for o in b.allocations}

    deleted_at = time.monotonic()
    gone = api.delete("nodes", None, "node3")
    netpol.kube.handled("nodes", gone["metadata"]["resourceVersion"])
    assert not lab.kv.get(kind_prefix(lab.prefix, Node) + "node3"), "the Node resource goes at once"
    assert allocated() >= {held, freed}
    time.sleep(GRACE + 2.0)  # past the grace period: a pod is still listed on node3
    assert allocated() >= {held, freed} and netpol.kube.status()["pendingNodeReleases"] == ["node3"]
    api.delete("pods", "z", "held")
    wait_for(lambda: not allocated() & {held, freed}, 10, what="node3's addresses released")
    assert time.monotonic() - deleted_at >= GRACE
    assert not [k for k in etcd_state(netpol) if "/workloadendpoints/z/node3-" in k]
    assert netpol.kube.status()["pendingNodeReleases"] == []


def test_a_second_deleted_node_waits_out_its_own_grace_period(netpol):
    lab, api = netpol.lab, netpol.kube.api.store
    pool = {"apiVersion": "calyx.io/v1", "kind": "IPPool", "metadata": {"name": "node4-pool"}}
    lab.store.write([parse_resource({**pool, "spec": {"cidr": "198.19.40.0/24", "blockSize": 28}})], WriteMode.APPLY)
    ipam = IPAM(lab.kv, lab.prefix)
    address = ipam.allocate("node4", "k8s-pod-network.c4")
    api.create("nodes", {"metadata": {"name": "node4"}})
    netpol.kube.handled("nodes", api.version)
    gone = api.delete("nodes", None, "node4")
    deleted_at = time.monotonic()
    netpol.kube.handled("nodes", gone["metadata"]["resourceVersion"])

    def allocated() -> set[str]:
        return {b.address(o) for b in ipam.blocks() for o in b.allocations}

    while time.monotonic() - deleted_at < GRACE - 0.5:
        assert address in allocated(), f"released {time.monotonic() - deleted_at:.1f}s after the node went"
        time.sleep(0.2)
    wait_for(lambda: address not in allocated(), GRACE + 5, what="node4's address released")
