"""calyx-ui's JSON endpoints over FakeKV and a fake felix: no network, no browser."""

import json
import threading
import time
import urllib.error

import pytest
from click.testing import CliRunner

from policy.ctl.explain import read_state
from policy.ctl.reachability import compute, short
from policy.datastore.store import ResourceStore, WriteMode
from policy.model.documents import load_documents
from policy.ui.board import Board, Question
from policy.ui.main import cli, parse_listen
from policy.ui.server import HEADERS, answer, host_allowed
from tests.fakes import FakeKV

STATE = """\
apiVersion: calyx.io/v1
kind: Node
metadata: {name: n1}
spec: {addresses: [{address: 198.18.1.2, type: InternalIP}]}
---
apiVersion: calyx.io/v1
kind: Node
metadata: {name: n2}
spec: {addresses: [{address: 198.18.2.2, type: InternalIP}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Namespace
metadata: {name: y}
---
apiVersion: calyx.io/v1
kind: WorkloadEndpoint
metadata: {name: a, namespace: x, labels: {pod: a}}
spec: {node: n1, interfaceName: cxa, orchestrator: k8s, ipNetworks: [198.19.1.1/32]}
---
apiVersion: calyx.io/v1
kind: WorkloadEndpoint
metadata: {name: b, namespace: x, labels: {pod: b}}
spec: {node: n2, interfaceName: cxb, orchestrator: k8s, ipNetworks: [198.19.2.1/32]}
---
apiVersion: calyx.io/v1
kind: WorkloadEndpoint
metadata: {name: c, namespace: y, labels: {pod: c}}
spec: {node: n2, interfaceName: cxc, orchestrator: k8s, ipNetworks: [198.19.2.2/32]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-from-a, namespace: x}
spec:
  podSelector: {matchLabels: {pod: b}}
  ingress: [{from: [{podSelector: {matchLabels: {pod: a}}}], ports: [{port: 80}]}]
"""
ALLOW_ALL_B = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-from-all, namespace: x}
spec: {podSelector: {matchLabels: {pod: b}}, ingress: [{}]}
"""


def denied(seq, source, destination, port=80, policy="tier/default", rule=None, node="n2"):
    return {
        "seq": seq, "time": 1000.0 + seq, "node": node, "verdict": "deny", "direction": "ingress",
        "reason": "tier-default", "policy": policy, "rule": rule, "protocol": "TCP", "source": source,
        "sourcePort": 40000 + seq, "destination": destination, "destinationPort": port,
        "inInterface": None, "outInterface": "cxb",
    }  # fmt: skip


class FakeFelix:
    """felix's /flows for each URL: its records, answered `since` as felix does; None: unreachable."""

    def __init__(self):
        self.records: dict[str, list[dict] | None] = {}
        self.asked: list[str] = []
        self.names = {"http://198.18.1.2:9099": "n1", "http://198.18.2.2:9099": "n2"}  # felix names its node

    def __call__(self, url: str) -> dict:
        self.asked.append(url)
        base, _, since = url.partition("/flows?since=")
        records = self.records.get(base)
        if records is None:
            raise urllib.error.URLError("connection refused")
        after = [r for r in records if r["seq"] > int(since)]
        last = records[-1]["seq"] if records else 0
        answer = {"last": last, "next": after[-1]["seq"] if after else int(since), "flows": after}
        return answer | ({"node": self.names[base]} if base in self.names else {})


@pytest.fixture
def kv():
    fake = FakeKV()
    ResourceStore(fake, "/calyx").write(load_documents(STATE, "state.yaml"), WriteMode.CREATE)
    return fake


def board(kv, felix=None, **question) -> Board:
    return Board(ResourceStore(kv, "/calyx"), Question(**question), fetch=felix or FakeFelix(), clock=lambda: 1234.5)


def get(b: Board, path: str, host: str | None = "127.0.0.1:9096") -> tuple[int, str, object]:
    code, content_type, body = answer(b, path, host)
    return code, content_type, json.loads(body) if content_type == "application/json" else body.decode()


def test_reachability_is_policyctl_s_matrix(kv):
    b = board(kv, port=80)
    b.refresh()
    code, content_type, matrix = get(b, "/api/reachability")
    assert (code, content_type) == (200, "application/json")
    expected = compute(read_state(ResourceStore(kv, "/calyx")).evaluator(), None, None, 80, None, False, False)
    assert matrix["names"] == [short(n) for n in expected.names] == ["x/a", "x/b", "y/c"]
    assert matrix["cells"] == expected.grid
    assert matrix["cells"][0][1] == "." and matrix["cells"][2][1] == "X"  # a may reach b on 80, c may not
    assert matrix["what"] == "TCP port 80, IPv4" and matrix["error"] is None and matrix["computed"] == 1234.5
    assert {item["mark"]: item["meaning"] for item in matrix["legend"]}["X"] == "denied"


def test_matrix_follows_etcd_and_is_recomputed_only_on_change(kv):
    b = board(kv, namespace="x")
    b.refresh()
    assert get(b, "/api/reachability")[2]["names"] == ["x/a", "x/b"]
    assert get(b, "/api/reachability")[2]["cells"][0][1] == "~"  # port 80 only
    lists = kv.list_calls
    b.refresh()
    assert kv.list_calls == lists  # nothing changed: not re-read
    ResourceStore(kv, "/calyx").write(load_documents(ALLOW_ALL_B, "allow.yaml"), WriteMode.CREATE)
    b.refresh()
    assert kv.list_calls > lists
    assert get(b, "/api/reachability")[2]["cells"][0][1] == "."


def test_etcd_down_keeps_the_last_matrix_and_says_so(kv):
    b = board(kv)
    assert get(b, "/api/reachability")[2]["error"] == "not read yet"
    b.refresh()
    kv.set_down(True)
    b.refresh()
    matrix = get(b, "/api/reachability")[2]
    assert matrix["names"] == ["x/a", "x/b", "y/c"]
    assert "cannot reach etcd" in matrix["error"]
    kv.set_down(False)
    with kv.admin():
        ResourceStore(kv, "/calyx").write(load_documents(ALLOW_ALL_B, "allow.yaml"), WriteMode.CREATE)
    b.refresh()
    assert get(b, "/api/reachability")[2]["error"] is None


def test_no_matching_endpoint_is_an_error_not_a_crash(kv):
    b = board(kv, selector="pod == 'nobody'")
    b.refresh()
    assert get(b, "/api/reachability")[2] == {"error": "no endpoints match", "names": [], "cells": []}


def test_flows_merged_from_the_nodes_felix_named_and_paged(kv):
    felix = FakeFelix()
    felix.records["http://198.18.1.2:9099"] = [denied(1, "198.19.2.2", "198.19.1.1", node="n1")]
    felix.records["http://198.18.2.2:9099"] = [
        denied(1, "198.19.2.2", "198.19.2.1", policy="networkpolicies/x/knp.default.b-from-a", rule=0),
        denied(2, "203.0.113.9", "198.19.2.1"),
    ]
    b = board(kv, felix)
    b.refresh()
    b.poll()
    code, _, answer_ = get(b, "/api/flows?since=0")
    assert code == 200 and answer_["last"] == 3
    flows = answer_["flows"]
    assert [(f["id"], f["node"], f["seq"]) for f in flows] == [(1, "n1", 1), (2, "n2", 1), (3, "n2", 2)]
    assert flows[0]["sourceEndpoint"] == "y/c" and flows[0]["destinationEndpoint"] == "x/a"
    assert flows[1]["decidedBy"] == "NetworkPolicy x/knp.default.b-from-a ingress rule 0"
    assert flows[2]["sourceEndpoint"] is None and flows[2]["decidedBy"] == "tier default's defaultAction Deny (ingress)"
    assert [n["node"] for n in answer_["nodes"]] == ["n1", "n2"] and all(n["ok"] for n in answer_["nodes"])
    assert [f["id"] for f in get(b, "/api/flows?since=1&limit=1")[2]["flows"]] == [2]
    b.poll()  # nothing new: felix is asked from where it ended
    assert get(b, "/api/flows?since=3")[2]["flows"] == []
    assert felix.asked[-1].endswith("/flows?since=2")
    assert get(b, "/api/flows?since=x")[0] == 400


def test_a_failing_felix_is_shown_and_the_others_still_read(kv):
    felix = FakeFelix()
    felix.records["http://198.18.2.2:9099"] = [denied(1, "198.19.2.2", "198.19.2.1")]
    b = board(kv, felix)
    b.refresh()
    b.poll()
    nodes = {n["node"]: n for n in get(b, "/api/flows")[2]["nodes"]}
    assert not nodes["n1"]["ok"] and "connection refused" in nodes["n1"]["error"]
    assert nodes["n2"]["ok"] and nodes["n2"]["error"] is None
    assert len(get(b, "/api/flows")[2]["flows"]) == 1
    felix.records["http://198.18.1.2:9099"] = []
    b.poll()
    assert all(n["ok"] for n in get(b, "/api/flows")[2]["nodes"])


def test_namespace_keeps_the_flows_of_the_matrix_endpoints(kv):
    felix = FakeFelix()
    felix.records["http://198.18.2.2:9099"] = [
        denied(1, "198.19.2.2", "198.19.2.1"),
        denied(2, "203.0.113.9", "198.19.2.2"),
    ]
    felix.records["http://198.18.1.2:9099"] = []
    b = board(kv, felix, namespace="x")
    b.refresh()
    b.poll()
    assert [f["seq"] for f in get(b, "/api/flows")[2]["flows"]] == [1]  # c -> b kept, outside -> c not


def test_felix_urls_given_instead_of_the_nodes(kv):
    felix = FakeFelix()
    felix.records["http://10.0.0.9:9099"] = [denied(1, "198.19.2.2", "198.19.2.1")]
    b = Board(ResourceStore(kv, "/calyx"), Question(), fetch=felix, felix=("http://10.0.0.9:9099/",))
    b.refresh()
    b.poll()
    assert [n["url"] for n in get(b, "/api/flows")[2]["nodes"]] == ["http://10.0.0.9:9099"]
    assert get(b, "/api/flows")[2]["flows"][0]["sourceEndpoint"] == "y/c"


def test_page_script_style_and_refusals(kv):
    b = board(kv)
    code, content_type, page = get(b, "/")
    assert code == 200 and content_type.startswith("text/html") and '<script src="/ui.js">' in page
    code, content_type, script = get(b, "/ui.js")
    assert content_type.startswith("text/javascript") and "innerHTML" not in script and "textContent" in script
    assert get(b, "/ui.css")[1].startswith("text/css")
    assert get(b, "/nothing")[0] == 404
    assert get(b, "/api/flows", host="rebound.example:9096")[0] == 403
    assert "script-src 'self'" in HEADERS["Content-Security-Policy"] and "unsafe-inline" not in str(HEADERS)


@pytest.mark.parametrize(
    "host, allowed",
    [("127.0.0.1:9096", True), ("[::1]:9096", True), ("localhost:9096", True), ("10.1.2.3", True), (None, True),
     ("evil.example", False), ("localhost.evil.example:9096", False)],
)  # fmt: skip
def test_host_header(host, allowed):
    assert host_allowed(host) is allowed


def test_listen_option():
    assert parse_listen(None, None, "127.0.0.1:9096") == ("127.0.0.1", 9096)  # type: ignore[arg-type]
    assert parse_listen(None, None, "[::1]:80") == ("::1", 80)  # type: ignore[arg-type]
    for bad in ("127.0.0.1", "localhost:9096", "1.2.3.4:99999", "::1:80x"):
        result = CliRunner().invoke(cli, ["--listen", bad])
        assert result.exit_code == 2 and "is not ADDRESS:PORT" in result.output
    result = CliRunner().invoke(cli, ["-l", "pod =="])
    assert result.exit_code == 2 and "-l" in result.output


def test_a_matrix_over_its_budget_leaves_the_flows_going(kv):
    felix = FakeFelix()
    felix.records["http://198.18.2.2:9099"] = [denied(1, "198.19.2.2", "198.19.2.1")]
    felix.records["http://198.18.1.2:9099"] = []
    b = board(kv, felix, max_checks=1)
    b.refresh()
    b.poll()
    assert "more than --max-checks 1" in get(b, "/api/reachability")[2]["error"]
    assert get(b, "/api/flows")[2]["flows"][0]["destinationEndpoint"] == "x/b"


def test_the_thread_polls_until_stopped(kv):
    felix = FakeFelix()
    felix.records["http://198.18.2.2:9099"] = [denied(1, "198.19.2.2", "198.19.2.1")]
    felix.records["http://198.18.1.2:9099"] = []
    b = board(kv, felix)
    stop = threading.Event()
    thread = threading.Thread(target=b.run, args=(stop, 0.01, 0.05))
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while not get(b, "/api/flows")[2]["flows"] and time.monotonic() < deadline:
            time.sleep(0.01)
        felix.records["http://198.18.2.2:9099"].append(denied(2, "198.19.1.1", "198.19.2.1"))
        while len(get(b, "/api/flows")[2]["flows"]) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()
    assert [f["sourceEndpoint"] for f in get(b, "/api/flows")[2]["flows"]] == ["y/c", "x/a"]
    assert get(b, "/api/reachability")[2]["names"] == ["x/a", "x/b", "y/c"]
