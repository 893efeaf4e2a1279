import json

import pytest
import yaml
from click.testing import CliRunner

import policy.ctl.main
from policy.runtime.status import policy_status_key
from tests.unit.policy.ctl.cli import ctl

NODE = "apiVersion: calyx.io/v1\nkind: Node\nmetadata: {name: n1}\nspec: {bgp: {asNumber: 64512, ipv4Address: 198.18.1.2/24}}\n"
WEP = (
    "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {name: w1, namespace: prod, labels: {app: web}}\n"
    "spec: {node: n1, interfaceName: cxa, ipNetworks: [198.19.1.1/32]}\n"
)
NS = "apiVersion: v1\nkind: Namespace\nmetadata: {name: prod}\n"


def test_apply_get_delete_round_trip_of_every_kind(kv, tmp_path):
    path = tmp_path / "all.yaml"
    path.write_text("---\n".join([NODE, WEP, NS]))
    result = ctl("apply", "-f", str(path))
    assert result.exit_code == 0, result.output
    assert "WorkloadEndpoint prod/w1 applied" in result.output
    for kind, args, check in [
        ("node", ["n1"], lambda d: d["spec"]["bgp"]["asNumber"] == 64512),
        ("wep", ["w1", "-n", "prod"], lambda d: d["spec"]["ipNetworks"] == ["198.19.1.1/32"]),
        ("namespace", ["prod"], lambda d: d["metadata"]["labels"]["kubernetes.io/metadata.name"] == "prod"),
    ]:
        out = ctl("get", kind, *args, "-o", "yaml")
        assert out.exit_code == 0, out.output
        assert check(yaml.safe_load(out.output))
        assert json.loads(ctl("get", kind, *args, "-o", "json").output)["apiVersion"] == "calyx.io/v1"
    table = ctl("get", "workloadendpoints", "-A").output.splitlines()
    assert table[0].split() == ["NAMESPACE", "NAME", "NODE", "INTERFACE", "NETWORKS"]
    assert table[1].split() == ["prod", "w1", "n1", "cxa", "198.19.1.1/32"]
    assert "LABELS" in ctl("get", "wep", "-n", "prod", "-o", "wide").output
    # What get prints can be applied back (its resourceVersion makes it a compare-and-swap).
    exported = ctl("get", "wep", "w1", "-n", "prod", "-o", "yaml").output
    assert ctl("apply", "-f", "-", input=exported).exit_code == 0
    assert ctl("apply", "-f", "-", input=exported).exit_code == 1  # now stale
    assert ctl("delete", "-f", str(path)).exit_code == 0
    assert kv.data == {}


@pytest.mark.parametrize(
    "bad, message",
    [
        ("kind: [", "document 2: invalid YAML at line"),
        ("apiVersion: calyx.io/v1\nkind: Gizmo\nmetadata: {name: g}\n", "document 2 (Gizmo g): kind: unknown kind"),
        (
            "apiVersion: calyx.io/v1\nkind: WorkloadEndpoint\nmetadata: {name: w}\nspec: {interfaceName: cxa}\n",
            "spec.node: Field required",
        ),
        (
            "apiVersion: calyx.io/v1\nkind: WorkloadEndpoint\nmetadata: {name: w}\nspec: {node: [1], interfaceName: cxa}\n",
            "spec.node: Input should be a valid string",
        ),
        (
            "apiVersion: calyx.io/v1\nkind: WorkloadEndpoint\nmetadata: {name: w}\nspec: {node: n, interfaceName: cxa, ipNetworks: [300.1.1.1/32]}\n",
            "spec.ipNetworks[0]: '300.1.1.1/32' is not a valid CIDR",
        ),
    ],
)
def test_bad_document_fails_the_whole_file_and_writes_nothing(kv, tmp_path, bad, message):
    path = tmp_path / "bad.yaml"
    path.write_text(NODE + "---\n" + bad)
    result = ctl("apply", "-f", str(path))
    assert result.exit_code == 1
    assert f"{path}: document 2" in result.output and message in result.output
    assert kv.data == {}, "nothing of a bad file may be written"


def test_a_directory_with_one_bad_file_writes_nothing(kv, tmp_path):
    (tmp_path / "a.yaml").write_text(NODE)
    (tmp_path / "b.yaml").write_text("apiVersion: calyx.io/v1\nkind: Node\nmetadata: {name: BAD}\n")
    result = ctl("create", "-f", str(tmp_path))
    assert result.exit_code == 1 and "b.yaml: document 1 (Node BAD): metadata.name" in result.output
    assert kv.data == {}


def test_create_existing_and_delete_missing_fail_cleanly(kv):
    assert ctl("create", "-f", "-", input=NODE).exit_code == 0
    result = ctl("create", "-f", "-", input=NODE)
    assert result.exit_code == 1 and "already exists" in result.output
    result = ctl("delete", "node", "n1", "ghost")
    assert result.exit_code == 1 and "does not exist" in result.output
    assert ctl("get", "node", "n1").exit_code == 0
    assert ctl("replace", "-f", "-", input=NODE).exit_code == 0


def test_unknown_kind_and_unreachable_etcd(kv):
    result = ctl("get", "gizmos")
    assert result.exit_code == 2 and "unknown kind 'gizmos'" in result.output
    kv.set_down(True)
    result = ctl("get", "nodes")
    assert result.exit_code == 1 and "cannot reach etcd" in result.output


POLICY = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: prod}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{podSelector: {}}], ports: [{port: 80}]}]
---
apiVersion: calyx.io/v1
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
apiVersion: calyx.io/v1
kind: GlobalNetworkPolicy
metadata: {name: security.deny-bad}
spec: {tier: security, order: 10, selector: "app == 'bad'", ingress: [{action: Deny}], egress: [{action: Deny}]}
"""


def test_validate_needs_no_datastore_and_names_the_bad_field(tmp_path, monkeypatch):
    monkeypatch.setattr(policy.ctl.main, "EtcdKV", lambda settings: pytest.fail("validate must not open etcd"))
    good = tmp_path / "good.yaml"
    good.write_text(POLICY)
    assert ctl("validate", "-f", str(good)).output.strip() == "3 resources valid"
    bad = tmp_path / "bad.yaml"
    bad.write_text(POLICY.replace("app == 'bad'", "app == 'bad' &&"))
    result = ctl("validate", "-f", str(bad))
    assert result.exit_code == 1
    assert (
        "bad.yaml: document 3 (GlobalNetworkPolicy security.deny-bad): spec.selector: invalid selector: expected a label key, found end of selector at column 16"
        in result.output
    )


def test_dry_run_writes_nothing_and_says_what_would_happen(kv, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(POLICY)
    result = ctl("apply", "--dry-run", "-f", str(path))
    assert result.exit_code == 0 and "NetworkPolicy prod/knp.default.web would be created (dry run)" in result.output
    assert kv.data == {}
    ctl("apply", "-f", str(path))
    assert "unchanged (dry run)" in ctl("apply", "--dry-run", "-f", str(path)).output
    result = ctl("create", "--dry-run", "-f", str(path))
    assert result.exit_code == 1 and "already exists" in result.output


def test_diff_shows_only_what_would_change(kv, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(POLICY)
    ctl("apply", "-f", str(path))
    path.write_text(POLICY.replace("order: 10,", "order: 20,"))
    result = ctl("diff", "-f", str(path))
    assert result.exit_code == 0
    assert "-  order: 10.0" in result.output and "+  order: 20.0" in result.output
    assert "1 of 3 resources would change" in result.output
    assert kv.data[list(kv.data)[0]]  # nothing written by diff
    assert "order: 10.0" in ctl("get", "gnp", "security.deny-bad", "-o", "yaml").output


def test_wide_policy_listing_shows_order_tier_selector_rule_counts_and_status(kv, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(POLICY)
    ctl("apply", "-f", str(path))
    kv.put(
        policy_status_key("/calyx", "n1"),
        json.dumps({"/calyx/v1/globalnetworkpolicies/security.deny-bad": "boom"}).encode(),
    )
    lines = ctl("get", "gnp", "-o", "wide").output.splitlines()
    assert lines[0].split() == ["NAME", "TIER", "ORDER", "SELECTOR", "TYPES", "INGRESS", "EGRESS", "STATUS"]
    assert lines[1].split()[:3] == ["security.deny-bad", "security", "10"] and lines[1].endswith("n1: boom")
    lines = ctl("get", "networkpolicy", "-n", "prod", "-o", "wide").output.splitlines()
    assert lines[1].split() == ["knp.default.web", "default", "1000", "app", "==", "'web'", "Ingress", "1", "0", "ok"]


def test_every_kind_has_a_table(kv, tmp_path):
    from policy.ctl.output import COLUMNS
    from policy.model.kinds import KINDS

    assert set(KINDS.values()) == set(COLUMNS)
    path = tmp_path / "peer.yaml"
    path.write_text(
        "apiVersion: calyx.io/v1\nkind: BGPPeer\nmetadata: {name: tor}\nspec: {peerIP: 198.18.0.1, asNumber: 65001}\n"
    )
    assert ctl("apply", "-f", str(path)).exit_code == 0
    assert ctl("get", "bgppeers").output.splitlines()[1].split() == ["tor", "198.18.0.1", "65001", "(all)"]


def _many_sets(tmp_path, count: int):
    docs = [
        {"apiVersion": "calyx.io/v1", "kind": "GlobalNetworkSet", "metadata": {"name": f"s{i}"}, "spec": {"nets": []}}
        for i in range(count)
    ]
    path = tmp_path / "many.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return path


def test_an_apply_beyond_one_etcd_transaction_says_how_many_it_took(kv, tmp_path):
    result = ctl("apply", "-f", str(_many_sets(tmp_path, 150)))
    assert result.exit_code == 0
    assert result.output.splitlines()[-1].startswith("150 resources applied in 2 etcd transactions")
    assert "transactions" not in ctl("apply", "-f", str(_many_sets(tmp_path, 128))).output


def test_a_large_apply_that_fails_half_way_says_what_was_written(kv, tmp_path, monkeypatch):
    commit, calls = kv.commit, []

    def second_fails(writes):
        calls.append(len(writes))
        if len(calls) == 2:
            kv.set_down(True)
        return commit(writes)

    monkeypatch.setattr(kv, "commit", second_fails)
    result = CliRunner().invoke(policy.ctl.main.cli, ["apply", "-f", str(_many_sets(tmp_path, 150))])
    assert result.exit_code == 1 and calls == [128, 22]
    assert "only the first 128 of 150 resources were written" in result.output
    assert "Traceback" not in result.output
