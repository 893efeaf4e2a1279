"""Kubernetes NetworkPolicy semantics with real packets: the upstream e2e model (x, y, z with
pods a, b, c over two nodes), the full 9x9 matrix checked after every change."""

import pytest

from tests.lab.netpol import Reachability

pytestmark = pytest.mark.integration


def knp(name: str, namespace: str, spec: str) -> str:
    return f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{spec}"


DENY_ALL_INGRESS_X = knp("deny-all", "x", "  podSelector: {}\n  policyTypes: [Ingress]\n")


def test_no_policy_everything_reaches_everything(netpol):
    Reachability(True).check(netpol.matrix(80, "tcp"), "tcp/80")
    Reachability(True).check(netpol.matrix(81, "udp"), "udp/81")


def test_default_deny_ingress_in_one_namespace(netpol):
    netpol.apply(DENY_ALL_INGRESS_X)
    expected = Reachability(True)
    for pod in ("x/a", "x/b", "x/c"):
        expected.ingress(pod, False)
    expected.check(netpol.matrix(80, "tcp"), "tcp/80")
    expected.check(netpol.matrix(80, "udp"), "udp/80")


def test_pod_selector_allows_only_the_selected_peer_in_the_same_namespace(netpol):
    netpol.apply(
        knp(
            "allow-b-to-a",
            "x",
            """\
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]
""",
        )
    )
    Reachability(True).ingress("x/a", False).expect("x/b", "x/a", True).check(netpol.matrix(80, "tcp"))


def test_namespace_selector_allows_every_pod_of_the_selected_namespaces(netpol):
    netpol.apply(
        knp(
            "allow-from-y",
            "x",
            """\
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {matchExpressions: [{key: ns, operator: In, values: [y]}]}}]}]
""",
        )
    )
    expected = Reachability(True).ingress("x/a", False)
    for pod in ("y/a", "y/b", "y/c"):
        expected.expect(pod, "x/a", True)
    expected.check(netpol.matrix(80, "tcp"))


def test_peers_and_within_one_peer_or_across_peers(netpol):
    netpol.apply(
        knp(
            "and",
            "x",
            """\
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}, podSelector: {matchLabels: {pod: b}}}]}]
""",
        )
    )
    Reachability(True).ingress("x/a", False).expect("y/b", "x/a", True).check(netpol.matrix(80, "tcp"), "AND")
    netpol.apply(
        knp(
            "and",
            "x",
            """\
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}, {podSelector: {matchLabels: {pod: b}}}]}]
""",
        )
    )
    expected = Reachability(True).ingress("x/a", False).expect("x/b", "x/a", True)
    for pod in ("y/a", "y/b", "y/c"):
        expected.expect(pod, "x/a", True)
    expected.check(netpol.matrix(80, "tcp"), "OR")


def test_ports_numbers_protocols_and_named_ports(netpol):
    netpol.apply(
        knp(
            "port-81",
            "x",
            """\
  podSelector: {matchLabels: {pod: a}}
  ingress: [{ports: [{port: 81}]}]
""",
        )
    )
    Reachability(True).ingress("x/a", False).check(netpol.matrix(80, "tcp"), "tcp/80 closed")
    Reachability(True).check(netpol.matrix(81, "tcp"), "tcp/81 open")
    Reachability(True).ingress("x/a", False).check(netpol.matrix(81, "udp"), "udp/81 closed (TCP is the default)")
    netpol.apply(
        knp(
            "port-81",
            "x",
            """\
  podSelector: {matchLabels: {pod: a}}
  ingress: [{ports: [{port: serve-80-udp, protocol: UDP}, {port: 79, endPort: 80}]}]
""",
        )
    )
    Reachability(True).check(netpol.matrix(80, "udp"), "named udp/80 open")
    Reachability(True).check(netpol.matrix(80, "tcp"), "tcp 79-80 open")
    Reachability(True).ingress("x/a", False).check(netpol.matrix(81, "tcp"), "tcp/81 closed")


def test_egress_deny_and_allow_to_a_namespace(netpol):
    netpol.apply(
        knp(
            "egress-to-y",
            "x",
            """\
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress: [{to: [{namespaceSelector: {matchLabels: {ns: y}}}]}]
""",
        )
    )
    expected = Reachability(True).egress("x/a", False)
    for pod in ("y/a", "y/b", "y/c"):
        expected.expect("x/a", pod, True)
    expected.check(netpol.matrix(80, "tcp"), "tcp")
    expected.check(netpol.matrix(81, "udp"), "udp")


def test_ip_block_with_except(netpol):
    # node1's pods are 198.19.1.0/24, node2's 198.19.2.0/24: allow all pods but node2's.
    netpol.apply(
        knp(
            "cidr",
            "x",
            """\
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{ipBlock: {cidr: 198.19.0.0/16, except: [198.19.2.0/24]}}]}]
""",
        )
    )
    expected = Reachability(True)
    for src, workload in netpol.pods.items():
        expected.expect(src, "x/a", workload.node == "node1")
    expected.check(netpol.matrix(80, "tcp"))


def test_update_then_delete_a_policy(netpol):
    policy = knp(
        "allow",
        "x",
        """\
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]
""",
    )
    netpol.apply(policy)
    Reachability(True).ingress("x/a", False).expect("x/b", "x/a", True).check(netpol.matrix(80, "tcp"), "created")
    netpol.apply(policy.replace("pod: b", "pod: c"))
    Reachability(True).ingress("x/a", False).expect("x/c", "x/a", True).check(netpol.matrix(80, "tcp"), "updated")
    netpol.delete(policy)
    Reachability(True).check(netpol.matrix(80, "tcp"), "deleted")


def test_label_changes_move_pods_in_and_out_of_policies(netpol):
    netpol.apply(
        knp(
            "allow",
            "x",
            """\
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]
""",
        )
    )
    netpol.relabel("x/c", {"pod": "b"})  # now a peer
    netpol.relabel("x/a", {"pod": "a", "extra": "yes"})  # still selected
    Reachability(True).ingress("x/a", False).expect("x/b", "x/a", True).expect("x/c", "x/a", True).check(
        netpol.matrix(80, "tcp"), "relabelled in"
    )
    netpol.relabel("x/a", {"pod": "other"})  # no longer selected: open again
    Reachability(True).check(netpol.matrix(80, "tcp"), "relabelled out")


def test_ipv6_follows_the_same_policy(netpol):
    netpol.apply(
        knp(
            "allow",
            "x",
            """\
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]
""",
        )
    )
    Reachability(True).ingress("x/a", False).expect("x/b", "x/a", True).check(
        netpol.matrix(80, "tcp", family=6), "IPv6"
    )
