"""calyx-cni-server without root: the plugins behind the wire format, calyx-ipam delegated
in-process, bad requests answered with a CNI error (never a traceback), the concurrency cap,
and the static C client against a served socket."""

import json
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from felix.cni.ipam import CalyxIpam
from felix.cni.plugin import CniPlugin, Services
from felix.cni.protocol import SUPPORTED_VERSIONS, CniError, version_result
from felix.cni.server import CniServer, cli, exchange, probe, serve
from felix.cni.wire import encode_request
from tests.unit.felix.cni.conftest import Harness

CLIENT_SOURCE = Path(__file__).parents[4] / "felix/cni/client/calyx-cni.c"


def server_for(cni: Harness) -> CniServer:
    """The harness's fakes (etcd, kernel, felix) behind a real CniServer and its delegation."""
    return CniServer(
        cni=lambda delegate: CniPlugin(Services(cni.dataplane, delegate, lambda conf: cni.kv, cni.fetch)).run,
        ipam=CalyxIpam(lambda conf: cni.kv).run,
    )


def ask(server: CniServer, program: str, environ: dict, conf: dict) -> tuple[int, dict | None]:
    code, stdout = server.answer(encode_request(program, environ, json.dumps(conf).encode()))
    return code, json.loads(stdout) if stdout else None


def test_add_through_the_server_delegates_to_calyx_ipam_in_process(cni):
    server = server_for(cni)
    code, result = ask(server, "calyx-cni", cni.environ("ADD", "c1", netns=cni.sandbox("c1")), cni.conf())
    assert code == 0, result
    assert [ip["address"].split("/")[0] for ip in result["ips"]] == [
        a.split("/")[0] for a in sorted(cni.allocated(), key=lambda a: ":" in a)
    ]
    assert list(cni.handles()) == ["net1.c1"]
    assert cni.delegated == []  # the harness's own delegate was not used: the server's was
    code, result = ask(server, "calyx-cni", cni.environ("DEL", "c1"), cni.conf())
    assert (code, result, cni.handles()) == (0, None, {})


def test_an_ipam_error_in_process_keeps_its_code_and_undoes_the_add(cni):
    cni.kv.data.clear()  # no pools
    code, error = ask(server_for(cni), "calyx-cni", cni.environ("ADD", "c1", netns=cni.sandbox("c1")), cni.conf())
    assert code == 1
    assert error["code"] == 101 and error["msg"].startswith("IPAM plugin calyx-ipam: ")
    assert (cni.dataplane.host, cni.dataplane.workloads, cni.handles()) == ({}, {}, {})


def test_calyx_ipam_answers_other_plugins_directly(cni):
    code, result = ask(server_for(cni), "calyx-ipam", cni.environ("ADD", "c2"), cni.conf(type="bridge"))
    assert code == 0 and len(result["ips"]) == 2
    assert list(cni.handles()) == ["net1.c2"]


def test_other_ipam_types_are_executed_from_cni_path(cni):
    with pytest.raises(CniError, match="IPAM plugin 'host-local' not found in CNI_PATH"):
        server_for(cni).delegate("host-local", "ADD", {"CNI_PATH": "/nonexistent"}, b"{}")


@pytest.mark.parametrize(
    ("data", "code", "message"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", 999, "calyx-cni-server: bad request: not a calyx-cni request (bad magic)"),
        (encode_request("calyx-cni", {"CNI_COMMAND": "NUKE"}, b"{}"), 4, "CNI_COMMAND 'NUKE' is not one of"),
        (encode_request("calyx-cni", {"CNI_COMMAND": "VERSION"}, b"")[:-6], 999, "cut short"),
    ],
)
def test_bad_requests_get_a_cni_error_and_no_traceback(cni, data, code, message):
    exit_code, stdout = server_for(cni).answer(data)
    error = json.loads(stdout)
    assert exit_code == 1 and error["code"] == code and message in error["msg"]
    assert "Traceback" not in stdout.decode()


def test_a_bug_in_the_plugin_is_code_999_not_a_traceback(cni):
    def broken(request, conf, stdin):
        raise RuntimeError("boom")

    server = CniServer(cni=lambda delegate: broken, ipam=broken)
    code, error = ask(server, "calyx-cni", cni.environ("ADD", "c1"), cni.conf())
    assert code == 1 and error["code"] == 999 and "RuntimeError: boom" in error["msg"]


@pytest.fixture
def served(tmp_path):
    """serve() on a socket in tmp_path, with a plugin that waits for the test's go."""
    go, started = threading.Event(), threading.Semaphore(0)

    def slow(request, conf, stdin):
        started.release()
        assert go.wait(10)
        return {"cniVersion": conf.cniVersion, "echo": request.environ["CNI_CONTAINERID"]}

    stop = threading.Event()
    path = str(tmp_path / "run" / "cni.sock")
    thread = threading.Thread(target=serve, args=(CniServer(lambda d: slow, slow), path, 1, 5.0, stop), daemon=True)
    thread.start()
    for _ in range(100):
        if Path(path).exists():
            break
        threading.Event().wait(0.05)
    yield path, go, started
    go.set()
    stop.set()
    thread.join(5)
    assert not Path(path).exists()


def call(path: str, container: str, padding: int = 0) -> tuple[int, dict]:
    env = {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": container, "CNI_IFNAME": "eth0", "CNI_PATH": "/x"}
    conf = {
        "cniVersion": "1.0.0",
        "name": "n",
        "type": "calyx-cni",
        "ipam": {"type": "calyx-ipam"},
        "pad": "x" * padding,
    }
    code, stdout = exchange(path, encode_request("calyx-cni", env, json.dumps(conf).encode()), 10)
    return code, json.loads(stdout)


def test_requests_over_the_cap_are_told_to_try_again_later(served):
    path, go, started = served
    first: list = []
    thread = threading.Thread(target=lambda: first.append(call(path, "c1")))
    thread.start()
    assert started.acquire(timeout=5)
    code, error = call(path, "c2")
    assert code == 1 and error["code"] == 11 and "busy" in error["msg"]
    code, error = call(path, "c3", padding=900_000)  # more than the socket buffers: the send breaks
    assert code == 1 and error["code"] == 11
    go.set()
    thread.join(10)
    assert first == [(0, {"cniVersion": "1.0.0", "echo": "c1"})]


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> Path:
    if not shutil.which("gcc"):
        pytest.skip("gcc is not installed (make setup installs it)")
    binary = tmp_path_factory.mktemp("client") / "calyx-cni"
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-o", str(binary), str(CLIENT_SOURCE)], check=True)
    return binary


def test_the_c_client_speaks_the_wire_format(served, client):
    path, go, _ = served
    go.set()
    env = {"CALYX_CNI_SOCKET": path, "CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c9", "CNI_IFNAME": "e", "CNI_PATH": "/"}
    conf = {"cniVersion": "1.0.0", "name": "n", "type": "calyx-cni", "ipam": {"type": "calyx-ipam"}}
    done = subprocess.run([client], input=json.dumps(conf).encode(), env=env, capture_output=True, timeout=20)
    assert (done.returncode, json.loads(done.stdout)) == (0, {"cniVersion": "1.0.0", "echo": "c9"})


def test_the_c_client_turned_away_mid_send_reports_the_busy_answer(served, client):
    path, go, started = served
    first = threading.Thread(target=lambda: call(path, "c1"))
    first.start()
    assert started.acquire(timeout=5)
    env = {"CALYX_CNI_SOCKET": path, "CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c2", "CNI_IFNAME": "e", "CNI_PATH": "/"}
    conf = {
        "cniVersion": "1.0.0",
        "name": "n",
        "type": "calyx-cni",
        "ipam": {"type": "calyx-ipam"},
        "pad": "x" * 900_000,
    }
    done = subprocess.run([client], input=json.dumps(conf).encode(), env=env, capture_output=True, timeout=20)
    go.set()
    first.join(10)
    assert done.returncode == 1 and json.loads(done.stdout)["code"] == 11, done.stderr


def test_the_c_client_finds_the_socket_in_the_configuration(served, client):
    path, go, _ = served
    go.set()
    conf = {"cniVersion": "1.0.0", "name": "n", "type": "calyx-cni", "cni_socket": path, "ipam": {"type": "x"}}
    env = {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c8", "CNI_IFNAME": "e", "CNI_PATH": "/"}
    done = subprocess.run([client], input=json.dumps(conf).encode(), env=env, capture_output=True, timeout=20)
    assert json.loads(done.stdout)["echo"] == "c8"


def test_the_c_client_without_a_server_says_what_to_check(tmp_path, client):
    missing = str(tmp_path / "cni.sock")
    done = subprocess.run(
        [client], input=b"{}", env={"CALYX_CNI_SOCKET": missing, "CNI_COMMAND": "ADD"}, capture_output=True
    )
    error = json.loads(done.stdout)
    assert done.returncode == 1 and error["code"] == 11
    assert error["msg"] == f"is calyx-node running on this node? cannot reach {missing}: No such file or directory"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("run/cni.sock", "must be an absolute path"),
        ("/" + "x" * 107, "is too long for a unix socket path"),
        ('/run/\\"x\\".sock', "must not contain quotes or backslashes"),
        (5, "must be a string"),
    ],
)
def test_the_c_client_refuses_a_bad_cni_socket_as_the_server_would(tmp_path, client, value, message):
    conf = {"cniVersion": "1.0.0", "name": "n", "type": "calyx-cni", "cni_socket": value}
    done = subprocess.run([client], input=json.dumps(conf).encode(), env={"CNI_COMMAND": "ADD"}, capture_output=True)
    error = json.loads(done.stdout)
    assert done.returncode == 1 and error["code"] == 7
    assert error["msg"].startswith("invalid network configuration: cni_socket: ") and message in error["msg"]


@pytest.mark.parametrize("stdin", [b'{"cniVersion": "0.4.0"}', b'{"cniVersion": "1.0.0", "name": "n"}', b""])
def test_the_c_client_answers_version_itself_as_the_plugin_does(tmp_path, client, stdin):
    """No server needed: a runtime loading the conflist before calyx-node runs sees the versions."""
    env = {"CALYX_CNI_SOCKET": str(tmp_path / "none.sock"), "CNI_COMMAND": "VERSION"}
    done = subprocess.run([client], input=stdin, env=env, capture_output=True, timeout=20)
    expected = version_result(json.loads(stdin)["cniVersion"] if stdin else SUPPORTED_VERSIONS[-1])
    assert (done.returncode, json.loads(done.stdout)) == (0, expected)


def test_the_probe_asks_the_server_for_version(served, tmp_path):
    path, _, _ = served
    assert probe(path, 5.0) is None
    missing = str(tmp_path / "none.sock")
    assert probe(missing, 5.0) == f"no answer on {missing}: [Errno 2] No such file or directory"


def test_the_command_line_refuses_bad_settings_and_probes():
    runner = CliRunner()
    bad = runner.invoke(cli, ["--max-requests", "0"])
    assert bad.exit_code == 2 and "--max-requests" in bad.output
    down = runner.invoke(cli, ["--check", "--socket", "/nonexistent/cni.sock"])
    assert down.exit_code == 1 and "no answer on /nonexistent/cni.sock" in down.output


def test_a_send_broken_by_a_server_that_also_gave_no_answer_is_reported_as_such(tmp_path):
    path = str(tmp_path / "mute.sock")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen(1)
        closer = threading.Thread(target=lambda: listener.accept()[0].close())
        closer.start()
        with pytest.raises(BrokenPipeError):  # not the reset the read then meets
            exchange(path, encode_request("calyx-cni", {"CNI_COMMAND": "DEL"}, b"x" * 900_000), 5)
        closer.join(5)
