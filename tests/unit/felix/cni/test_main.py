"""The executables' contract: one JSON object on stdout, exit 0 or 1, the right code, and no
traceback ever (it goes to the per-node log file)."""

import json
import logging

import pytest

from felix.cni import main
from felix.cni.protocol import CniError

CONF = {"cniVersion": "1.0.0", "name": "net1", "type": "calyx-cni", "ipam": {"type": "calyx-ipam"}}
ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "c1",
    "CNI_NETNS": "/run/netns/c1",
    "CNI_IFNAME": "eth0",
    "CNI_PATH": "/x",
}


@pytest.fixture(autouse=True)
def _restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


def invoke(handler, tmp_path, environ=ENV, conf=None):
    conf = {**CONF, "log_file_path": str(tmp_path / "node1" / "cni.log"), **(conf or {})}
    return main.invoke("calyx-cni", lambda: handler, environ, json.dumps(conf).encode())


def test_success_prints_the_handler_result(tmp_path):
    output, code = invoke(lambda request, conf, stdin: {"cniVersion": conf.cniVersion, "ips": []}, tmp_path)
    assert code == 0 and output == {"cniVersion": "1.0.0", "ips": []}


def test_a_cni_error_is_the_spec_error_object_and_logged(tmp_path):
    def fail(request, conf, stdin):
        raise CniError(11, "felix did not program the endpoint", "is calyx-node (felix) running on this node?")

    output, code = invoke(fail, tmp_path)
    assert code == 1
    assert output == {
        "cniVersion": "1.0.0",
        "code": 11,
        "msg": "felix did not program the endpoint",
        "details": "is calyx-node (felix) running on this node?",
    }
    assert "felix did not program the endpoint" in (tmp_path / "node1" / "cni.log").read_text()


def test_an_unexpected_exception_is_code_999_and_its_traceback_goes_to_the_log(tmp_path):
    def crash(request, conf, stdin):
        raise RuntimeError("boom")

    output, code = invoke(crash, tmp_path)
    assert code == 1 and output["code"] == 999
    assert output["msg"] == "calyx-cni failed: RuntimeError: boom" and "Traceback" not in json.dumps(output)
    assert output["details"] == f"see {tmp_path / 'node1' / 'cni.log'}"
    assert "Traceback" in (tmp_path / "node1" / "cni.log").read_text()


def test_sigterm_during_a_command_is_an_error_result(tmp_path):
    def terminated(request, conf, stdin):
        main._terminated(15, None)

    output, code = invoke(terminated, tmp_path)
    assert code == 1 and output["code"] == 999 and "terminated by signal 15" in output["msg"]


def test_version_needs_no_configuration():
    output, code = main.invoke("calyx-cni", lambda: None, {"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "0.4.0"}')
    assert code == 0 and output == {"cniVersion": "0.4.0", "supportedVersions": ["0.3.1", "0.4.0", "1.0.0", "1.1.0"]}
    output, code = main.invoke("calyx-cni", lambda: None, {"CNI_COMMAND": "VERSION"}, b"")
    assert code == 0 and output["cniVersion"] == "1.1.0"


@pytest.mark.parametrize(
    ("environ", "stdin", "code", "version"),
    [
        ({}, b"{}", 4, "1.1.0"),
        (ENV, b"not json", 6, "1.1.0"),
        (ENV, json.dumps({**CONF, "cniVersion": "0.2.0"}).encode(), 1, "0.2.0"),
        (ENV, json.dumps({**CONF, "mtu": -1}).encode(), 7, "1.0.0"),
        ({**ENV, "CNI_COMMAND": "GC"}, json.dumps(CONF).encode(), 1, "1.0.0"),
    ],
)
def test_errors_before_the_handler_carry_their_code_and_the_request_version(environ, stdin, code, version):
    output, exit_code = main.invoke("calyx-cni", lambda: pytest.fail("the handler must not run"), environ, stdin)
    assert exit_code == 1 and output["code"] == code and output["cniVersion"] == version


def test_the_main_writes_one_line_of_json(tmp_path, monkeypatch, capsys):
    import io

    monkeypatch.setattr(main.signal, "signal", lambda *args: None)
    monkeypatch.setattr(main.os, "environ", {"CNI_COMMAND": "VERSION"})
    out = io.StringIO()
    assert main._main("calyx-cni", lambda: None, io.BytesIO(b'{"cniVersion":"1.0.0"}'), out) == 0
    assert json.loads(out.getvalue())["supportedVersions"][-1] == "1.1.0" and out.getvalue().count("\n") == 1
