"""policyctl flows over FakeKV and fake felixes: each fake serves /flows from felix's own FlowLog
(felix/flows.py), so the client is held to the server's real paging, numbering and restarts."""

import json
import subprocess
import sys
import urllib.error
from urllib.parse import parse_qs, urlsplit

import pytest
from prometheus_client import CollectorRegistry

import policy.ctl.flows
from felix.flows import FlowLog, FlowLogSettings
from felix.nflog import LoggedPacket
from policy.ctl.flows import Names, Source, annotate, endpoint_names, line, poll, read
from policy.model.documents import load_documents
from tests.unit.policy.ctl.cli import ctl

STATE = """\
apiVersion: calyx.io/v1
kind: Node
metadata: {name: node1}
spec: {addresses: [{address: 198.18.1.2, type: InternalIP}]}
---
apiVersion: calyx.io/v1
kind: Node
metadata: {name: node2}
spec: {bgp: {ipv6Address: "fd00:18:2::2/64"}}
---
apiVersion: calyx.io/v1
kind: Node
metadata: {name: node3}
---
apiVersion: calyx.io/v1
kind: WorkloadEndpoint
metadata: {name: web, namespace: shop}
spec: {node: node1, interfaceName: cxa, orchestrator: k8s, ipNetworks: [198.19.1.10/32, "fd00:19:1:0::a/128"]}
---
apiVersion: calyx.io/v1
kind: WorkloadEndpoint
metadata: {name: db, namespace: shop}
spec: {node: node2, interfaceName: cxb, orchestrator: k8s, ipNetworks: [198.19.2.20/32]}
---
apiVersion: calyx.io/v1
kind: WorkloadEndpoint
metadata: {name: probe, namespace: ops}
spec: {node: node1, interfaceName: cxc, orchestrator: k8s, ipNetworks: [198.19.1.30/32]}
"""
DB_RULE_1 = "calyx-rule ingress 1 networkpolicies/shop/db-only"
WEB_DEFAULT = "calyx-rule egress - tier/default"
URL1, URL2 = "http://198.18.1.2:9099", "http://[fd00:18:2::2]:9099"


class FakeFelix:
    """felix's /flows: a real FlowLog behind a URL; restart() starts a new one, down refuses."""

    def __init__(self, node: str, start: float = 1.7e9):
        self.node, self.now, self.down = node, start, False
        self.restart()

    def restart(self) -> None:
        self.now += 60
        self.log = FlowLog(self.node, CollectorRegistry(), FlowLogSettings(capacity=50), wall=lambda: self.now)

    def deny(self, source: str, destination: str, port: int, prefix: str = DB_RULE_1, protocol="TCP") -> None:
        self.now += 1
        self.log.packet(LoggedPacket(prefix, 4, protocol, source, destination, 40000, port, 3, 4))

    def answer(self, query: str, limit: int = 1000) -> dict:
        if self.down:
            raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))
        since = int(parse_qs(query)["since"][0])
        return json.loads(json.dumps(self.log.since(since, limit)))


class Felixes:
    def __init__(self, *felixes: tuple[str, FakeFelix], limit: int = 1000):
        self.by_url, self.limit, self.asked = dict(felixes), limit, []

    def __call__(self, url: str) -> object:
        self.asked.append(url)
        parts = urlsplit(url)
        assert parts.path == "/flows"
        return self.by_url[f"{parts.scheme}://{parts.netloc}"].answer(parts.query, self.limit)


@pytest.fixture
def felixes(kv, tmp_path, monkeypatch):
    path = tmp_path / "state.yaml"
    path.write_text(STATE)
    assert ctl("apply", "-f", str(path)).exit_code == 0
    one, two = FakeFelix("node1"), FakeFelix("node2")
    fake = Felixes((URL1, one), (URL2, two))
    monkeypatch.setattr(policy.ctl.flows, "fetch_json", fake)
    return one, two


def _json_lines(output: str) -> list[dict]:
    return [json.loads(text) for text in output.splitlines()]


def test_flows_of_every_node_merged_in_time_order_named_and_as_json_lines(felixes):
    one, two = felixes
    one.deny("198.19.1.30", "198.19.2.20", 5432, prefix=WEB_DEFAULT)  # node1: ops/probe's egress
    two.now = one.now - 0.5  # logs half a second after node1's first
    two.deny("198.19.1.10", "198.19.2.20", 5432)  # node2: shop/db's ingress
    one.deny("203.0.113.7", "198.19.1.10", 80)
    result = ctl("flows", "-o", "json")
    assert result.exit_code == 0, result.output
    records = _json_lines(result.output)
    assert [(r["node"], r["source"], r["sourceEndpoint"], r["destinationEndpoint"]) for r in records] == [
        ("node1", "198.19.1.30", "ops/probe", "shop/db"),
        ("node2", "198.19.1.10", "shop/web", "shop/db"),
        ("node1", "203.0.113.7", None, "shop/web"),
    ]
    assert records[1]["policy"] == "networkpolicies/shop/db-only" and records[1]["rule"] == 1
    assert records[0]["policy"] == "tier/default" and records[0]["rule"] is None


def test_the_text_line_names_the_ends_and_what_denied(felixes):
    one, two = felixes
    two.deny("198.19.1.10", "198.19.2.20", 5432)
    one.deny("198.19.1.30", "198.19.2.20", 8, prefix=WEB_DEFAULT, protocol="ICMP")
    result = ctl("flows")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [  # the same second: by node
        "2023-11-14T22:14:21.000Z node1 deny ICMP 198.19.1.30 (ops/probe) -> 198.19.2.20 type 8 (shop/db)"
        " by tier default's defaultAction Deny (egress)",
        "2023-11-14T22:14:21.000Z node2 deny TCP 198.19.1.10:40000 (shop/web) -> 198.19.2.20:5432 (shop/db)"
        " by NetworkPolicy shop/db-only ingress rule 1",
    ]


def test_ipv6_ends_are_bracketed_and_named_by_their_canonical_address():
    record = {"time": 0, "node": "n", "verdict": "deny", "protocol": "UDP", "source": "fd00:19:1::a",
              "sourcePort": 5353, "destination": "fd00::2", "destinationPort": 53, "direction": "egress",
              "policy": "profiles/kns.shop", "rule": 0}  # fmt: skip
    names = endpoint_names(load_documents(STATE, "<test>")[3:4])  # written fd00:19:1:0::a/128
    text = line(annotate(record, names))
    assert "UDP [fd00:19:1::a]:5353 (shop/web) -> [fd00::2]:53 by Profile kns.shop egress rule 0" in text


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-n", "ops"], ["198.19.1.30"]),
        (["-n", "shop"], ["198.19.1.30", "198.19.1.10", "203.0.113.7"]),
        (["--endpoint", "shop/web"], ["198.19.1.10", "203.0.113.7"]),
        (["--node", "node2"], ["198.19.1.10"]),
        (["-n", "ops", "--node", "node2"], []),
    ],
)
def test_filters_by_namespace_endpoint_and_node(felixes, args, expected):
    one, two = felixes
    one.deny("198.19.1.30", "198.19.2.20", 5432, prefix=WEB_DEFAULT)
    two.deny("198.19.1.10", "198.19.2.20", 5432)
    one.deny("203.0.113.7", "198.19.1.10", 80)
    result = ctl("flows", "-o", "json", *args)
    assert result.exit_code == 0, result.output
    assert [r["source"] for r in _json_lines(result.output)] == expected


def test_an_endpoint_not_namespace_slash_name_is_a_usage_error(felixes):
    result = ctl("flows", "--endpoint", "web")
    assert result.exit_code == 2 and "'web' is not NAMESPACE/NAME" in result.output


def test_a_node_that_does_not_answer_is_a_warning_and_the_others_are_printed(felixes):
    one, two = felixes
    one.down = True
    two.deny("198.19.1.10", "198.19.2.20", 5432)
    result = ctl("flows", "-o", "json")
    assert result.exit_code == 0
    assert [r["node"] for r in _json_lines(result.stdout)] == ["node2"]
    assert result.stderr == (f"warning: node node1: cannot read {URL1}/flows?since=0: [Errno 111] Connection refused\n")


def test_a_down_node_is_named_once_then_read_from_where_it_was_when_it_answers_again():
    felix = FakeFelix("node1")
    fetch, warnings = Felixes((URL1, felix)), []
    source = Source("node1", URL1)
    felix.deny("198.19.1.30", "198.19.2.20", 1)
    assert [r["seq"] for r in read(source, fetch, warnings.append)] == [1]
    felix.down = True
    felix.deny("198.19.1.30", "198.19.2.20", 2)
    assert read(source, fetch, warnings.append) == [] and read(source, fetch, warnings.append) == []
    felix.down = False
    assert [r["destinationPort"] for r in read(source, fetch, warnings.append)] == [2]
    assert len(warnings) == 2 and "cannot read" in warnings[0] and "answers again" in warnings[1]


def test_a_restarted_felix_is_read_from_its_start_even_past_where_the_old_one_was():
    felix = FakeFelix("node1")
    fetch, warnings = Felixes((URL1, felix)), []
    source = Source("node1", URL1)
    for port in (1, 2):
        felix.deny("198.19.1.30", "198.19.2.20", port)
    assert len(read(source, fetch, warnings.append)) == 2 and source.next == 2
    felix.restart()  # its numbering starts again; it logs more than we had read before we ask
    for port in (3, 4, 5):
        felix.deny("198.19.1.30", "198.19.2.20", port)
    assert [r["destinationPort"] for r in read(source, fetch, warnings.append)] == [3, 4, 5]
    assert warnings == ["node node1: felix restarted, reading its flow log from its start"]


def test_a_felix_given_by_url_is_named_by_its_answers():
    felix = FakeFelix("node1")
    fetch, warnings = Felixes((URL1, felix)), []
    source = Source("198.18.1.2:9099", URL1)
    read(source, fetch, warnings.append)
    felix.down = True
    read(source, fetch, warnings.append)
    assert warnings == [f"node node1: cannot read {URL1}/flows?since=0: [Errno 111] Connection refused"]


def test_a_restart_is_seen_without_started_too_when_felix_numbers_below_us():
    felix = FakeFelix("node1")
    source = Source("node1", URL1, next=7)

    def old_felix(url: str) -> dict:  # a felix that does not say when it started
        answer = felix.answer(urlsplit(url).query)
        del answer["started"]
        return answer

    felix.deny("198.19.1.30", "198.19.2.20", 9)
    warnings: list[str] = []
    assert [r["destinationPort"] for r in read(source, old_felix, warnings.append)] == [9]
    assert len(warnings) == 1 and "restarted" in warnings[0]


def test_every_page_is_read_in_one_poll_and_records_the_ring_pushed_out_are_counted():
    felix = FakeFelix("node1")
    fetch, warnings = Felixes((URL1, felix), limit=4), []
    source = Source("node1", URL1)
    for port in range(1, 11):
        felix.deny("198.19.1.30", "198.19.2.20", port)
    assert [r["seq"] for r in poll([source], fetch, warnings.append)] == list(range(1, 11))
    assert len(fetch.asked) == 3 and warnings == []
    for port in range(11, 71):  # capacity 50: 10 of these are gone before the next read
        felix.deny("198.19.1.30", "198.19.2.20", port)
    assert len(poll([source], fetch, warnings.append)) == 50
    assert warnings == ["node node1: 10 flows left felix's ring before they were read (--flow-log-capacity)"]


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ([], "not a JSON object"),
        ({"last": 1, "next": "1", "flows": []}, "field 'next' is not an integer"),
        ({"last": 1, "next": 1, "flows": [{"time": 1}]}, "a flow record without a seq"),
    ],
)
def test_an_answer_that_is_not_a_flow_log_is_a_warning(answer, why):
    warnings: list[str] = []
    assert read(Source("n", URL1), lambda url: answer, warnings.append) == []
    assert warnings == [f"node n: cannot read {URL1}/flows?since=0: {why}"]


def test_a_felix_without_flow_logs_is_named_as_such():
    def not_found(url):
        raise urllib.error.HTTPError(url, 404, "Not Found", None, None)  # type: ignore[arg-type]

    warnings: list[str] = []
    read(Source("n", URL1), not_found, warnings.append)
    assert warnings == [
        f"node n: cannot read {URL1}/flows?since=0: felix serves no /flows (started with --no-flow-logs?)"
    ]


def test_follow_prints_flows_as_they_come_and_stops_after_its_duration(felixes, monkeypatch):
    one, two = felixes
    one.deny("198.19.1.30", "198.19.2.20", 1)
    sleeps: list[float] = []

    def sleep(seconds):  # between polls, felix logs one more flow
        sleeps.append(seconds)
        one.deny("198.19.1.30", "198.19.2.20", 1 + len(sleeps))

    clock = iter(range(1000))
    monkeypatch.setattr(policy.ctl.flows.time, "sleep", sleep)
    monkeypatch.setattr(policy.ctl.flows.time, "monotonic", lambda: next(clock) * 0.25)
    result = ctl("flows", "--follow", "--duration", "2", "--interval", "0.5", "-o", "json", "--felix", URL1)
    assert result.exit_code == 0, result.output
    ports = [r["destinationPort"] for r in _json_lines(result.stdout)]
    assert ports == list(range(1, len(sleeps) + 2)) and 3 <= len(sleeps) <= 8
    assert all(0 < s <= 0.5 for s in sleeps)


def test_follow_ends_quietly_on_ctrl_c(felixes, monkeypatch):
    def interrupted(seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(policy.ctl.flows.time, "sleep", interrupted)
    result = ctl("flows", "--follow", "--felix", URL1)
    assert result.exit_code == 0 and result.output == ""


def test_new_endpoints_are_named_by_reading_again_at_most_every_refresh():
    now = [0.0]
    endpoints: list = []
    reads = []

    def listing():
        reads.append(now[0])
        return list(endpoints)

    names = Names(listing, print, clock=lambda: now[0])
    assert names.get("198.19.1.99") is None
    endpoints += load_documents(STATE, "<test>")[3:4]
    now[0] = 5.0
    assert names.get("198.19.1.10") is None  # read at 0 s: not again yet
    now[0] = 10.0
    assert names.get("198.19.1.10") == "shop/web" and names.get("fd00:19:1::a") == "shop/web"
    assert names.get("203.0.113.7") is None and reads == [0.0, 10.0]


def test_nodes_are_found_from_their_resources_and_a_named_node_without_an_address_is_an_error(felixes):
    one, two = felixes
    one.deny("198.19.1.30", "198.19.2.20", 1)
    two.deny("198.19.1.10", "198.19.2.20", 2)
    result = ctl("flows", "--node", "node1", "-o", "json")
    assert [r["node"] for r in _json_lines(result.output)] == ["node1"]
    result = ctl("flows", "--node", "node3")
    assert result.exit_code == 1
    assert "no Node resource with an address for node3 (--felix URL)" in result.output


def test_a_cluster_without_node_addresses_asks_for_felix_urls(kv):
    result = ctl("flows")
    assert result.exit_code == 1 and "no Node resource has an address: name felix's URLs with --felix" in result.output


PIPED = """
import policy.ctl.flows, policy.ctl.main
from tests.fakes import FakeKV
policy.ctl.main.EtcdKV = lambda settings: FakeKV()
records = [{"seq": i, "time": 1.7e9 + i, "node": "n", "verdict": "deny", "direction": "ingress", "policy": "tier/default",
            "rule": None, "protocol": "TCP", "source": "10.0.0.1", "sourcePort": 1, "destination": "10.0.0.2",
            "destinationPort": 80} for i in range(1, 1001)]
policy.ctl.flows.fetch_json = lambda url: {"last": 1000, "next": 1000, "flows": records if url.endswith("=0") else []}
policy.ctl.main.cli(["flows", "--felix", "http://n:9099"])
"""


def test_a_reader_that_stops_reading_ends_it_without_a_traceback():
    """`policyctl flows | head -1`: the pipe closes under 1,000 lines (more than a pipe holds)."""
    proc = subprocess.Popen([sys.executable, "-c", PIPED], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("2023-11-14T22:13:21.000Z n deny TCP")
        proc.stdout.close()
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert (proc.returncode, err) == (1, "")  # click's answer to a closed pipe: exit 1, quietly
