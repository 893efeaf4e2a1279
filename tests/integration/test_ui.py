"""calyx-ui in a real browser: calyx-ui and headless chromium run in a namespace of their own
(on its loopback, calyx-ui's default --listen), calyx-ui reads the lab's real etcd and polls a
fake felix (an HTTP server in this test) that reports denied flows, the second one only after
the page had its first answer; chromium's DOM after the script ran must show policyctl's matrix
and both flows (so the page kept polling), and its screenshot is kept (build/test-artifacts/ui.png)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from policy.ctl.explain import read_state
from policy.ctl.reachability import compute, short
from policy.datastore.store import WriteMode
from policy.model.documents import load_documents
from tests.lab import netns
from tests.lab.processes import Daemon, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not shutil.which("chromium"), reason="needs Debian's chromium (make setup)"),
]

ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"
UI = "http://127.0.0.1:9096"
HOSTILE = "<img src=x onerror=document.title='owned'>"
CLUSTER = """\
apiVersion: calyx.io/v1
kind: Node
metadata: {name: node1}
spec: {addresses: [{address: 198.18.0.2, type: InternalIP}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Namespace
metadata: {name: ops}
---
apiVersion: calyx.io/v1
kind: WorkloadEndpoint
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {node: node1, interfaceName: cx1a2b3c4d5e6, orchestrator: k8s, ipNetworks: [198.19.1.10/32]}
---
apiVersion: calyx.io/v1
kind: WorkloadEndpoint
metadata: {name: db, namespace: shop, labels: {app: db}}
spec: {node: node1, interfaceName: cx2a2b3c4d5e6, orchestrator: k8s, ipNetworks: [198.19.1.20/32]}
---
apiVersion: calyx.io/v1
kind: WorkloadEndpoint
metadata: {name: probe, namespace: ops, labels: {app: probe}}
spec: {node: node1, interfaceName: cx3a2b3c4d5e6, orchestrator: k8s, ipNetworks: [198.19.1.30/32]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 5432}]}]
"""
FLOWS = [
    {"seq": 1, "time": 1764806400.25, "node": "node1", "verdict": "deny", "direction": "ingress",
     "reason": "tier-default", "policy": "tier/default", "rule": None, "protocol": "TCP",
     "source": "198.19.1.30", "sourcePort": 40001, "destination": "198.19.1.20", "destinationPort": 5432,
     "inInterface": "cx3a2b3c4d5e6", "outInterface": "cx2a2b3c4d5e6"},
    {"seq": 2, "time": 1764806401.5, "node": "node1", "verdict": "deny", "direction": "ingress",
     "reason": "rule", "policy": f"networkpolicies/shop/{HOSTILE}", "rule": 0, "protocol": "UDP",
     "source": "203.0.113.7", "sourcePort": 5353, "destination": "198.19.1.10", "destinationPort": 53,
     "inInterface": None, "outInterface": "cx1a2b3c4d5e6"},
]  # fmt: skip


class FakeFelix(ThreadingHTTPServer):
    """felix's /flows, answering `since` as felix does: the first flow, and every one once
    `released` is set."""

    daemon_threads = True

    def __init__(self, address: str):
        self.released = threading.Event()
        logged = lambda: FLOWS if self.released.is_set() else FLOWS[:1]  # noqa: E731

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                since = int(self.path.partition("since=")[2] or 0)
                records = logged()
                after = [r for r in records if r["seq"] > since]
                body = json.dumps(
                    {"node": "node1", "started": 1764806000.0, "last": records[-1]["seq"],
                     "next": after[-1]["seq"] if after else since, "flows": after}
                ).encode()  # fmt: skip
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        super().__init__((address, 0), Handler)


class Rendered(HTMLParser):
    """The matrix cells (title -> mark) and the flow rows (their cells' text) of a dumped DOM."""

    def __init__(self):
        super().__init__()
        self.cells: dict[str, str] = {}
        self.flows: list[list[str]] = []
        self.images = 0
        self._cell: str | None = None
        self._row: list[str] | None = None
        self._text: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.images += tag == "img"
        if tag == "td" and "cell" in (attributes.get("class") or "").split():
            self._cell, self._text = attributes.get("title"), []
        elif tag == "tr" and attributes.get("class") == "flow":
            self._row = []
        elif tag == "td" and self._row is not None:
            self._text = []

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == "td" and self._text is not None:
            text, self._text = "".join(self._text), None
            if self._cell is not None:
                self.cells[self._cell], self._cell = text, None
            elif self._row is not None:
                self._row.append(text)
        elif tag == "tr" and self._row is not None:
            self.flows.append(self._row)
            self._row = None


def chromium(ns: str, profile: Path, *args: str, timeout: float = 120, meanwhile=lambda: None) -> str:
    """Headless chromium in ns, talking to nothing but that namespace, `meanwhile` called while
    it runs; killed by its group id however it ends."""
    command = ["ip", "netns", "exec", ns, "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args]  # fmt: skip
    env = {**os.environ, "HOME": str(profile), "XDG_CONFIG_HOME": str(profile), "XDG_CACHE_HOME": str(profile)}
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    try:
        meanwhile()
        out, err = proc.communicate(timeout=timeout)
    finally:  # its own session (group id = its pid): chromium and any helper left, nothing else
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}): {err[-2000:]}"
    return out


def closed(ns: str) -> int:
    """Connections calyx-ui has answered and closed in the last minute (TIME_WAIT)."""
    out = netns.in_ns(ns, "ss", "-Htn", "state", "time-wait", "( sport = :9096 )", timeout=30).stdout
    return len(out.splitlines())


def ui_json(ns: str, path: str) -> dict:
    read = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())"
    return json.loads(netns.in_ns(ns, sys.executable, "-c", read, UI + path, timeout=30).stdout)


@pytest.fixture
def lab(lab_factory):
    """etcd and the fabric, no nodes: the fake felix stands for node1."""
    return lab_factory(nodes=0)


@pytest.fixture
def felix(lab):
    server = FakeFelix("198.18.0.2")  # this process's own lab address, reached over the fabric
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_matrix_and_denied_flows_in_headless_chromium(lab, felix, tmp_path):
    lab.store.write(load_documents(CLUSTER, "cluster.yaml"), WriteMode.CREATE)
    ns = lab.add_fabric_host(50)
    ui = Daemon(
        "calyx-ui",
        [
            "ip",
            "netns",
            "exec",
            ns,
            sys.executable,
            "-m",
            "policy.ui.main",
            *lab.etcd_flags(),
            "--port",
            "5432",
            "--felix-port",
            str(felix.server_address[1]),
            "--interval",
            "0.2",
            "--refresh",
            "0.5",
        ],  # fmt: skip
        lab.dir / "calyx-ui.log",
    ).start()
    lab.daemons.append(ui)  # stopped by pid with the lab, also on failure
    wait_for(
        lambda: not ui_json(ns, "/api/reachability")["error"] and len(ui_json(ns, "/api/flows")["flows"]) == 1,
        timeout=60,
        interval=0.5,
        what=lambda: f"calyx-ui to read etcd and the fake felix: {ui.log_tail()}",
    )

    def release_after_the_first_flows_answer():
        # calyx-ui answers HTTP/1.0, a connection per request, each left in TIME_WAIT: the page,
        # its style and script, a favicon and the first matrix make 5; a 6th closed connection
        # means the page has had at least one /api/flows answer, holding the first flow only
        wait_for(lambda: closed(ns) >= before + 6, timeout=60, interval=0.02, what="chromium to poll calyx-ui")
        felix.released.set()

    before = closed(ns)
    rendered = Rendered()
    # one virtual hour: the page polls /api/flows 3,600 times (a few seconds of real time), so
    # the second flow, logged after its first answer, must come in by a later poll
    page = chromium(ns, tmp_path / "profile", "--virtual-time-budget=3600000", "--dump-dom", UI + "/",
                    meanwhile=release_after_the_first_flows_answer)  # fmt: skip
    rendered.feed(page)
    expected = compute(read_state(lab.store).evaluator(), None, None, 5432, None, False, False)
    names = [short(n) for n in expected.names]
    assert names == ["ops/probe", "shop/db", "shop/web"]
    meaning = {".": "allowed", "X": "denied", "~": "some ports allowed", "-": "itself, or no endpoint"}
    assert rendered.cells == {
        f"{src} \u2192 {dst}: {meaning[mark]}": mark
        for src, row in zip(names, expected.grid, strict=True)
        for dst, mark in zip(names, row, strict=True)
    }
    assert rendered.cells["ops/probe \u2192 shop/db: denied"] == "X"
    assert rendered.cells["shop/web \u2192 shop/db: allowed"] == "."
    assert rendered.flows == [  # newest first
        ["00:00:01.500", "node1", "UDP", "203.0.113.7:5353", "198.19.1.10:53 (shop/web)",
         f"NetworkPolicy shop/{HOSTILE} ingress rule 0"],
        ["00:00:00.250", "node1", "TCP", "198.19.1.30:40001 (ops/probe)", "198.19.1.20:5432 (shop/db)",
         "tier default's defaultAction Deny (ingress)"],
    ]  # fmt: skip
    assert rendered.images == 0  # the policy name's markup stayed text

    shot = tmp_path / "ui.png"
    chromium(
        ns,
        tmp_path / "profile",
        "--virtual-time-budget=8000",
        "--window-size=1000,640",
        "--hide-scrollbars",
        f"--screenshot={shot}",
        UI + "/",
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "ui.png")
