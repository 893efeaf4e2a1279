"""policyctl explain, diff --flows, apply --dry-run's flow summary and reachability, over FakeKV."""

import json

import pytest
from click.testing import CliRunner

import policy.ctl.main
from tests.fakes import FakeKV

STATE = """\
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {ns: x}}
---
apiVersion: calyx.io/v1
kind: WorkloadEndpoint
metadata: {name: a, namespace: x, labels: {pod: a}}
spec: {node: n1, interfaceName: cxa, orchestrator: k8s, ipNetworks: [198.19.0.1/32], ports: [{name: http, port: 8080}]}
---
apiVersion: calyx.io/v1
kind: WorkloadEndpoint
metadata: {name: b, namespace: x, labels: {pod: b}}
spec: {node: n2, interfaceName: cxb, orchestrator: k8s, ipNetworks: [198.19.0.2/32]}
---
apiVersion: calyx.io/v1
kind: GlobalNetworkSet
metadata: {name: internet, labels: {role: internet}}
spec: {nets: [0.0.0.0/0]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: x}
spec: {podSelector: {}, policyTypes: [Ingress]}
"""
ALLOW_B = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-b, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}], ports: [{port: http}]}]
"""


@pytest.fixture
def kv(monkeypatch, tmp_path):
    fake = FakeKV()
    monkeypatch.setattr(policy.ctl.main, "EtcdKV", lambda settings: fake)
    path = tmp_path / "state.yaml"
    path.write_text(STATE)
    assert ctl("apply", "-f", str(path)).exit_code == 0
    return fake


def ctl(*args):
    return CliRunner().invoke(policy.ctl.main.cli, list(args), catch_exceptions=False)


def test_explain_names_the_tier_default_that_denies_and_the_side_that_allows(kv):
    result = ctl("explain", "x/b", "x/a", "--port", "8080")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == ("WorkloadEndpoint x/b (198.19.0.2) -> WorkloadEndpoint x/a (198.19.0.1), TCP port 8080: denied")
    assert "  egress at x/b: allowed" in lines
    assert "  ingress at x/a: denied" in lines
    assert any("NetworkPolicy x/knp.default.deny-all decided; tier default ends" in line for line in lines)


def test_explain_json_names_the_rule_by_policy_and_index(kv, tmp_path):
    path = tmp_path / "allow.yaml"
    path.write_text(ALLOW_B)
    assert ctl("apply", "-f", str(path)).exit_code == 0
    document = json.loads(ctl("explain", "198.19.0.2", "x/a", "--port", "8080", "-o", "json").output)
    assert document["allowed"] is True
    ingress = document["decisions"][-1]
    assert (ingress["policy"], ingress["ruleIndex"], ingress["tier"], ingress["reason"]) == (
        "NetworkPolicy x/knp.default.allow-b",
        0,
        "default",
        "rule",
    )
    assert ingress["rule"]["destination"] == {"ports": ["http"]}


def test_explain_from_a_network_set_address_has_only_the_ingress_side(kv):
    document = json.loads(ctl("explain", "8.8.8.8", "x/b", "--port", "80", "-o", "json").output)
    assert document["source"]["what"] == "GlobalNetworkSet internet"
    assert [d["direction"] for d in document["decisions"]] == ["Ingress"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["x/nobody", "x/a", "--port", "80"], "no workload endpoint or network set named 'x/nobody'"),
        (["x/b", "x/a"], "--port is needed for TCP"),
        (["x/b", "fd00::1", "--port", "80"], "x/b has no IPv6 address"),
    ],
)
def test_explain_bad_ends_are_clear_errors(kv, args, message):
    result = ctl("explain", *args)
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output


def test_diff_flows_lists_what_opens_and_exits_1_and_dry_run_prints_the_same(kv, tmp_path):
    path = tmp_path / "allow.yaml"
    path.write_text(ALLOW_B)
    result = ctl("diff", "--flows", "-f", str(path))
    assert result.exit_code == 1, result.output
    summary = result.output[result.output.index("flows:") :].splitlines()
    assert summary == [
        "flows: 1 opened, 0 closed",
        "opened by NetworkPolicy x/knp.default.allow-b Ingress rule 0 (Allow):",
        "  WorkloadEndpoint x/b -> WorkloadEndpoint x/a: TCP 8080",
    ]
    dry = ctl("apply", "--dry-run", "-f", str(path))
    assert dry.exit_code == 0 and dry.output.splitlines()[1:] == summary
    assert kv.get("/calyx/v1/networkpolicies/x/knp.default.allow-b") is None  # nothing written


def test_diff_flows_that_only_closes_exits_0_and_the_bound_is_enforced(kv, tmp_path):
    path = tmp_path / "deny.yaml"
    path.write_text(
        "apiVersion: calyx.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: no-egress}\n"
        "spec: {selector: pod == 'b', types: [Egress]}\n"
    )
    result = ctl("diff", "--flows", "-f", str(path))
    assert result.exit_code == 0, result.output
    assert "flows: 0 opened, 2 closed" in result.output
    assert "WorkloadEndpoint x/b -> GlobalNetworkSet internet: TCP 1-65535, UDP 1-65535" in result.output
    bounded = ctl("diff", "--flows", "--max-checks", "3", "-f", str(path))
    assert bounded.exit_code == 2 and "more than --max-checks 3" in bounded.output


def test_reachability_table_and_svg(kv):
    table = ctl("reachability", "-n", "x", "--port", "8080").output.splitlines()
    assert table[0] == "reachability, TCP port 8080, IPv4 (rows: from, columns: to)"
    assert table[2].split() == ["1", "x/a", "-", "X"]
    assert table[3].split() == ["2", "x/b", "X", "-"]
    picture = ctl("reachability", "-l", "pod == 'a'", "--network-sets", "-o", "svg").output
    assert picture.startswith("<svg") and picture.rstrip().endswith("</svg>")
    assert "x/a -&gt; x/a: itself" in picture
    assert ctl("reachability", "-l", "pod ==").exit_code == 2
