"""A selector set changing kind in the kernel (issue 15): a hash set while its members are pods,
an interval set once an endpoint with a /24 joins, a hash set again when it leaves. The policy's
chain switches to the new set in the transaction that deletes the old one, so an allowed flow
keeps flowing across both switches and the verdicts are right before, between and after."""

import json
import subprocess

import pytest

from policy.datastore.store import Ref, WriteMode
from policy.model.resources import Metadata, WorkloadEndpoint, WorkloadEndpointSpec
from tests.lab import netns
from tests.lab.netpol import Reachability
from tests.lab.traffic import PROBE

pytestmark = pytest.mark.integration

OUTSIDE_LINK = 153  # a fabric host, 198.18.153.2 (152 is test_nat_outgoing's), inside the wide endpoint's network
POLICY = """\
apiVersion: calyx.io/v1
kind: NetworkPolicy
metadata: {name: only-b, namespace: x}
spec:
  selector: pod == 'a'
  types: [Ingress]
  ingress: [{action: Allow, source: {selector: pod == 'b'}}]
"""
WIDE = WorkloadEndpoint(
    metadata=Metadata(name="wide", namespace="x", labels={"pod": "b"}),
    spec=WorkloadEndpointSpec(node="elsewhere", interfaceName="cxwide", ipNetworks=[f"198.18.{OUTSIDE_LINK}.0/24"]),
)


def _sets_holding(netpol, node: str, address: str) -> list[tuple[str, tuple]]:
    """(name, flags) of every selector set of the node's table with address among its elements."""
    out = netns.in_ns(netpol.lab.nodes[node].netns, "nft", "-j", "list", "table", "inet", "calyx").stdout
    found = []
    for obj in json.loads(out)["nftables"]:
        body = obj.get("set")
        if body and body["name"].startswith("sel4-") and f'"{address}"' in json.dumps(body.get("elem", [])):
            found.append((body["name"], tuple(body.get("flags", ()))))
    return found


def test_a_selector_set_changes_kind_without_dropping_an_allowed_flow(netpol):
    outside = netpol.lab.add_fabric_host(OUTSIDE_LINK)
    a, b = netpol.pods["x/a"], netpol.pods["x/b"]
    netpol.apply(POLICY)
    expected = Reachability(True).ingress("x/a", False).expect("x/b", "x/a", True)
    expected.check(netpol.matrix(80, "tcp"), "only x/b reaches x/a")
    ((hashed, flags),) = _sets_holding(netpol, a.node, b.ip)
    assert flags == (), f"{hashed}: the pods' set is a hash set"
    assert netpol.reachable_from(outside, ["x/a"]) == {"x/a": False}
    flow = subprocess.Popen(
        ["ip", "netns", "exec", b.netns, "python3", PROBE, "flow", a.ip, "80", "6"], stdout=subprocess.PIPE, text=True
    )
    try:
        netpol.wait(netpol.lab.store.write([WIDE], WriteMode.APPLY))
        assert _sets_holding(netpol, a.node, b.ip) == [(f"{hashed}-i", ("interval",))]
        assert netpol.reachable_from(outside, ["x/a"]) == {"x/a": True}  # the /24 is in it, and used
        netpol.wait(netpol.lab.store.delete([Ref(WorkloadEndpoint, "wide", "x")]))
        assert _sets_holding(netpol, a.node, b.ip) == [(hashed, ())]
        out, _ = flow.communicate(timeout=30)
    finally:
        flow.kill()
        if _wide_exists(netpol):
            netpol.wait(netpol.lab.store.delete([Ref(WorkloadEndpoint, "wide", "x")]))
    attempts, failures = map(int, out.split())
    assert attempts > 20 and failures == 0, f"{failures} of {attempts} connections x/b -> x/a failed"
    assert netpol.reachable_from(outside, ["x/a"]) == {"x/a": False}
    expected.check(netpol.matrix(80, "tcp"), "only x/b reaches x/a, after both switches")


def _wide_exists(netpol) -> bool:
    return any(e.name == "wide" for e in netpol.lab.store.list_kind(WorkloadEndpoint)[0])
