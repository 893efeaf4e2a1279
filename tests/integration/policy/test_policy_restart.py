"""An agent restart never flushes the table: policy holds and allowed traffic keeps flowing
while felix is dead and while it rebuilds; a change made meanwhile is applied after in-sync."""

import subprocess

import pytest

from policy.datastore.store import WriteMode
from tests.lab.netpol import Reachability
from tests.lab.traffic import PROBE
from tests.policy_model import docs

pytestmark = pytest.mark.integration

POLICY = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: only-b, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{podSelector: {matchExpressions: [{key: pod, operator: In, values: [PEERS]}]}}]}]
"""


def test_policy_holds_and_traffic_flows_across_a_felix_restart(netpol):
    netpol.apply(POLICY.replace("PEERS", "b"))
    a, b = netpol.pods["x/a"], netpol.pods["x/b"]
    lab, node = netpol.lab, a.node
    flow = subprocess.Popen(
        ["ip", "netns", "exec", b.netns, "python3", PROBE, "flow", a.ip, "80", "8"], stdout=subprocess.PIPE, text=True
    )
    try:
        lab.nodes[node].felix.kill9()
        lab.daemons.remove(lab.nodes[node].felix)
        lab.nodes[node].felix = None
        Reachability(True).ingress("x/a", False).expect("x/b", "x/a", True).check(
            netpol.matrix(80, "tcp"), "felix dead"
        )
        revision = lab.store.write(docs(POLICY.replace("PEERS", "b, c")), WriteMode.APPLY)
        lab.start_felix(node)
        netpol.wait(revision)
        out, _ = flow.communicate(timeout=30)
    finally:
        flow.kill()
    attempts, failures = map(int, out.split())
    assert attempts > 50 and failures == 0, f"{failures} of {attempts} connections failed across the restart"
    Reachability(True).ingress("x/a", False).expect("x/b", "x/a", True).expect("x/c", "x/a", True).check(
        netpol.matrix(80, "tcp"), "the change made while felix was down is applied"
    )
