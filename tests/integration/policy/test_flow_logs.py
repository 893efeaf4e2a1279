"""Flow logs from the dataplane (issue 16): a connection a policy rule denies is in felix's /flows,
and in `policyctl flows --follow -o json`, with that policy and rule, within 1 s of its packet;
the metric for that rule counts it; a flood of denied packets leaves the ring at its capacity,
the kernel dropping what felix does not read, and felix alive and still logging."""

import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from policy.datastore.store import WriteMode
from policy.model.documents import load_documents
from tests.lab import netns
from tests.lab.metrics import metric
from tests.lab.processes import wait_for
from tests.lab.traffic import PROBE

pytestmark = pytest.mark.integration

POLICY = """\
apiVersion: calyx.io/v1
kind: NetworkPolicy
metadata: {name: NAME, namespace: x}
spec:
  selector: pod == 'a'
  ingress:
  - {action: Allow, protocol: TCP, destination: {ports: [81]}}
  - {action: Deny, protocol: TCP, destination: {ports: ['80:89']}}
  - {action: Deny, protocol: UDP}
"""
TCP_RULE, UDP_RULE = 1, 2
WITHIN = 1.0  # seconds from a denied packet to its record
# felix records a flow once per 10 s (source, destination, port: not the source port), so each
# connection this process makes goes to a port of its own
MARKER, MEASURED, AFTER_FLOOD, AFTER_RESTART = 82, 83, 84, 85


def felix_url(lab, node: str) -> str:
    return f"http://{lab.nodes[node].address}:9099"


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=2) as answer:
        return answer.read()


def flows(lab, node: str, since: int = 0) -> dict:
    return json.loads(get(f"{felix_url(lab, node)}/flows?since={since}"))


def felix_metric(lab, node: str, name: str, **labels: str) -> float:
    return metric(f"{felix_url(lab, node)}/metrics", name, **labels)


def apply(netpol, name: str) -> int:
    revision = netpol.lab.store.write(load_documents(POLICY.replace("NAME", name), "<test>"), WriteMode.APPLY)
    netpol.wait(revision)
    return revision


def deny_tcp(address: str, port: int = 80) -> tuple[socket.socket, int, float]:
    """A connection from this process (the lab's controller, outside every workload) whose SYN
    policy drops: the socket (close it), its source port, and when the SYN left."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sent = time.monotonic()
    sock.connect_ex((address, port))
    return sock, sock.getsockname()[1], sent


def test_a_denied_connection_is_logged_with_its_policy_and_rule_within_a_second_and_counted(netpol):
    lab, a = netpol.lab, netpol.pods["x/a"]
    apply(netpol, "flows-deny")
    origin, rule = "networkpolicies/x/flows-deny", {"direction": "ingress", "policy": "networkpolicies/x/flows-deny"}
    flows_before = felix_metric(lab, a.node, "calyx_felix_denied_flows_total", **rule, rule=str(TCP_RULE))
    packets_before = felix_metric(lab, a.node, "calyx_felix_denied_packets_total", **rule, rule=str(TCP_RULE))
    since = flows(lab, a.node)["last"]
    allowed = socket.create_connection((a.ip, 81), timeout=5)  # rule 0 allows it: never logged
    allowed.close()

    sock, port, sent = deny_tcp(a.ip)
    try:
        record = wait_for(
            lambda: next((r for r in flows(lab, a.node, since)["flows"] if r["sourcePort"] == port), None),
            timeout=WITHIN,
            interval=0.01,
            what=f"the denied SYN from port {port} in {a.node}'s /flows",
        )
        latency = time.monotonic() - sent
    finally:
        sock.close()
    print(f"denied SYN to its /flows record: {latency * 1000:.0f} ms")
    assert {k: record[k] for k in ("node", "verdict", "direction", "reason", "policy", "rule", "protocol")} == {
        "node": a.node, "verdict": "deny", "direction": "ingress", "reason": "rule", "policy": origin,
        "rule": TCP_RULE, "protocol": "TCP",
    }  # fmt: skip
    assert (record["destination"], record["destinationPort"], record["outInterface"]) == (a.ip, 80, a.interface)
    assert not [r for r in flows(lab, a.node, since)["flows"] if r["destinationPort"] == 81]
    assert felix_metric(lab, a.node, "calyx_felix_denied_flows_total", **rule, rule=str(TCP_RULE)) == flows_before + 1
    assert (
        felix_metric(lab, a.node, "calyx_felix_denied_packets_total", **rule, rule=str(TCP_RULE)) >= packets_before + 1
    )


class Follow:
    """`policyctl flows --follow -o json` in a child process, its lines read by a thread."""

    def __init__(self, lab, *args: str):
        felix = [arg for node in lab.nodes for arg in ("--felix", felix_url(lab, node))]
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "policy.ctl.main",
                *lab.etcd_flags(),
                "flows",
                "--follow",
                "-o",
                "json",
                *felix,
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[tuple[dict, float]] = []
        threading.Thread(target=lambda: [self.lines.put(line) for line in self.proc.stdout], daemon=True).start()

    def until(self, match, timeout: float) -> tuple[dict, float]:
        """The first record match accepts (of those printed so far too), and when it was read."""
        for record, read in self.seen:
            if match(record):
                return record, read
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                record = json.loads(self.lines.get(timeout=left))
            except queue.Empty:
                break
            self.seen.append((record, time.monotonic()))
            if match(record):
                return self.seen[-1]
        raise AssertionError(f"policyctl flows printed no such record in {timeout} s; stderr: {self.stop()}")

    def stop(self) -> str:
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
        return err


def test_policyctl_flows_follows_the_nodes_and_names_both_ends_within_a_second(netpol):
    lab, a, source = netpol.lab, netpol.pods["x/a"], netpol.pods["y/a"]
    assert source.node != a.node  # the packet crosses the fabric before x/a's ingress policy drops it
    apply(netpol, "flows-follow")
    origin = "networkpolicies/x/flows-follow"
    marker, marker_port, _ = deny_tcp(a.ip, MARKER)
    follow = Follow(lab, "--endpoint", "x/a", "--duration", "60")
    try:
        follow.until(lambda r: r["sourcePort"] == marker_port, timeout=30)  # policyctl is up and polling
        sock, port, sent = deny_tcp(a.ip, MEASURED)
        try:
            record, printed = follow.until(lambda r: r["sourcePort"] == port, timeout=WITHIN)
        finally:
            sock.close()  # a socket left open would retransmit its SYN into the next test's flows
        print(f"denied SYN to its policyctl flows line: {(printed - sent) * 1000:.0f} ms")
        assert (record["policy"], record["rule"], record["destinationEndpoint"]) == (origin, TCP_RULE, "x/a")
        assert record["sourceEndpoint"] is None  # this process holds no endpoint's address

        probes = json.dumps([[a.ip, 80, "tcp"], [a.ipv6, 80, "tcp"]])  # a pod's, over IPv4 and IPv6
        probed = time.time()
        netns.in_ns(source.netns, "python3", PROBE, "probe", "0.5", probes, timeout=30, check=False)
        for source_ip, destination_ip in ((source.ip, a.ip), (source.ipv6, a.ipv6)):
            # y/a's connections denied by earlier tests' policies are in felix's log too: only
            # this policy's records of this probe count (another policy named for it: a timeout)
            record, _ = follow.until(
                lambda r: r["source"] == source_ip and r["time"] >= probed - 1 and r["policy"] == origin, timeout=5
            )
            assert (record["sourceEndpoint"], record["destinationEndpoint"]) == ("y/a", "x/a")
            assert (record["node"], record["policy"], record["rule"]) == (a.node, origin, TCP_RULE)
            assert (record["destination"], record["destinationPort"]) == (destination_ip, 80)
    finally:
        marker.close()
        stderr = follow.stop()
    assert "warning" not in stderr, stderr


def test_policyctl_flows_follows_felix_across_its_restart(netpol):
    lab, a = netpol.lab, netpol.pods["x/a"]
    revision = apply(netpol, "flows-restart")
    marker, marker_port, _ = deny_tcp(a.ip, MARKER)
    follow = Follow(lab, "--node", a.node, "--duration", "90")
    try:
        follow.until(lambda r: r["sourcePort"] == marker_port, timeout=30)
        marker.close()
        lab.stop_felix(a.node)
        lab.start_felix(a.node)  # numbers its flows from 1 again
        lab.wait_programmed(a.node, revision, timeout=30)
        sock, port, _ = deny_tcp(a.ip, AFTER_RESTART)
        try:
            record, _ = follow.until(lambda r: r["sourcePort"] == port, timeout=5)
        finally:
            sock.close()
        assert (record["policy"], record["rule"]) == ("networkpolicies/x/flows-restart", TCP_RULE)
    finally:
        marker.close()
        stderr = follow.stop()
    assert f"warning: node {a.node}: felix restarted, reading its flow log from its start" in stderr, stderr


def felix_cpu_seconds(lab, node: str) -> float:
    """User and system time of the node's felix (`ip netns exec` execs it: the same pid)."""
    fields = open(f"/proc/{lab.nodes[node].felix.pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_flood_of_denied_packets_keeps_the_ring_at_its_capacity_and_felix_alive(netpol):
    lab, a = netpol.lab, netpol.pods["x/a"]
    capacity, rate, packets = 100, 500, 20_000
    revision = apply(netpol, "flows-flood")
    lab.stop_felix(a.node)
    lab.start_felix(a.node, "--flow-log-capacity", str(capacity), "--flow-log-rate", str(rate))
    try:
        lab.wait_programmed(a.node, revision, timeout=30)
        cpu, started = felix_cpu_seconds(lab, a.node), time.monotonic()
        flood = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for i in range(packets):  # a new flow each: every destination port its own
            flood.sendto(b"x", (a.ip, 1024 + i))
            if time.monotonic() - started > 20:
                break
        flood.close()
        sent = i + 1
        time.sleep(2)  # the kernel's buffer of logged packets drains at the rate
        elapsed = time.monotonic() - started
        cpu = felix_cpu_seconds(lab, a.node) - cpu
        log = flows(lab, a.node)
        udp = {"direction": "ingress", "policy": "networkpolicies/x/flows-flood", "rule": str(UDP_RULE)}
        read = felix_metric(lab, a.node, "calyx_felix_denied_packets_total", **udp)
        lost = felix_metric(lab, a.node, "calyx_felix_flow_log_dropped_total", reason="lost")
        print(
            f"flood: {sent} packets sent, {read:.0f} read, {lost:.0f} overruns, felix {cpu:.2f} s CPU in {elapsed:.1f} s"
        )
        assert len(log["flows"]) == capacity and log["last"] > capacity
        assert [r["seq"] for r in log["flows"]] == list(range(log["last"] - capacity + 1, log["last"] + 1))
        assert lost > 0 and read <= rate * (elapsed + 1) + rate  # the rate held: the kernel dropped the rest
        assert cpu < 0.5 * elapsed, "felix's reading of the flood was not bounded by its rate"

        with urllib.request.urlopen(f"{felix_url(lab, a.node)}/livez", timeout=2) as live:
            assert live.status == 200
        sock, port, _ = deny_tcp(a.ip, AFTER_FLOOD)  # after the flood, felix still logs
        try:
            wait_for(
                lambda: any(r["sourcePort"] == port for r in flows(lab, a.node, log["last"])["flows"]),
                timeout=5,
                interval=0.05,
                what=lambda: (
                    f"a denied connection logged after the flood; /flows since {log['last']}: "
                    f"{flows(lab, a.node, log['last'])}; TCP rule packets read: "
                    f"{felix_metric(lab, a.node, 'calyx_felix_denied_packets_total', **{**udp, 'rule': str(TCP_RULE)})}"
                    f"; felix: {lab.nodes[a.node].felix.log_tail(10)}"
                ),
            )
        finally:
            sock.close()
        assert lab.nodes[a.node].felix.running()
    finally:
        lab.stop_felix(a.node)
        lab.start_felix(a.node)
        lab.wait_programmed(a.node, revision, timeout=30)
