"""calyx-bgp's command: a health port that is taken is a one-line error and exit 1, not an
OSError traceback; its log handlers redact BGP passwords."""

import io
import logging
import socket
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

import bgp.main
from bgp.exabgp import RedactPasswords
from tests.fakes import FakeKV


class StubRoutes:
    closed = 0

    def host_addresses(self):
        return [("eth0", "10.0.0.1/24")]

    def source_for(self, address):
        return "10.0.0.1"

    def close(self):
        StubRoutes.closed += 1


class StubDaemon:
    runs = 0

    def __init__(self, config, kv, routes, speaker, metrics):
        self.loop = SimpleNamespace(stop=lambda: None, liveness=lambda: (True, {}))

    def ready(self):
        return True, {}

    def run(self, stop):
        StubDaemon.runs += 1


@pytest.fixture
def stubs(monkeypatch):
    StubRoutes.closed = StubDaemon.runs = 0
    kv = FakeKV()
    monkeypatch.setattr(bgp.main, "EtcdKV", lambda settings: kv)
    monkeypatch.setattr(bgp.main, "NetlinkRoutes", StubRoutes)
    monkeypatch.setattr(bgp.main, "BgpDaemon", StubDaemon)
    monkeypatch.setattr(bgp.main.signal, "signal", lambda *args: None)
    return kv


def test_a_health_port_already_taken_is_a_clean_error_and_exit_1(stubs, tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        result = CliRunner().invoke(
            bgp.main.cli,
            ["--node-name", "n1", "--ip", "10.0.0.1/24", "--run-dir", str(tmp_path / "run")]
            + ["--health-host", "127.0.0.1", "--health-port", str(port)],
            env={"CALYX_BGP_HEALTH_PORT": None},
        )
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    assert f"Error: cannot serve /livez, /readyz and /metrics on 127.0.0.1:{port}: Address already in use" in (
        result.output
    )
    assert StubDaemon.runs == 0 and StubRoutes.closed == 1


def test_the_log_filter_redacts_passwords_in_messages_and_tracebacks():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactPasswords())
    logger = logging.getLogger("test-redact")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("config was: %s", 'neighbor 10.0.0.9 {\n    md5-password "hunter2";\n}')
        try:
            raise ValueError('bad line: md5-password "hunter2";')
        except ValueError:
            logger.exception("ExaBGP refused its configuration")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "hunter2" not in text
    assert "md5-password <redacted>" in text and "ValueError" in text
