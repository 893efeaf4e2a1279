"""Generated policies on the e2e model: what the kernel does to real packets agrees with the
pure reference evaluator, pair by pair (tcp/80 and udp/81, 81 pairs each)."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy.datastore.store import WriteMode
from policy.model.documents import parse_resource
from policy.model.resources import Namespace
from policy.runtime.status import policy_status_key
from tests.lab.netpol import pod_names
from tests.policy_reference import Packet, Reference

pytestmark = pytest.mark.integration

SELECTORS = ["pod == 'a'", "pod in {'a', 'b'}", "all()", "pod != 'c'", "has(pod)"]
PEERS = [
    {},
    {"selector": "pod == 'b'"},
    {"namespaceSelector": "ns == 'y'"},
    {"nets": ["198.19.1.0/24"]},
    {"selector": "pod != 'a'", "namespaceSelector": "ns in {'x', 'z'}"},
    {"notNets": ["198.19.2.0/24"]},
]
PORTS = [None, [80], [81], ["80:81"], ["serve-80-tcp"], ["serve-81-udp"]]

rules = st.builds(
    lambda action, protocol, peer, ports: {
        "action": action,
        **({"protocol": protocol} if protocol else {}),
        "source": peer,
        **({"destination": {"ports": ports}} if ports and protocol else {}),
    },
    st.sampled_from(["Allow", "Deny", "Pass", "Log"]),
    st.sampled_from([None, "TCP", "UDP"]),
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


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(policies, st.sampled_from(["Deny", "Pass"]))
def test_kernel_verdicts_agree_with_the_reference_evaluator(netpol, generated, tier_default):
    netpol.reset()
    documents = [{**p, "metadata": {**p["metadata"], "name": f"gen{i}"}} for i, p in enumerate(generated)]
    documents.append(
        {
            "apiVersion": "calyx.io/v1",
            "kind": "Tier",
            "metadata": {"name": "t1"},
            "spec": {"order": 10, "defaultAction": tier_default},
        }
    )
    resources = [parse_resource(d) for d in documents]
    netpol.wait(netpol.lab.store.write(resources, WriteMode.APPLY))
    assert netpol.lab.kv.get(policy_status_key(netpol.lab.prefix, "node1")) is None  # nothing failed to compile
    endpoints = {name: netpol.endpoint(name) for name in pod_names()}
    namespaces = netpol.lab.store.list_kind(Namespace)[0]
    reference = Reference(resources + list(endpoints.values()) + namespaces)
    for port, proto, number in ((80, "tcp", 6), (81, "udp", 17)):
        observed = netpol.matrix(port, proto)
        wrong = []
        for (src, dst), ok in observed.items():
            packet = Packet(netpol.pods[src].ip, netpol.pods[dst].ip, number, port)
            expected = reference.allowed(endpoints[src], endpoints[dst], packet)
            if ok != expected:
                wrong.append(
                    f"{src} -> {dst}: kernel {'allows' if ok else 'blocks'}, reference {'allows' if expected else 'blocks'}"
                )
        assert not wrong, f"{proto}/{port}:\n" + "\n".join(wrong[:20]) + f"\npolicies: {documents}"
