"""Every call calyx-kube-controllers and the CNI plugin make, as the test API server recorded it,
is one the ClusterRoles in manifests/ grant their service accounts (and the roles grant no verb
that nothing calls)."""

import json
from pathlib import Path

import yaml

from felix.cni.config import parse_netconf
from felix.cni.identity import Workload
from felix.cni.kube import pod_info
from policy.kube.client import USER_AGENT
from tests.lab.kube_api import Call
from tests.lab.processes import wait_for
from tests.unit.policy.kube.conftest import Harness, endpoint, pod

MANIFEST = Path(__file__).resolve().parents[4] / "manifests" / "calyx.yaml"


def granted(role: str) -> set[tuple[str, str, str]]:
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    [found] = [d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == role]
    return {
        (group, resource, verb)
        for rule in found["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def asked(calls: list[Call]) -> set[tuple[str, str, str]]:
    return {(c.group, c.resource, c.verb) for c in calls}


def test_every_call_of_the_controller_is_granted(tmp_path):
    harness = Harness(tmp_path, node_release_grace=1.0, node_recheck_interval=1.0)
    try:
        api = harness.api
        api.store.create("namespaces", {"metadata": {"name": "x"}})
        api.store.create("nodes", {"metadata": {"name": "node1"}})
        api.store.create("pods", pod("a", "x", {}, node="node2"))
        harness.add_endpoint(endpoint("a", "x", node="node2"))  # node2 is gone: a release re-lists
        bad = {"podSelector": 1}  # reported as an Event
        api.store.create("networkpolicies", {"metadata": {"name": "bad", "namespace": "x"}, "spec": bad})
        controller = harness.start()
        wait_for(lambda: api.store.objects["events"], 5, what="an Event")
        wait_for(lambda: len([c for c in api.calls if c.resource == "pods" and c.verb == "list"]) >= 2, 5)
        assert controller.status["pendingNodeReleases"] == ["node2"]  # a pod is still listed there
        calls = api.calls_by(USER_AGENT)
        assert {"list", "watch", "create"} <= {c.verb for c in calls}
        assert asked(calls) <= granted("calyx-kube-controllers")
        assert asked(calls) == granted("calyx-kube-controllers")  # nothing granted that is never used
    finally:
        harness.close()


def test_every_call_of_the_cni_plugin_is_granted(tmp_path):
    harness = Harness(tmp_path)
    try:
        harness.api.store.create("pods", pod("web", "shop", {"app": "web"}))
        conf = parse_netconf(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": "k8s-pod-network",
                    "policy": {"type": "k8s"},
                    "kubernetes": {"kubeconfig": harness.kubeconfig},
                }
            ).encode()
        )
        info = pod_info(conf, Workload("k8s", "shop", "web", "c1", "eth0", "web"))
        assert info.labels == {"app": "web"}
        calls = harness.api.calls
        assert calls and asked(calls) <= granted("calyx-node")
    finally:
        harness.close()
