"""The proof the evaluator (policy/evaluate) stands on: what the kernel does to real packets on the
e2e model (9 pods over two nodes) equals what the evaluator says, pair by pair (tcp/80, udp/81
and IPv6 tcp/80, 81 pairs each), for generated Calico policy sets and for the Kubernetes e2e
policies; and the flows `diff --flows` predicts a change to open and close are the ones the
kernel then opens and closes."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy.ctl.explain import State, flow_changes
from policy.datastore.store import WriteMode
from policy.evaluate.evaluator import Evaluator
from policy.evaluate.rules import Packet
from policy.model.documents import load_documents, parse_resource
from policy.runtime.status import policy_status_key
from tests.lab.netpol import pod_names

pytestmark = pytest.mark.integration

SELECTORS = ["pod == 'a'", "pod in {'a', 'b'}", "all()", "pod != 'c'", "has(pod)"]
PEERS = [
    {},
    {"selector": "pod == 'b'"},
    {"namespaceSelector": "ns == 'y'"},
    {"nets": ["198.19.1.0/24"]},
    {"selector": "pod != 'a'", "namespaceSelector": "ns in {'x', 'z'}"},
    {"notNets": ["198.19.2.0/24"]},
    {"notSelector": "pod == 'c'"},
    {"selector": "role == 'lab'", "namespaceSelector": "global()"},  # the GlobalNetworkSet below
]
PORTS = [None, [80], [81], ["80:81"], ["serve-80-tcp"], ["serve-81-udp"]]
NETWORK_SET = {
    "apiVersion": "calyx.io/v1",
    "kind": "GlobalNetworkSet",
    "metadata": {"name": "node2-pods", "labels": {"role": "lab"}},
    "spec": {"nets": ["198.19.2.0/24", "fd00:19:2::/64"]},
}
PROBES = ((80, "tcp", 6, 4), (81, "udp", 17, 4), (80, "tcp", 6, 6))

rules = st.builds(
    lambda action, protocol, not_protocol, peer, ports: {
        "action": action,
        **({"protocol": protocol} if protocol else {}),
        **({"notProtocol": not_protocol} if not_protocol and not protocol else {}),
        "source": peer,
        **({"destination": {"ports": ports}} if ports and protocol else {}),
    },
    st.sampled_from(["Allow", "Deny", "Pass", "Log"]),
    st.sampled_from([None, "TCP", "UDP"]),
    st.sampled_from([None, "UDP"]),
    st.sampled_from(PEERS),
    st.sampled_from(PORTS),
)


def _policy(i, namespace, selector, types, ingress, egress, order, tier):
    kind = "NetworkPolicy" if namespace else "GlobalNetworkPolicy"
    meta = {"name": f"gen{i}", **({"namespace": namespace} if namespace else {})}
    spec = {
        "selector": selector,
        "types": types,
        "order": order,
        "tier": tier,
        "ingress": ingress if "Ingress" in types else [],
        "egress": egress if "Egress" in types else [],
    }
    return {"apiVersion": "calyx.io/v1", "kind": kind, "metadata": meta, "spec": spec}


policies = st.lists(
    st.builds(
        _policy,
        st.just(0),
        st.sampled_from([None, "x", "y"]),
        st.sampled_from(SELECTORS),
        st.sampled_from([["Ingress"], ["Egress"], ["Ingress", "Egress"]]),
        st.lists(rules, max_size=3),
        st.lists(rules, max_size=2),
        st.integers(1, 3),
        st.sampled_from(["default", "t1"]),
    ),
    min_size=1,
    max_size=3,
)
profile_rules = st.lists(rules, max_size=2)


def _documents(generated, tier_default, profile_ingress):
    documents = [{**p, "metadata": {**p["metadata"], "name": f"gen{i}"}} for i, p in enumerate(generated)]
    documents.append(
        {
            "apiVersion": "calyx.io/v1",
            "kind": "Tier",
            "metadata": {"name": "t1"},
            "spec": {"order": 10, "defaultAction": tier_default},
        }
    )
    documents.append(NETWORK_SET)
    documents.append(
        {
            "apiVersion": "calyx.io/v1",
            "kind": "Profile",
            "metadata": {"name": "gen"},
            "spec": {"ingress": profile_ingress},
        }
    )
    return documents


def _matrices(netpol) -> dict[tuple, dict[tuple[str, str], bool]]:
    return {probe: netpol.matrix(probe[0], probe[1], probe[3]) for probe in PROBES}


def _disagreements(matrices: dict[tuple, dict[tuple[str, str], bool]], model: Evaluator) -> list[str]:
    members = {m.name: m for m in model.universe.endpoints}
    wrong = []
    for (port, proto, number, family), observed in matrices.items():
        for (src, dst), ok in observed.items():
            source, destination = model.endpoint_peer(members[src], family), model.endpoint_peer(members[dst], family)
            assert source and destination
            verdict = model.flow(source, destination, Packet(source.address, destination.address, number, port))
            if ok != verdict.allowed:
                said = "allows" if verdict.allowed else "blocks"
                wrong.append(
                    f"IPv{family} {proto}/{port} {src} -> {dst}: kernel {'allows' if ok else 'blocks'}, "
                    f"evaluator {said}: {verdict.decisions}"
                )
    return wrong


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(policies, st.sampled_from(["Deny", "Pass"]), profile_rules, st.sets(st.sampled_from(pod_names()), max_size=3))
def test_kernel_verdicts_agree_with_the_evaluator(netpol, generated, tier_default, profile_ingress, profiled):
    netpol.reset()
    documents = _documents(generated, tier_default, profile_ingress)
    netpol.wait(netpol.lab.store.write([parse_resource(d) for d in documents], WriteMode.APPLY))
    for name in sorted(profiled):
        netpol.set_profiles(name, ["gen"])
    assert netpol.lab.kv.get(policy_status_key(netpol.lab.prefix, "node1")) is None  # nothing failed to compile
    model = State.read(netpol.lab.store).evaluator()  # what explain reads, create revisions included
    wrong = _disagreements(_matrices(netpol), model)
    assert not wrong, "\n".join(wrong[:20]) + f"\npolicies: {documents}\nprofiled: {profiled}"


KUBERNETES_E2E = [  # the policies of test_network_policy.py, applied one after another
    "podSelector: {}\n  policyTypes: [Ingress]",
    "podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]",
    "podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{namespaceSelector: {matchExpressions: "
    "[{key: ns, operator: In, values: [y]}]}}]}]",
    "podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}, "
    "podSelector: {matchLabels: {pod: b}}}]}]",
    "podSelector: {matchLabels: {pod: a}}\n  ingress: [{ports: [{port: serve-81-udp, protocol: UDP}, {port: 79, endPort: 80}]}]",
    "podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Egress]\n  egress: [{to: [{namespaceSelector: {matchLabels: {ns: y}}}]}]",
    "podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{ipBlock: {cidr: 198.19.0.0/16, except: [198.19.2.0/24]}}]}]",
]


def _knp(i: int, spec: str) -> str:
    return f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: e2e{i}, namespace: x}}\nspec:\n  {spec}\n"


def test_flow_diff_predicts_what_the_kernel_opens_and_closes_for_the_kubernetes_e2e_policies(netpol):
    """Before each policy is applied, diff --flows' prediction; after, the kernel's matrices must
    have changed exactly there, and agree with the evaluator everywhere."""
    observed = _matrices(netpol)
    for i, spec in enumerate(KUBERNETES_E2E):
        change = load_documents(_knp(i, spec), "<e2e>")
        predicted, _ = flow_changes(State.read(netpol.lab.store), change)
        netpol.apply(_knp(i, spec))
        now = _matrices(netpol)
        for probe in PROBES:
            port, _, number, family = probe
            turned = {pair: ok for pair, ok in now[probe].items() if ok != observed[probe][pair]}
            expected = {
                (src.removeprefix("WorkloadEndpoint "), dst.removeprefix("WorkloadEndpoint ")): opened
                for (opened, _, src, dst), services in predicted.items()
                for service, versions in services.items()
                if family in versions
                and service.protocol == number
                and service.low is not None
                and service.high is not None
                and service.low <= port <= service.high
            }
            assert turned == expected, f"policy {i} ({spec}), {probe}"
        wrong = _disagreements(now, State.read(netpol.lab.store).evaluator())
        assert not wrong, f"policy {i} ({spec}):\n" + "\n".join(wrong[:20])
        observed = now
