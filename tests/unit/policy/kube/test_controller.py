"""The controller end to end in one process: the test API server (127.0.0.1) and a fake etcd."""

import json

from policy.datastore.keys import kind_prefix, resource_key
from policy.model.policies import NetworkPolicy, Profile
from policy.model.resources import Namespace, Node, WorkloadEndpoint
from tests.lab.processes import wait_for
from tests.unit.policy.kube.conftest import PREFIX, endpoint, pod

DENY = {"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"]}


def stored(kv, model, name, namespace=None):
    item = kv.data.get(resource_key(PREFIX, model, name, namespace))
    return json.loads(item.value) if item else None


def seed(api):
    api.store.create("namespaces", {"metadata": {"name": "x", "labels": {"ns": "x"}}})
    api.store.create("serviceaccounts", {"metadata": {"name": "default", "namespace": "x", "labels": {"team": "t"}}})
    api.store.create("nodes", {"metadata": {"name": "node1"}})
    api.store.create("pods", pod("a", "x", {"pod": "a"}))
    return api.store.create("networkpolicies", {"metadata": {"name": "deny", "namespace": "x"}, "spec": DENY})


def writes(kv) -> int:
    """Revisions etcd has moved by: one per committed transaction."""
    return kv.revision


def test_kubernetes_objects_become_calyx_resources(harness):
    seed(harness.api)
    harness.add_endpoint(endpoint("a", "x", labels={"stale": "yes"}))
    harness.start()
    namespace = stored(harness.kv, Namespace, "x")
    assert namespace["metadata"]["labels"] == {"ns": "x", "kubernetes.io/metadata.name": "x"}
    policy = stored(harness.kv, NetworkPolicy, "knp.default.deny", "x")
    assert policy["spec"]["selector"] == "pod == 'a'" and policy["spec"]["types"] == ["Ingress"]
    profile = stored(harness.kv, Profile, "ksa.x.default")
    assert profile["spec"]["labelsToApply"] == {"pcsa.team": "t", "pcsa.projectcalico.org/name": "default"}
    wep = stored(harness.kv, WorkloadEndpoint, "node1-k8s-a-eth0", "x")
    assert wep["metadata"]["labels"] == {"pod": "a"}
    assert wep["spec"]["serviceAccountName"] == "default" and wep["spec"]["profiles"] == ["ksa.x.default"]


def test_nothing_is_written_before_every_kind_is_listed(harness):
    seed(harness.api)
    harness.add_endpoint(endpoint("a", "x"))
    before = writes(harness.kv)
    controller = harness.start()
    controller.loop.stop()
    harness.stop()
    # A controller that has only heard of etcd writes nothing.
    from policy.kube.controller import KubeControllers

    fresh = KubeControllers(harness.config, harness.kv, harness.controller._source)
    from policy.datastore.watch import SyncBatch

    fresh.handle(SyncBatch([], harness.kv.revision, complete=True))
    revision = harness.kv.revision
    fresh.reconcile()
    assert harness.kv.revision == revision and fresh.status["ready"] is False
    assert before < revision  # the first controller did write


def test_a_pod_label_change_reaches_its_endpoint_and_nothing_else(harness):
    seed(harness.api)
    harness.add_endpoint(endpoint("a", "x"))
    harness.add_endpoint(endpoint("b", "x", ip="10.0.0.2"))  # a pod not listed: left as the CNI wrote it
    harness.start()
    before = writes(harness.kv)
    changed = harness.api.store.patch("pods", "x", "a", {"metadata": {"labels": {"pod": "a", "tier": "web"}}})
    harness.wait_handled("pods", changed["metadata"]["resourceVersion"])
    assert stored(harness.kv, WorkloadEndpoint, "node1-k8s-a-eth0", "x")["metadata"]["labels"] == {
        "pod": "a",
        "tier": "web",
    }
    assert stored(harness.kv, WorkloadEndpoint, "node1-k8s-b-eth0", "x")["metadata"]["labels"] == {}
    assert writes(harness.kv) == before + 1


def test_policies_follow_create_update_delete(harness):
    seed(harness.api)
    harness.start()
    allow = {"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}
    changed = harness.api.store.update(
        "networkpolicies", {"metadata": {"name": "deny", "namespace": "x"}, "spec": allow}
    )
    harness.wait_handled("networkpolicies", changed["metadata"]["resourceVersion"])
    assert stored(harness.kv, NetworkPolicy, "knp.default.deny", "x")["spec"]["selector"] == "all()"
    gone = harness.api.store.delete("networkpolicies", "x", "deny")
    harness.wait_handled("networkpolicies", gone["metadata"]["resourceVersion"])
    assert stored(harness.kv, NetworkPolicy, "knp.default.deny", "x") is None


def test_policies_not_converted_from_kubernetes_are_left_alone(harness):
    seed(harness.api)
    own = NetworkPolicy.model_validate(
        {"metadata": {"name": "mine", "namespace": "x"}, "spec": {"selector": "all()", "types": ["Ingress"]}}
    )
    harness.store.write([own], __import__("policy.datastore.store", fromlist=["WriteMode"]).WriteMode.CREATE)
    harness.start()
    assert stored(harness.kv, NetworkPolicy, "mine", "x") is not None


def test_restart_rewrites_nothing(harness, tmp_path):
    seed(harness.api)
    harness.add_endpoint(endpoint("a", "x"))
    harness.start()
    harness.stop()
    before = writes(harness.kv)
    harness.start()
    status = harness.wait_ready()
    assert writes(harness.kv) == before, status


def test_an_expired_watch_relists_and_applies_only_the_difference(harness):
    seed(harness.api)
    harness.add_endpoint(endpoint("a", "x"))
    controller = harness.start()
    before = writes(harness.kv)
    harness.api.store.expire()  # every open watch ends; their versions are now too old
    changed = harness.api.store.patch("namespaces", None, "x", {"metadata": {"labels": {"ns": "x", "env": "prod"}}})
    harness.wait_handled("namespaces", changed["metadata"]["resourceVersion"])
    version = int(changed["metadata"]["resourceVersion"])
    wait_for(lambda: all(int(controller.status["resourceVersions"][r]) >= version for r in ("pods", "nodes")), 10)
    expired = [s for s in controller.metrics.relists.collect()[0].samples if s.labels.get("reason") == "expired"]
    assert sum(s.value for s in expired if s.name.endswith("_total")) >= 5  # every kind listed again
    assert stored(harness.kv, Namespace, "x")["metadata"]["labels"]["env"] == "prod"
    assert writes(harness.kv) == before + 1  # only the namespace


def test_a_deleted_namespace_and_service_account_are_removed(harness):
    seed(harness.api)
    harness.start()
    harness.api.store.delete("serviceaccounts", "x", "default")
    gone = harness.api.store.delete("namespaces", None, "x")
    harness.wait_handled("namespaces", gone["metadata"]["resourceVersion"])
    harness.wait_handled("serviceaccounts", gone["metadata"]["resourceVersion"])
    assert stored(harness.kv, Namespace, "x") is None and stored(harness.kv, Profile, "ksa.x.default") is None


def test_a_policy_that_cannot_be_converted_fails_closed_and_is_reported(harness):
    seed(harness.api)
    bad = {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [{"ipBlock": {"cidr": "nonsense"}}]}]}
    created = harness.api.store.create("networkpolicies", {"metadata": {"name": "bad", "namespace": "x"}, "spec": bad})
    controller = harness.start()
    harness.wait_handled("networkpolicies", created["metadata"]["resourceVersion"])
    policy = stored(harness.kv, NetworkPolicy, "knp.default.bad", "x")
    assert policy["spec"] == {
        "order": 1000.0,
        "selector": "pod == 'a'",
        "types": ["Ingress", "Egress"],
        "ingress": [],
        "egress": [],
        "tier": "default",
    }
    assert "cidr" in policy["metadata"]["annotations"]["calyx.io/conversion-error"]
    events = wait_for(lambda: list(harness.api.store.objects["events"].values()), 5)
    assert events[0]["involvedObject"]["name"] == "bad" and events[0]["type"] == "Warning"
    assert controller.metrics.bad_objects.labels("NetworkPolicy")._value.get() == 1
    # Fixed: the converted policy replaces the placeholder.
    fixed = harness.api.store.patch(
        "networkpolicies", "x", "bad", {"spec": {"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]}}
    )
    harness.wait_handled("networkpolicies", fixed["metadata"]["resourceVersion"])
    assert stored(harness.kv, NetworkPolicy, "knp.default.bad", "x")["spec"]["ingress"][0]["source"]["nets"] == [
        "10.0.0.0/8"
    ]


def test_a_bad_update_keeps_the_last_good_version(harness):
    seed(harness.api)
    harness.add_endpoint(endpoint("a", "x"))
    controller = harness.start()
    before = writes(harness.kv)
    changed = harness.api.store.patch("pods", "x", "a", {"metadata": {"labels": {"pod": "-not a label-"}}})
    harness.wait_handled("pods", changed["metadata"]["resourceVersion"])
    assert stored(harness.kv, WorkloadEndpoint, "node1-k8s-a-eth0", "x")["metadata"]["labels"] == {"pod": "a"}
    assert writes(harness.kv) == before and controller.metrics.bad_objects.labels("Pod")._value.get() == 1
    assert controller.loop.liveness()[0]


def test_a_deleted_kubernetes_node_removes_its_calyx_node(harness):
    seed(harness.api)
    node = Node.model_validate({"metadata": {"name": "node1"}})
    gone = Node.model_validate({"metadata": {"name": "node2"}})
    other = Node.model_validate({"metadata": {"name": "metal"}, "spec": {"orchRefs": [{"orchestrator": "bare"}]}})
    from policy.datastore.store import WriteMode

    harness.store.write([node, gone, other], WriteMode.CREATE)
    harness.start()
    names = {k.rsplit("/", 1)[1] for k in harness.kv.data if k.startswith(kind_prefix(PREFIX, Node))}
    assert names == {"node1", "metal"}


def test_compaction_keeps_one_interval_of_history(tmp_path):
    from tests.unit.policy.kube.conftest import Harness

    harness = Harness(tmp_path, compaction_interval=1.0)
    try:
        seed(harness.api)
        harness.start()
        first = harness.kv.revision
        wait_for(lambda: harness.kv.compacted > 0, 5, what="a compaction")
        assert harness.kv.compacted <= first  # to what was current an interval before, never to now
    finally:
        harness.close()
