"""Who a rule's peer means (issue 9, items 1, 4, 5): Kubernetes peers pick pods only, never network
sets; a named port without a selector means every endpoint of every namespace; Calico's own
labels (namespace name, orchestrator) are there for its documented default policies."""

import pytest

from policy.compiler.compiler import PolicyCompiler
from policy.datastore.keys import key_of
from policy.evaluate.evaluator import Evaluator
from policy.evaluate.rules import Packet
from policy.model.documents import DocumentError
from tests.policy_model import PREFIX, compile_all, docs

MODEL = """\
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {ns: x}}
---
apiVersion: v1
kind: Namespace
metadata: {name: y, labels: {ns: y}}
---
apiVersion: calyx.io/v1
kind: WorkloadEndpoint
metadata: {name: a, namespace: x, labels: {pod: a}}
spec:
  node: n1
  interfaceName: cxa
  orchestrator: k8s
  ipNetworks: [10.0.0.1/32]
  ports: [{name: serve, port: 80}]
---
apiVersion: calyx.io/v1
kind: WorkloadEndpoint
metadata: {name: b, namespace: y, labels: {pod: b}}
spec: {node: n2, interfaceName: cxb, orchestrator: cni, ipNetworks: [10.0.0.2/32], ports: [{name: serve, port: 81}]}
---
apiVersion: calyx.io/v1
kind: WorkloadEndpoint
metadata: {name: c, namespace: x, labels: {pod: c}}
spec: {node: n2, interfaceName: cxc, ipNetworks: [10.0.0.3/32]}
---
apiVersion: calyx.io/v1
kind: NetworkSet
metadata: {name: outside-x, namespace: x, labels: {pod: b}}
spec: {nets: [192.0.2.0/24]}
---
apiVersion: calyx.io/v1
kind: NetworkSet
metadata: {name: outside-y, namespace: y, labels: {pod: b}}
spec: {nets: [198.51.100.0/24]}
"""
ADDRESSES = {"x/a": "10.0.0.1", "y/b": "10.0.0.2", "x/c": "10.0.0.3"}


def _endpoint(evaluator: Evaluator, name: str):
    return next(m for m in evaluator.universe.endpoints if m.name == name)


def _elements(compiler: PolicyCompiler, resource, kind: str) -> set:
    """Every element of the `kind` sets (sel4, port4...) one policy's chains use."""
    ruleset = compiler.ruleset()
    compiled = compiler._policies[key_of(PREFIX, resource)]
    names = compiler._set_names
    return {e for spec in compiled.specs if spec.name.startswith(kind) for e in ruleset.sets[names[spec]].elements}


def _with(policy: str):
    resources = docs(MODEL + "---\n" + policy)
    return compile_all(resources), resources[-1], Evaluator(resources)


def _knp(spec: str) -> str:
    return (
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\n"
        f"spec:\n  podSelector: {{matchLabels: {{pod: a}}}}\n{spec}"
    )


@pytest.mark.parametrize(
    "peer",
    ["{namespaceSelector: {}}", "{podSelector: {}}", "{podSelector: {matchLabels: {pod: b}}, namespaceSelector: {}}"],
)
def test_kubernetes_pod_and_namespace_peers_admit_pods_but_never_network_sets(peer):
    compiler, policy, reference = _with(_knp(f"  ingress: [{{from: [{peer}]}}]\n"))
    sources = _elements(compiler, policy, "sel4")
    assert sources and sources <= set(ADDRESSES.values())
    target = _endpoint(reference, "x/a")
    for outside in ("192.0.2.7", "198.51.100.7"):
        assert not reference.decide(target, "Ingress", Packet(outside, "10.0.0.1", 6, 80)).allowed


def test_a_calico_rule_selector_still_picks_network_sets():
    compiler, policy, _ = _with(
        "apiVersion: calyx.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\n"
        "spec: {ingress: [{action: Allow, source: {selector: pod == 'b', namespaceSelector: all()}}]}\n"
    )
    assert _elements(compiler, policy, "sel4") == {"10.0.0.2", "192.0.2.0/24", "198.51.100.0/24"}


@pytest.mark.parametrize("kind", ["NetworkSet", "GlobalNetworkSet"])
@pytest.mark.parametrize("label", ["projectcalico.org/orchestrator", "projectcalico.org/namespace"])
def test_a_network_set_cannot_carry_the_labels_that_make_it_pass_for_a_pod(kind, label):
    namespace = ", namespace: x" if kind == "NetworkSet" else ""
    with pytest.raises(DocumentError, match=f"{label} is set by Calyx"):
        docs(f"apiVersion: calyx.io/v1\nkind: {kind}\nmetadata: {{name: n{namespace}, labels: {{{label}: k8s}}}}\n")


def test_calico_default_policy_on_the_orchestrator_label_selects_kubernetes_pods_only():
    compiler, policy, _ = _with(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: k8s-pods}\n"
        "spec: {egress: [{action: Allow, destination: {selector: projectcalico.org/orchestrator == 'k8s'}}]}\n"
    )
    assert _elements(compiler, policy, "sel4") == {"10.0.0.1"}


def test_an_endpoint_label_cannot_override_its_orchestrator():
    resources = docs(
        MODEL.replace(
            "labels: {pod: b}}\nspec: {node: n2",
            "labels: {pod: b, projectcalico.org/orchestrator: k8s}}\nspec: {node: n2",
        )
        + "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: k8s-pods}\n"
        "spec: {egress: [{action: Allow, destination: {selector: projectcalico.org/orchestrator == 'k8s'}}]}\n"
    )
    assert _elements(compile_all(resources), resources[-1], "sel4") == {"10.0.0.1"}


def test_calico_namespace_name_label_selects_the_namespace():
    compiler, policy, _ = _with(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: from-y}\n"
        "spec: {ingress: [{action: Allow, source: {namespaceSelector: projectcalico.org/name == 'y', selector: has(pod)}}]}\n"
    )
    assert _elements(compiler, policy, "sel4") == {"10.0.0.2", "198.51.100.0/24"}


# (rule, the pods whose named port `serve` it means): Kubernetes semantics, every combination.
NAMED_PORT_SCOPES = [
    ("  egress: [{ports: [{port: serve}]}]\n", {"x/a", "y/b"}),
    ("  egress: [{to: [{podSelector: {}}], ports: [{port: serve}]}]\n", {"x/a"}),
    ("  egress: [{to: [{namespaceSelector: {}}], ports: [{port: serve}]}]\n", {"x/a", "y/b"}),
    ("  egress: [{to: [{namespaceSelector: {matchLabels: {ns: y}}}], ports: [{port: serve}]}]\n", {"y/b"}),
    (
        "  egress: [{to: [{namespaceSelector: {matchLabels: {ns: y}}, podSelector: {matchLabels: {pod: a}}}], "
        "ports: [{port: serve}]}]\n",
        set(),
    ),
    ("  egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8}}], ports: [{port: serve}]}]\n", {"x/a", "y/b"}),
    ("  ingress: [{ports: [{port: serve}]}]\n", {"x/a", "y/b"}),
    ("  ingress: [{from: [{podSelector: {}}], ports: [{port: serve}]}]\n", {"x/a", "y/b"}),
    ("  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}], ports: [{port: serve}]}]\n", {"x/a", "y/b"}),
]
PORTS = {"x/a": 80, "y/b": 81}


@pytest.mark.parametrize(("rule", "pods"), NAMED_PORT_SCOPES)
def test_named_port_means_the_peers_endpoints_or_every_endpoint_of_every_namespace(rule, pods):
    compiler, policy, _ = _with(_knp(rule))
    assert _elements(compiler, policy, "port4") == {(ADDRESSES[p], 6, PORTS[p]) for p in pods}


def test_egress_named_port_without_to_reaches_that_port_on_pods_of_other_namespaces():
    _, _, reference = _with(_knp("  egress: [{ports: [{port: serve}]}]\n"))
    source = reference.endpoint_peer(_endpoint(reference, "x/a"))
    other_namespace = reference.endpoint_peer(_endpoint(reference, "y/b"))
    assert source and other_namespace
    assert reference.flow(source, other_namespace, Packet("10.0.0.1", "10.0.0.2", 6, 81)).allowed
    assert not reference.flow(source, other_namespace, Packet("10.0.0.1", "10.0.0.2", 6, 80)).allowed


def test_not_selector_alone_in_a_namespaced_policy_matches_only_its_own_namespace():
    text = (
        "apiVersion: calyx.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\n"
        "spec: {selector: pod == 'a', ingress: [{action: Allow, source: {notSelector: pod == 'c'}}]}\n"
    )
    compiler, policy, reference = _with(text)
    # x's endpoints and network set (what it may be), and x/c (what it may not)
    assert _elements(compiler, policy, "sel4") == {"10.0.0.1", "10.0.0.3", "192.0.2.0/24"}
    target = _endpoint(reference, "x/a")
    assert not reference.decide(target, "Ingress", Packet("10.0.0.2", "10.0.0.1", 6, 80)).allowed  # another namespace
    assert not reference.decide(target, "Ingress", Packet("203.0.113.9", "10.0.0.1", 6, 80)).allowed  # outside
    assert reference.decide(target, "Ingress", Packet("192.0.2.9", "10.0.0.1", 6, 80)).allowed  # x's network set
