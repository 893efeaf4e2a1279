"""policyctl never prints a BGPPeer's password unless asked (--show-secrets): YAML, JSON,
tables and diffs show <redacted>; <redacted> itself is refused as a password."""

import json

import pytest
import yaml

from tests.unit.policy.ctl.cli import ctl

PASSWORD = "hunter2-bgp"
PEER = (
    "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: tor}\n"
    f"spec: {{peerIP: 10.0.0.9, asNumber: 65001, password: {PASSWORD}}}\n"
)


@pytest.fixture
def stored(kv):
    assert ctl("apply", "-f", "-", input=PEER).exit_code == 0
    return kv


@pytest.mark.parametrize("fmt", ["yaml", "json", "table", "wide"])
@pytest.mark.parametrize("names", [["tor"], []])
def test_get_never_prints_the_password_without_show_secrets(stored, fmt, names):
    result = ctl("get", "bgppeer", *names, "-o", fmt)
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    if fmt == "yaml":
        assert yaml.safe_load(result.output)["spec"]["password"] == "<redacted>"
    elif fmt == "json":
        document = json.loads(result.output)
        spec = document["spec"] if names else document["items"][0]["spec"]
        assert spec["password"] == "<redacted>"
    else:
        assert "tor" in result.output and "10.0.0.9" in result.output


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_show_secrets_prints_the_password(stored, fmt):
    result = ctl("get", "bgppeer", "tor", "-o", fmt, "--show-secrets")
    assert result.exit_code == 0 and PASSWORD in result.output


def test_a_secret_is_part_of_what_get_shows_and_applies_back_only_with_show_secrets(stored):
    exported = ctl("get", "bgppeer", "tor", "-o", "yaml", "--show-secrets").output
    assert ctl("apply", "-f", "-", input=exported).exit_code == 0
    redacted = ctl("get", "bgppeer", "tor", "-o", "yaml").output
    result = ctl("apply", "-f", "-", input=redacted)
    assert result.exit_code == 1 and "spec.password" in result.output and "--show-secrets" in result.output


def test_diff_shows_that_a_password_changed_without_printing_either(stored):
    changed = PEER.replace(PASSWORD, "new-secret-2")
    result = ctl("diff", "-f", "-", input=changed)
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output and "new-secret-2" not in result.output
    assert "-  password: <redacted>" in result.output and "+  password: <redacted> (changed)" in result.output
    assert "1 of 1 resources would change" in result.output
    shown = ctl("diff", "-f", "-", "--show-secrets", input=changed).output
    assert f"-  password: {PASSWORD}" in shown and "+  password: new-secret-2" in shown


def test_an_unchanged_password_is_no_change_and_a_new_peer_is_redacted(stored):
    assert "0 of 1 resources would change" in ctl("diff", "-f", "-", input=PEER).output
    other = PEER.replace("name: tor", "name: tor2")
    result = ctl("diff", "-f", "-", input=other)
    assert PASSWORD not in result.output and "+  password: <redacted>" in result.output
