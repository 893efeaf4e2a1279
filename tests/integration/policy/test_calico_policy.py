"""Calico-style policy with real packets on the e2e model: tiers, Pass, order, Log,
GlobalNetworkPolicy, network sets, profiles and anti-spoofing."""

import subprocess
import time

import pytest

from policy.datastore.store import WriteMode
from tests.lab import netns
from tests.lab.netpol import Reachability

pytestmark = pytest.mark.integration

GNP = "apiVersion: calyx.io/v1\nkind: GlobalNetworkPolicy\n"
NP = "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\n"


def test_deny_before_allow_by_order(netpol):
    netpol.apply(
        NP
        + """\
metadata: {name: allow-all, namespace: x}
spec: {order: 20, selector: "pod == 'a'", ingress: [{action: Allow}]}
---
"""
        + NP
        + """\
metadata: {name: deny-y, namespace: x}
spec: {order: 10, selector: "pod == 'a'", ingress: [{action: Deny, source: {namespaceSelector: "ns == 'y'"}}]}
"""
    )
    expected = Reachability(True)
    for pod in ("y/a", "y/b", "y/c"):
        expected.expect(pod, "x/a", False)
    expected.check(netpol.matrix(80, "tcp"), "deny first")
    netpol.apply(
        NP
        + """\
metadata: {name: deny-y, namespace: x}
spec: {order: 30, selector: "pod == 'a'", ingress: [{action: Deny, source: {namespaceSelector: "ns == 'y'"}}]}
"""
    )
    Reachability(True).check(netpol.matrix(80, "tcp"), "allow first")


def test_tiers_in_order_with_pass_and_default_deny(netpol):
    # security (order 100) denies z everywhere but passes everything else down to the default
    # tier, where x/a only accepts y.  platform (order 50, defaultAction Pass) logs and passes.
    netpol.apply(
        """\
apiVersion: calyx.io/v1
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
apiVersion: calyx.io/v1
kind: Tier
metadata: {name: platform}
spec: {order: 50, defaultAction: Pass}
---
"""
        + GNP
        + """\
metadata: {name: platform.log}
spec: {tier: platform, selector: all(), ingress: [{action: Log}], egress: [{action: Log}]}
---
"""
        + GNP
        + """\
metadata: {name: security.block-z}
spec:
  tier: security
  selector: all()
  ingress:
  - {action: Deny, source: {namespaceSelector: "ns == 'z'"}}
  - {action: Pass}
---
"""
        + NP
        + """\
metadata: {name: only-y, namespace: x}
spec: {selector: "pod == 'a'", ingress: [{action: Allow, source: {namespaceSelector: "ns == 'y'"}}]}
"""
    )
    expected = Reachability(True)
    for src in ("z/a", "z/b", "z/c"):
        expected.egress(src, False)
    for src in ("x/a", "x/b", "x/c", "z/a", "z/b", "z/c"):
        expected.expect(src, "x/a", False)
    expected.check(netpol.matrix(80, "tcp"))
    rules = netns.in_ns(netpol.lab.nodes["node1"].netns, "nft", "list", "table", "inet", "calyx").stdout
    assert 'log prefix "calyx' in rules


def test_global_network_policy_with_namespace_selector_and_egress(netpol):
    netpol.apply(
        GNP
        + """\
metadata: {name: y-egress-only-to-z}
spec:
  namespaceSelector: "ns == 'y'"
  selector: all()
  egress: [{action: Allow, protocol: UDP, destination: {namespaceSelector: "ns == 'z'", ports: [81]}}]
"""
    )
    expected = Reachability(True)
    for pod in ("y/a", "y/b", "y/c"):
        expected.egress(pod, False)
    expected.check(netpol.matrix(81, "tcp"), "tcp/81: y sends nothing")
    for pod in ("y/a", "y/b", "y/c"):
        for dst in ("z/a", "z/b", "z/c"):
            expected.expect(pod, dst, True)
    expected.check(netpol.matrix(81, "udp"), "udp/81: y reaches z only")


def test_network_sets_by_label_global_and_namespaced(netpol):
    node2_pods = [n for n, w in netpol.pods.items() if w.node == "node2"]
    netpol.apply(
        """\
apiVersion: calyx.io/v1
kind: GlobalNetworkSet
metadata: {name: node2-pods, labels: {role: trusted}}
spec: {nets: [198.19.2.0/24]}
---
"""
        + GNP
        + """\
metadata: {name: trusted-only}
spec:
  selector: "pod == 'b'"
  ingress: [{action: Allow, source: {selector: "role == 'trusted'", namespaceSelector: global()}}]
"""
    )
    expected = Reachability(True)
    for dst in ("x/b", "y/b", "z/b"):
        expected.ingress(dst, False)
        for src in node2_pods:
            expected.expect(src, dst, True)
    expected.check(netpol.matrix(80, "tcp"), "global set")
    netpol.apply(
        """\
apiVersion: calyx.io/v1
kind: NetworkSet
metadata: {name: everyone, namespace: x, labels: {role: all}}
spec: {nets: [198.19.0.0/16]}
---
"""
        + NP
        + """\
metadata: {name: set-in-x, namespace: x}
spec: {selector: "pod == 'b'", ingress: [{action: Allow, source: {selector: "role == 'all'"}}]}
"""
    )
    expected.ingress("x/b", True)
    expected.check(netpol.matrix(80, "tcp"), "namespaced set opens x/b")


def test_profiles_apply_when_no_policy_selects_the_endpoint(netpol):
    netpol.apply("""\
apiVersion: calyx.io/v1
kind: Profile
metadata: {name: only-from-x}
spec: {ingress: [{action: Allow, source: {selector: "projectcalico.org/namespace == 'x'"}}]}
""")
    netpol.set_profiles("y/a", ["only-from-x"])
    expected = Reachability(True).ingress("y/a", False)
    for src in ("x/a", "x/b", "x/c"):
        expected.expect(src, "y/a", True)
    expected.check(netpol.matrix(80, "tcp"), "profile")
    netpol.apply(
        NP
        + """\
metadata: {name: open, namespace: y}
spec: {selector: "pod == 'a'", ingress: [{action: Allow}]}
"""
    )
    Reachability(True).check(netpol.matrix(80, "tcp"), "a policy selects it: profile no longer applies")


def test_a_workload_cannot_send_from_a_forged_address(netpol):
    """rp_filter would also drop this; it is turned off on the node so only nftables stands in the way."""
    src, dst = netpol.pods["x/a"], netpol.pods["x/b"]
    node = netpol.lab.nodes[src.node].netns
    forged = "198.19.9.9"
    netns.in_ns(node, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", f"net.ipv4.conf.{src.interface}.rp_filter=0")
    netns.in_ns(src.netns, "ip", "addr", "add", f"{forged}/32", "dev", "eth0")
    try:
        genuine = _one_datagram(src, dst, src.ip)
        spoofed = _one_datagram(src, dst, forged)
    finally:
        netns.in_ns(src.netns, "ip", "addr", "del", f"{forged}/32", "dev", "eth0")
        netns.in_ns(
            node, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1", f"net.ipv4.conf.{src.interface}.rp_filter=1"
        )
    assert genuine, "the genuine datagram did not arrive"
    assert not spoofed, "the datagram with a forged source arrived"


def test_a_workload_holding_a_network_may_send_from_any_address_in_it(netpol):
    """An endpoint's network (not only a host address) is in the anti-spoofing interval set: an
    address inside it passes, one outside it does not."""
    name = "x/a"
    src, dst = netpol.pods[name], netpol.pods["x/c"]  # one node: no other node's rp_filter in the way
    assert src.node == dst.node
    node = netpol.lab.nodes[src.node].netns
    inside, outside, network = "198.19.9.9", "198.19.9.20", "198.19.9.8/29"
    original = netpol.endpoint(name)
    wider = original.model_copy(
        update={"spec": original.spec.model_copy(update={"ipNetworks": [*original.spec.ipNetworks, network]})}
    )
    netns.in_ns(node, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", f"net.ipv4.conf.{src.interface}.rp_filter=0")
    for address in (inside, outside):
        netns.in_ns(src.netns, "ip", "addr", "add", f"{address}/32", "dev", "eth0")
    try:
        netpol.wait(netpol.lab.store.write([wider], WriteMode.APPLY))
        sources = netns.in_ns(node, "nft", "list", "set", "inet", "calyx", "wl-src4").stdout
        from_inside, from_outside = _one_datagram(src, dst, inside), _one_datagram(src, dst, outside)
    finally:
        netpol.wait(netpol.lab.store.write([original], WriteMode.APPLY))
        for address in (inside, outside):
            netns.in_ns(src.netns, "ip", "addr", "del", f"{address}/32", "dev", "eth0")
        netns.in_ns(
            node, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1", f"net.ipv4.conf.{src.interface}.rp_filter=1"
        )
    assert network in sources, sources
    assert from_inside, "a datagram from an address of the endpoint's own network did not arrive"
    assert not from_outside, "a datagram from outside the endpoint's network arrived"


def _one_datagram(src, dst, source: str) -> bool:
    """Send UDP from `source` in src to dst; True if dst received it (within 1 s)."""
    receiver = subprocess.Popen(
        ["ip", "netns", "exec", dst.netns, "python3", "-c", _RECEIVE], stdout=subprocess.PIPE, text=True
    )
    try:
        time.sleep(0.3)
        netns.in_ns(src.netns, "python3", "-c", _SEND.format(source=source, target=dst.ip))
        out, _ = receiver.communicate(timeout=5)
    finally:
        receiver.kill()
    return out.strip() == "got"


_RECEIVE = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 9999)); s.settimeout(1)
try:
    s.recv(16); print("got")
except OSError:
    print("nothing")
"""
_SEND = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("{source}", 0))
for _ in range(3):
    s.sendto(b"x", ("{target}", 9999))
"""
