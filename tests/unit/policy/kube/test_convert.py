"""Kubernetes objects to Calyx resources: pure, total, every bad object named with its field."""

import pytest

from policy.kube.convert import (
    BadObject,
    endpoint_for_pod,
    fail_closed_policy,
    kubernetes_node_name,
    namespace_resource,
    network_policy,
    pod_facts,
    service_account_profile,
)
from policy.model.resources import Node
from tests.unit.policy.kube.conftest import endpoint, pod


def test_a_namespace_keeps_its_labels_and_gains_its_name_label():
    ns = namespace_resource({"metadata": {"name": "x", "labels": {"ns": "x"}, "uid": "u", "resourceVersion": "9"}})
    assert ns.name == "x" and ns.metadata.labels == {"ns": "x", "kubernetes.io/metadata.name": "x"}
    assert ns.metadata.resourceVersion is None and ns.metadata.uid is None  # the API server's, not ours


def test_a_network_policy_is_converted_without_the_api_servers_fields():
    obj = {
        "metadata": {
            "name": "p",
            "namespace": "x",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
            "managedFields": [{}],
            "generation": 3,
        },
        "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]},
        "status": {},
    }
    policy = network_policy(obj)
    assert policy.name == "knp.default.p" and policy.namespace == "x" and policy.metadata.annotations == {}
    assert policy.spec.ingress[0].destination.ports == [80] and policy.spec.types == ["Ingress"]


@pytest.mark.parametrize(
    ("convert", "obj", "field"),
    [
        (namespace_resource, {"metadata": {"name": "x", "labels": {"bad key!": "v"}}}, "metadata.labels"),
        (pod_facts, {"metadata": {"name": "a", "namespace": "x", "labels": {"k": "-v-"}}}, "metadata.labels"),
        (pod_facts, {"metadata": {"name": "a"}}, "metadata.namespace"),
        (network_policy, {"metadata": {"name": "p", "namespace": "x"}, "spec": {"podSelector": 7}}, "spec.podSelector"),
        (network_policy, {"metadata": {"namespace": "x"}, "spec": {}}, "metadata.name"),
        (service_account_profile, {"metadata": {"name": "sa", "namespace": "x", "labels": {"k" * 63: "v"}}}, "pcsa"),
    ],
)
def test_bad_objects_are_refused_naming_the_field(convert, obj, field):
    with pytest.raises(BadObject) as caught:
        convert(obj)
    assert field in str(caught.value)


@pytest.mark.parametrize("junk", [None, 7, "text", [], {"metadata": []}, {"metadata": {"name": 3}}])
def test_any_json_gives_a_conversion_or_bad_object(junk):
    for convert in (namespace_resource, pod_facts, network_policy, service_account_profile):
        with pytest.raises(BadObject):
            convert(junk)


def test_pod_facts():
    facts = pod_facts(pod("a", "x", {"pod": "a"}, node="n2", ip="10.0.0.7", sa="ci"))
    assert (facts.labels, facts.service_account, facts.node, facts.ips, facts.live) == (
        {"pod": "a"},
        "ci",
        "n2",
        ("10.0.0.7",),
        True,
    )
    done = pod("b", "x", {}) | {"status": {"phase": "Succeeded", "podIP": "10.0.0.8"}}
    assert not pod_facts(done).live


def test_an_endpoint_takes_the_pods_labels_and_service_account_and_keeps_the_rest():
    wep = endpoint("a", "x", labels={"old": "yes"})
    wep = wep.model_copy(update={"spec": wep.spec.model_copy(update={"profiles": ["kns.x", "ksa.x.old"]})})
    updated = endpoint_for_pod(wep, "x", pod_facts(pod("a", "x", {"pod": "a"}, sa="ci")))
    assert updated.metadata.labels == {"pod": "a"}
    assert updated.spec.serviceAccountName == "ci" and updated.spec.profiles == ["kns.x", "ksa.x.ci"]
    assert (updated.spec.ipNetworks, updated.spec.interfaceName) == (wep.spec.ipNetworks, wep.spec.interfaceName)


def test_a_service_account_becomes_a_profile_with_prefixed_labels():
    profile = service_account_profile({"metadata": {"name": "ci", "namespace": "x", "labels": {"team": "a"}}})
    assert profile.name == "ksa.x.ci"
    assert profile.spec.labelsToApply == {"pcsa.team": "a", "pcsa.projectcalico.org/name": "ci"}
    assert not profile.spec.ingress and not profile.spec.egress  # labels only: no verdict of its own


def test_a_policy_that_cannot_be_converted_stands_as_deny_all_for_its_pods():
    obj = {"metadata": {"name": "p", "namespace": "x"}, "spec": {"podSelector": {"matchLabels": {"pod": "a"}}, "x": 1}}
    placeholder = fail_closed_policy(obj, "spec.x: unknown field")
    assert placeholder.spec.selector == "pod == 'a'" and placeholder.spec.types == ["Ingress", "Egress"]
    assert not placeholder.spec.ingress and not placeholder.spec.egress
    unreadable = fail_closed_policy({"metadata": {"name": "p", "namespace": "x"}, "spec": {"podSelector": 5}}, "bad")
    assert unreadable.spec.selector == "all()"


def test_which_calyx_nodes_stand_for_kubernetes_nodes():
    assert kubernetes_node_name(Node.model_validate({"metadata": {"name": "n1"}})) == "n1"
    k8s = {"metadata": {"name": "n1"}, "spec": {"orchRefs": [{"orchestrator": "k8s", "nodeName": "n1.example"}]}}
    assert kubernetes_node_name(Node.model_validate(k8s)) == "n1.example"
    metal = {"metadata": {"name": "m"}, "spec": {"orchRefs": [{"orchestrator": "bare"}]}}
    assert kubernetes_node_name(Node.model_validate(metal)) is None
