"""Graceful restart: a stopped node's routes go from the others only after its restart time and
come back when it starts again; traffic keeps flowing while the reflector or a node's ExaBGP
restarts."""

import subprocess
import time

import pytest

from tests.integration.bgp.conftest import ECHO_PORT, unreachable
from tests.lab import netns
from tests.lab.processes import wait_for
from tests.lab.traffic import PROBE

pytestmark = pytest.mark.integration


def routes_via_node1(lab, node: str) -> set[str]:
    return {p for p, hops in lab.learned_routes(node).items() if hops & {"198.18.100.11", "fd00:18:100::b"}}


def start_flow(src, address: str, seconds: float) -> subprocess.Popen:
    return subprocess.Popen(
        ["ip", "netns", "exec", src.netns, "python3", PROBE, "flow", address, str(ECHO_PORT), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )


def flow_result(flow: subprocess.Popen) -> tuple[int, int]:
    try:
        out, _ = flow.communicate(timeout=60)
    finally:
        flow.kill()
    attempts, failures = map(int, out.split())
    return attempts, failures


def test_stopped_node_routes_leave_after_the_restart_time_and_come_back(bgp_lab_factory):
    lab = bgp_lab_factory(reflector=True)
    wait_for(lambda: len(routes_via_node1(lab, "node2")) == 2, timeout=10, what=lambda: lab.learned_routes("node2"))
    before = routes_via_node1(lab, "node2")
    lab.kill_bgp("node1")  # no NOTIFICATION: ExaBGP dies with it, as on a crash or an upgrade
    stopped = time.monotonic()
    time.sleep(1.5)
    assert routes_via_node1(lab, "node2") == before, "routes left before the graceful-restart time"
    wait_for(
        lambda: not routes_via_node1(lab, "node2"),
        timeout=lab.restart_time + 6,
        what=lambda: f"node1's routes to leave node2: {lab.learned_routes('node2')}",
    )
    gone_after = time.monotonic() - stopped
    assert gone_after >= lab.restart_time - 0.5, f"routes left after {gone_after:.1f}s, before the restart time"
    lab.start_bgp("node1")
    wait_for(
        lambda: routes_via_node1(lab, "node2") == before,
        timeout=15,
        what=lambda: f"node1's routes back on node2: {lab.learned_routes('node2')}",
    )
    assert not unreachable(lab)


def test_forwarding_survives_a_reflector_restart_and_an_exabgp_crash(bgp_lab_factory):
    lab = bgp_lab_factory(reflector=True)
    a = next(w for w in lab.workloads() if w.name == "a")
    b = next(w for w in lab.workloads() if w.name == "b")
    everything = lab.bird_routes()
    flow = start_flow(a, b.ip, 14)
    try:
        time.sleep(1)
        lab.kill_bird()
        time.sleep(2)
        lab.start_bird(recovering=True)
        wait_for(lambda: lab.bird_established() == 6, timeout=15, what=lambda: lab.birdc("show", "protocols"))
        # One fault at a time: the reflector must hold node2's routes again before node2's
        # ExaBGP dies, or nobody holds them (sessions up does not mean routes exchanged).
        wait_for(lambda: lab.bird_routes() == everything, timeout=15, what=lab.bird_routes)
        exabgp = exabgp_pid(lab, "node2")
        netns.run("kill", "-9", str(exabgp))
        wait_for(lambda: exabgp_pid(lab, "node2") not in (None, exabgp), timeout=15, what="ExaBGP restarted on node2")
        wait_for(lambda: lab.bird_established() == 6, timeout=15, what=lambda: lab.birdc("show", "protocols"))
    finally:
        attempts, failures = flow_result(flow)
    assert attempts > 100 and failures == 0, f"{failures} of {attempts} connections failed"
    status = lab.policyctl("node", "status", "node2", "-o", "json")
    assert status["exabgp"]["restarts"] == 1 and status["exabgp"]["running"]
    assert not unreachable(lab)


def exabgp_pid(lab, node: str) -> int | None:
    for pid in netns.run("ip", "netns", "pids", lab.nodes[node].netns).stdout.split():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except FileNotFoundError:
            continue
        if argv[-2:-1] and argv[-2].endswith(b"exabgp.conf"):  # argv ends with an empty string
            return int(pid)
    return None
