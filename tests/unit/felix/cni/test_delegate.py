"""Delegation to the IPAM plugin: found in CNI_PATH, run with our environment, its error passed on."""

import json
import os

import pytest

from felix.cni.delegate import run_delegate
from felix.cni.protocol import INVALID_CONFIG, CniError


def plugin(tmp_path, body: str) -> dict:
    path = tmp_path / "bin" / "fake-ipam"
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    os.chmod(path, 0o755)
    return {"CNI_PATH": f"{tmp_path / 'empty'}:{path.parent}", "CNI_CONTAINERID": "c1"}


def test_runs_the_plugin_with_the_command_and_our_environment(tmp_path):
    environ = plugin(
        tmp_path, 'cat >/dev/null; echo "{\\"cmd\\": \\"$CNI_COMMAND\\", \\"id\\": \\"$CNI_CONTAINERID\\"}"'
    )
    assert run_delegate("fake-ipam", "ADD", environ, b"{}") == {"cmd": "ADD", "id": "c1"}


def test_an_empty_answer_is_none(tmp_path):
    assert run_delegate("fake-ipam", "DEL", plugin(tmp_path, "exit 0"), b"{}") is None


def test_the_plugins_error_is_passed_on(tmp_path):
    body = 'echo \'{"cniVersion": "1.0.0", "code": 11, "msg": "etcd down", "details": "retry"}\'; exit 1'
    with pytest.raises(CniError) as caught:
        run_delegate("fake-ipam", "ADD", plugin(tmp_path, body), b"{}")
    assert (caught.value.code, caught.value.msg, caught.value.details) == (
        11,
        "IPAM plugin fake-ipam: etcd down",
        "retry",
    )


def test_a_crash_without_json_is_reported(tmp_path):
    with pytest.raises(CniError) as caught:
        run_delegate("fake-ipam", "ADD", plugin(tmp_path, "echo oops; exit 2"), b"{}")
    assert "failed (exit 2): 'oops'" in caught.value.msg


def test_a_missing_plugin_is_a_config_error(tmp_path):
    with pytest.raises(CniError) as caught:
        run_delegate("host-local", "ADD", {"CNI_PATH": str(tmp_path)}, json.dumps({}).encode())
    assert (
        caught.value.code == INVALID_CONFIG
        and f"IPAM plugin 'host-local' not found in CNI_PATH ({tmp_path})" in caught.value.msg
    )
