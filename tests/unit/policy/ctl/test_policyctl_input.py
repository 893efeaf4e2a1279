"""policyctl's input handling (issue 9): bytes that are not UTF-8, empty files, every bad
document of every file, and what `get` prints applying back unchanged."""

import json

import pytest

from tests.unit.policy.ctl.cli import ctl

TIER = "apiVersion: calyx.io/v1\nkind: Tier\nmetadata: {name: security}\nspec: {order: 100}\n"


def test_a_file_that_is_not_utf8_is_an_error_naming_file_and_offset(kv, tmp_path):
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(TIER.replace("spec:", "# r\xe9seau\nspec:").encode("latin-1"))
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(128, 256)))
    result = ctl("apply", "-f", str(latin1), "-f", str(binary))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{latin1}: is not UTF-8 text: byte 0xe9 at offset 65 (line 4)" in result.output
    assert f"{binary}: is not UTF-8 text: byte 0x80 at offset 8 (line 1)" in result.output
    assert kv.data == {}
    result = ctl("validate", "-f", "-", input=b"kind: \xff\n")
    assert result.exit_code == 1 and "<stdin>: is not UTF-8 text: byte 0xff at offset 6 (line 1)" in result.output


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n", "---\n---\n"])
def test_an_empty_file_holds_no_documents(kv, tmp_path, text):
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    result = ctl("apply", "-f", str(path))
    assert result.exit_code == 1 and f"file {path} holds no documents" in result.output
    assert kv.data == {}


def test_a_missing_path_is_still_bad_usage(tmp_path):
    assert ctl("validate", "-f", str(tmp_path / "nowhere.yaml")).exit_code == 2


def test_every_bad_document_in_every_file_is_reported_and_nothing_written(kv, tmp_path):
    bad_name = TIER.replace("name: security", "name: Security")
    bad_order = TIER.replace("order: 100", "order: high")
    (tmp_path / "a.yaml").write_text("---\n".join([TIER, bad_name, bad_order]))
    (tmp_path / "b.yaml").write_text(TIER.replace("kind: Tier", "kind: Teir"))
    (tmp_path / "c.yaml").write_text(TIER.replace("security", "other"))
    (tmp_path / "d.yaml").write_text("# nothing yet\n")
    (tmp_path / "more").mkdir()  # not read: a directory is not walked
    extra = tmp_path / "more" / "extra.yml"
    extra.write_text("apiVersion: calyx.io/v1\nkind: Tier\nmetadata: {name: x}\nspec: {order: 1}\nspec: {order: 2}\n")
    result = ctl("apply", "-f", str(tmp_path), "-f", str(extra))
    assert result.exit_code == 1
    for line in [
        f"{tmp_path}/a.yaml: document 2 (Tier Security): metadata.name: 'Security' is not a valid name",
        f"{tmp_path}/a.yaml: document 3 (Tier security): spec.order: Input should be a valid number",
        f"{tmp_path}/b.yaml: document 1 (Teir security): kind: unknown kind 'Teir'",
        f"file {tmp_path}/d.yaml holds no documents",
        f"{extra}: document 1: invalid YAML at line 5, column 1: duplicate key 'spec' (first at line 4)",
        "5 errors in 4 files",
    ]:
        assert line in result.output
    assert kv.data == {}
    assert ctl("validate", "-f", str(tmp_path / "c.yaml")).output.strip() == "1 resource valid"


APPLIED = """\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: db
  namespace: prod
  labels: {build: '1e3', release: '0o17', enabled: true}
spec:
  selector: role == 'db'
  ingress:
  - action: Allow
    protocol: TCP
    destination: {ports: [5432, 20:21]}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: web, namespace: prod}
spec: {selector: role == 'web', egress: [{action: Allow}]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: dns, labels: {role: dns}}
spec: {nets: [10.0.0.53/32]}
"""


def test_what_get_prints_applies_back_unchanged(kv, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(APPLIED)
    assert ctl("apply", "-f", str(path)).exit_code == 0
    yaml_out = ctl("get", "networkpolicy", "-n", "prod", "-o", "yaml").output
    json_out = ctl("get", "globalnetworksets", "-o", "json").output
    assert json.loads(json_out)["kind"] == "List"
    assert "build: '1e3'" in yaml_out
    for exported in (yaml_out, json_out):
        result = ctl("apply", "--dry-run", "-f", "-", input=exported)
        assert result.exit_code == 0, result.output
        assert result.output.count("unchanged (dry run)") == result.output.count("\n") > 0
        assert ctl("apply", "-f", "-", input=exported).exit_code == 0
    assert ctl("get", "networkpolicy", "db", "-n", "prod", "-o", "yaml").output.count("20:21") == 1


def test_calicoctl_get_output_applies(kv):
    exported = """\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSetList
metadata:
  resourceVersion: "7"
items:
- apiVersion: projectcalico.org/v3
  kind: GlobalNetworkSet
  metadata:
    creationTimestamp: 2024-05-01T10:00:00Z
    generation: 1
    name: dns
    resourceVersion: "6"
    uid: 3b1e2e0c-9d0a-4c53-8c36-6ad2b4e1f0aa
  spec:
    nets: [10.0.0.53/32]
  status: {}
"""
    result = ctl("create", "-f", "-", input=exported.replace('    resourceVersion: "6"\n', ""))
    assert result.exit_code == 0, result.output
    assert "creationTimestamp: '2024-05-01T10:00:00Z'" in ctl("get", "gns", "dns", "-o", "yaml").output
