"""Many pods on one node, and chaining: 100 pods added and deleted 20 at a time (no address
twice, IPAM consistent, nothing left), and the reference portmap plugin after calyx-cni; each as the
Python executables and as the C client of a calyx-cni-server (its threads and the cap)."""

import json
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from policy.model.resources import WorkloadEndpoint
from tests.integration.cni.conftest import (
    REFERENCE_PLUGINS,
    cx_links,
    ipam_check,
    netconf,
    new_sandbox,
    run_plugin,
)
from tests.lab import netns
from tests.lab.processes import wait_for
from tests.lab.traffic import PROBE

pytestmark = pytest.mark.integration

PODS, PARALLEL = 100, 20


def test_100_pods_added_and_deleted_20_at_a_time(cni_both):
    lab = cni_both
    conf = netconf(lab, "node1", log_level="info", policy_setup_timeout_seconds=60)
    sandboxes = {f"p{i:03d}": new_sandbox(lab, f"p{i:03d}") for i in range(PODS)}

    def add(name):
        return name, run_plugin(lab, "node1", "ADD", conf, name, sandboxes[name], timeout=120)

    with ThreadPoolExecutor(PARALLEL) as pool:
        added = dict(pool.map(add, sandboxes))
    failures = {name: done.output for name, done in added.items() if not done.ok}
    assert not failures, failures
    addresses = [ip["address"] for done in added.values() for ip in done.output["ips"]]
    assert len(addresses) == 2 * PODS and len(set(addresses)) == 2 * PODS, "an address was given twice"
    assert len(lab.store.list_kind(WorkloadEndpoint)[0]) == PODS and len(cx_links(lab, "node1")) == PODS
    code, report = ipam_check(lab)
    assert code == 0, report

    def delete(name):
        return name, run_plugin(lab, "node1", "DEL", {**conf, "prevResult": added[name].output}, name, sandboxes[name])

    with ThreadPoolExecutor(PARALLEL) as pool:
        deleted = dict(pool.map(delete, sandboxes))
    assert all(done.ok for done in deleted.values()), {n: d.output for n, d in deleted.items() if not d.ok}
    assert cx_links(lab, "node1") == [] and lab.kernel_routes("node1") == set()
    assert lab.store.list_kind(WorkloadEndpoint)[0] == []
    code, report = ipam_check(lab)
    assert code == 0, report


@pytest.mark.skipif(not (REFERENCE_PLUGINS / "portmap").exists(), reason="containernetworking-plugins not installed")
def test_portmap_after_calyx_cni_maps_a_host_port_to_the_pod(cni_both):
    lab = cni_both
    sandbox = new_sandbox(lab, "web")
    conf = netconf(lab, "node1")
    added = run_plugin(lab, "node1", "ADD", conf, "web", sandbox)
    assert added.ok, added.output
    mapping = {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}
    portmap = {"cniVersion": "1.0.0", "name": conf["name"], "type": "portmap", "runtimeConfig": mapping}
    chained = run_plugin(lab, "node1", "ADD", {**portmap, "prevResult": added.output}, "web", sandbox, plugin="portmap")
    assert chained.ok, (chained.output, chained.stderr)
    assert chained.output["ips"] == added.output["ips"], "portmap passes calyx-cni's result through"
    server = lab._daemon("pod-web", ["ip", "netns", "exec", os.path.basename(sandbox), "python3", PROBE, "serve", "80"])
    wait_for(
        lambda: netns.in_ns(os.path.basename(sandbox), "ss", "-Hltn", "sport = :80").stdout.strip(),
        timeout=10,
        what="the pod's server",
    )
    node = lab.nodes["node1"].address
    probe = netns.run("python3", PROBE, "probe", "2", json.dumps([[node, 8080, "tcp"]]), check=False, timeout=20)
    assert json.loads(probe.stdout) == [True], f"host port {node}:8080 did not reach the pod"
    assert run_plugin(
        lab, "node1", "DEL", {**portmap, "prevResult": chained.output}, "web", sandbox, plugin="portmap"
    ).ok
    assert run_plugin(lab, "node1", "DEL", {**conf, "prevResult": chained.output}, "web", sandbox).ok
    server.stop()
    assert cx_links(lab, "node1") == []
