"""Who a Kubernetes peer and a named port mean, with real packets (issue 9, items 1 and 4): peers
pick pods only, never the ranges of NetworkSets; a named port in an egress rule without `to`
is that port on every pod of every namespace."""

import pytest

from tests.lab.netpol import Reachability

pytestmark = pytest.mark.integration

OUTSIDE_LINKS = (150, 151)  # fabric hosts 198.18.150.2 and 198.18.151.2, each in a NetworkSet's range


@pytest.fixture(scope="module")
def outside(policy_model):
    """Two hosts on the fabric, outside every workload range, made once for this module."""
    return [policy_model.lab.add_fabric_host(link) for link in OUTSIDE_LINKS]


def knp(name: str, spec: str) -> str:
    return f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: x}}\nspec:\n{spec}"


NETWORK_SETS = """\
apiVersion: calyx.io/v1
kind: NetworkSet
metadata: {name: range-y, namespace: y, labels: {pod: a}}
spec: {nets: [198.18.150.0/24]}
---
apiVersion: calyx.io/v1
kind: NetworkSet
metadata: {name: range-z, namespace: z, labels: {pod: a}}
spec: {nets: [198.18.151.0/24]}
"""


def test_allow_from_all_namespaces_admits_pods_but_not_the_ranges_of_network_sets(netpol, outside):
    for host in outside:  # the path works: without policy the fabric hosts reach x/a
        assert netpol.reachable_from(host, ["x/a"]) == {"x/a": True}
    netpol.apply(NETWORK_SETS)
    netpol.apply(
        knp(
            "from-all-namespaces",
            "  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{namespaceSelector: {}}]}]\n",
        )
    )
    Reachability(True).check(netpol.matrix(80, "tcp"), "every pod reaches x/a")
    for host in outside:
        assert netpol.reachable_from(host, ["x/a", "y/a"]) == {"x/a": False, "y/a": True}
    netpol.apply(
        knp(
            "from-all-namespaces",
            "  podSelector: {matchLabels: {pod: a}}\n"
            "  ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {pod: a}}}]}]\n",
        )
    )
    expected = Reachability(True).ingress("x/a", False)
    for namespace in ("x", "y", "z"):
        expected.expect(f"{namespace}/a", "x/a", True)
    expected.check(netpol.matrix(80, "tcp"), "pods labelled pod=a reach x/a")
    for host in outside:
        assert netpol.reachable_from(host, ["x/a"]) == {"x/a": False}


def test_egress_named_port_without_to_reaches_that_port_on_pods_of_every_namespace(netpol):
    netpol.apply(
        knp(
            "named-port-anywhere",
            "  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Egress]\n"
            "  egress: [{ports: [{port: serve-81-tcp}]}]\n",
        )
    )
    Reachability(True).check(netpol.matrix(81, "tcp"), "x/a reaches tcp/81 everywhere")
    expected = Reachability(True).egress("x/a", False)
    expected.check(netpol.matrix(80, "tcp"), "and nothing else")
