"""felix's command: a health port that is taken (or an address that is not this host's) is a
one-line error and exit 1, not an OSError traceback; nothing runs."""

import os
import socket
import subprocess
import sys
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry

import felix.main
from felix.health import Status
from policy.runtime.run_dir import hold_run_dir
from tests.fakes import FakeKV


class StubAgent:
    runs = 0

    def __init__(self, config, kv, kernel, nft):
        self.status = Status()
        self.loop = SimpleNamespace(stop=lambda: None, liveness=lambda: (True, {}))
        self.metrics = SimpleNamespace(registry=CollectorRegistry())
        self.flow_log = None

    def run(self):
        StubAgent.runs += 1


class StubKernel:
    closed = 0

    def close(self):
        StubKernel.closed += 1


@pytest.fixture
def stubs(monkeypatch, tmp_path):
    StubAgent.runs = StubKernel.closed = 0
    monkeypatch.setenv("CALYX_RUN_DIR", str(tmp_path / "run"))  # never the host's /run/calyx
    monkeypatch.setenv("CALYX_NODENAME_FILE", str(tmp_path / "lib" / "nodename"))  # nor /var/lib/calyx
    kv = FakeKV()
    monkeypatch.setattr(felix.main, "EtcdKV", lambda settings: kv)
    monkeypatch.setattr(felix.main, "Agent", StubAgent)
    monkeypatch.setattr(felix.main, "NetlinkKernel", StubKernel)
    monkeypatch.setattr(felix.main, "LibNftables", lambda: None)
    monkeypatch.setattr(felix.main.signal, "signal", lambda *args: None)


def felix_cli(*args):
    return CliRunner().invoke(felix.main.cli, ["--node-name", "n1", *args], env={"CALYX_HEALTH_PORT": None})


def test_a_health_port_already_taken_is_a_clean_error_and_exit_1(stubs):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        result = felix_cli("--health-host", "127.0.0.1", "--health-port", str(port))
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    assert f"Error: cannot serve /livez, /readyz and /metrics on 127.0.0.1:{port}: Address already in use" in (
        result.output
    )
    assert "--health-port" in result.output
    assert StubAgent.runs == 0 and StubKernel.closed == 1


def test_a_health_address_this_host_does_not_have_is_a_clean_error(stubs):
    result = felix_cli("--health-host", "192.0.2.123", "--health-port", "9099")
    assert result.exit_code == 1, result.output
    assert "cannot serve /livez, /readyz and /metrics on 192.0.2.123:9099" in result.output
    assert "check --health-host" in result.output and "Traceback" not in result.output


def test_the_agent_runs_with_the_server_off(stubs):
    result = felix_cli("--health-port", "0")
    assert result.exit_code == 0, result.output
    assert StubAgent.runs == 1


def test_a_second_felix_on_the_same_run_directory_is_refused(stubs, tmp_path):
    lock = hold_run_dir(tmp_path / "run")
    try:
        result = felix_cli("--health-port", "0")
    finally:
        lock.close()
    assert result.exit_code == 1 and StubAgent.runs == 0
    assert f"Error: run directory {tmp_path / 'run'} is in use by another process (pid {os.getpid()})" in result.output
    assert felix_cli("--health-port", "0").exit_code == 0 and StubAgent.runs == 1


def test_felix_records_its_node_name_for_the_cni_plugin(stubs, tmp_path):
    assert felix_cli("--health-port", "0").exit_code == 0
    assert (tmp_path / "lib" / "nodename").read_text() == "n1"


def test_a_node_name_file_that_cannot_be_written_is_a_clean_error(stubs, tmp_path):
    (tmp_path / "lib").write_text("a file where the directory should be")
    result = felix_cli("--health-port", "0")
    assert result.exit_code == 1 and StubAgent.runs == 0
    assert f"cannot record the node name in {tmp_path / 'lib' / 'nodename'} (--nodename-file)" in result.output


def test_starting_felix_does_not_import_pyroute2():
    """pyroute2's package import (~60 ms) happens in the link-watch thread, while the first etcd
    list is under way, not before felix can start listing."""
    code = "import sys, felix.main; print(sorted(m for m in sys.modules if m.startswith('pyroute2')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"
