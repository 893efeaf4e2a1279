"""calyx-cni as a runtime calls it (environment and stdin), against real etcd and felix in a lab
node: ADD, DEL idempotency, CHECK, errors with their codes, policy in place before the pod's
first packet, a killed ADD cleaned up by GC. The tests taking `cni_both` run twice: as the
Python executables and as the C client of a calyx-cni-server in the node."""

import json
import os
import signal
import subprocess
import time

import pytest

from policy.datastore.ipam import IPAM
from policy.datastore.store import WriteMode
from policy.model.documents import load_documents
from policy.model.resources import WorkloadEndpoint
from tests.integration.cni.conftest import (
    NETWORK,
    cni_path,
    cni_socket,
    cx_links,
    ipam_check,
    netconf,
    new_sandbox,
    run_plugin,
    start_cni_server,
    stop_cni_server,
    workload_addresses,
)
from tests.lab import netns
from tests.lab.processes import wait_for

pytestmark = pytest.mark.integration


def add(lab, name, conf=None, **kwargs):
    sandbox = new_sandbox(lab, name)
    done = run_plugin(lab, "node1", "ADD", conf or netconf(lab, "node1"), name, sandbox, **kwargs)
    assert done.ok, (done.output, done.stderr)
    return sandbox, done.output


def ping(sandbox: str, address: str) -> bool:
    """One packet, one second: the first packet passes or it does not."""
    ip = address.split("/")[0]
    return (
        netns.in_ns(os.path.basename(sandbox), "ping", "-n", "-q", "-c", "1", "-W", "1", ip, check=False).returncode
        == 0
    )


def test_add_gives_the_container_its_addresses_routes_and_a_programmed_endpoint(cni_both):
    lab = cni_both
    sandbox, result = add(lab, "c1")
    assert result["cniVersion"] == "1.0.0"
    ips = [ip["address"] for ip in result["ips"]]
    assert len(ips) == 2 and ips[0].endswith("/32") and ips[1].endswith("/128")
    assert workload_addresses(sandbox) == set(ips)
    host, container = result["interfaces"]
    assert host["name"].startswith("cx") and container["name"] == "eth0" and container["sandbox"] == sandbox
    assert lab.kernel_routes("node1") == {(ip, host["name"]) for ip in ips}
    routes = netns.in_ns(os.path.basename(sandbox), "ip", "route").stdout
    assert (
        "default via 169.254.1.1 dev eth0 proto static" in routes
        and "169.254.1.1 dev eth0 proto static scope link" in routes
    )
    deleted = run_plugin(lab, "node1", "DEL", netconf(lab, "node1"), "c1", sandbox)
    assert deleted.ok and deleted.output is None, deleted.output
    assert cx_links(lab, "node1") == [] and lab.kernel_routes("node1") == set()
    assert ipam_check(lab)[0] == 0


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.1.0"])
def test_results_carry_the_requested_version(cni_lab, version):
    _, result = add(cni_lab, f"v{version.replace('.', '')}", netconf(cni_lab, "node1", cniVersion=version))
    assert result["cniVersion"] == version
    assert all(("version" in ip) == version.startswith("0.") for ip in result["ips"])


def test_del_is_idempotent(cni_both):
    lab = cni_both
    conf = netconf(lab, "node1")
    sandbox, result = add(lab, "d1")
    conf_with_prev = {**conf, "prevResult": result}
    assert run_plugin(lab, "node1", "DEL", conf_with_prev, "d1", sandbox).ok
    assert run_plugin(lab, "node1", "DEL", conf, "d1", sandbox).ok  # twice, without prevResult
    sandbox2, _ = add(lab, "d2")
    netns.remove(os.path.basename(sandbox2))
    assert run_plugin(lab, "node1", "DEL", conf, "d2", sandbox2).ok  # the netns is gone
    assert run_plugin(lab, "node1", "DEL", conf, "never-added", "").ok  # never added, no netns
    assert cx_links(lab, "node1") == [] and lab.kernel_routes("node1") == set()
    assert lab.store.list_kind(WorkloadEndpoint)[0] == []
    code, report = ipam_check(lab)
    assert code == 0, report


def test_check_passes_then_reports_what_is_missing(cni_both):
    lab = cni_both
    sandbox, result = add(lab, "k1")
    conf = {**netconf(lab, "node1"), "prevResult": result}
    assert run_plugin(lab, "node1", "CHECK", conf, "k1", sandbox).ok
    ns = os.path.basename(sandbox)
    netns.in_ns(ns, "ip", "-6", "route", "del", "default")
    failed = run_plugin(lab, "node1", "CHECK", conf, "k1", sandbox)
    assert failed.code == 1 and failed.output["code"] == 100 and "no default route via fe80::1" in failed.output["msg"]
    netns.in_ns(ns, "ip", "addr", "del", result["ips"][0]["address"], "dev", "eth0")
    failed = run_plugin(lab, "node1", "CHECK", conf, "k1", sandbox)
    assert f"eth0 in the container lacks {result['ips'][0]['address']}" in failed.output["msg"]
    netns.in_ns(lab.nodes["node1"].netns, "ip", "link", "del", result["interfaces"][0]["name"])
    failed = run_plugin(lab, "node1", "CHECK", conf, "k1", sandbox)
    assert "is missing" in failed.output["msg"]


def test_errors_have_their_codes_and_say_what_to_do(cni_both):
    lab = cni_both
    sandbox = new_sandbox(lab, "e1")
    bad = run_plugin(lab, "node1", "ADD", netconf(lab, "node1", mtu="big"), "e1", sandbox)
    assert bad.output["code"] == 7 and "mtu" in bad.output["msg"] and "Traceback" not in bad.stderr
    missing = run_plugin(lab, "node1", "ADD", netconf(lab, "node1"), "", sandbox)
    assert missing.output["code"] == 4 and "CNI_CONTAINERID" in missing.output["msg"]
    old = run_plugin(lab, "node1", "ADD", netconf(lab, "node1", cniVersion="0.2.0"), "e1", sandbox)
    assert old.output["code"] == 1
    no_felix = run_plugin(
        lab,
        "node1",
        "ADD",
        netconf(lab, "node1", felix_health_url="http://127.0.0.1:9", policy_setup_timeout_seconds=1),
        "e1",
        sandbox,
    )
    assert no_felix.output["code"] == 11 and "is calyx-node (felix) running on this node" in no_felix.output["details"]
    no_etcd = run_plugin(
        lab, "node1", "ADD", netconf(lab, "node1", etcd_endpoints="http://127.0.0.1:9", etcd_timeout=1), "e1", sandbox
    )
    assert no_etcd.output["code"] == 11 and "cannot reach etcd" in no_etcd.output["msg"]
    for failure in (bad, missing, old, no_felix, no_etcd):
        assert "Traceback" not in failure.stderr + json.dumps(failure.output)
    assert cx_links(lab, "node1") == [] and ipam_check(lab)[0] == 0  # the failed ADD left nothing


def test_a_denying_policy_is_in_place_before_the_pod_starts(cni_both):
    lab = cni_both
    lab.store.write(
        load_documents(
            "apiVersion: calyx.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-web, namespace: default}\n"
            "spec: {selector: app == 'denied', types: [Ingress]}\n",
            "<test>",
        ),
        WriteMode.APPLY,
    )

    def labelled(app):
        return netconf(lab, "node1", args={"cni": {"labels": [{"key": "app", "value": app}]}})

    client, _ = add(lab, "client", labelled("client"))
    for attempt in range(3):  # the probe starts the moment ADD returns; a few pods to rule out luck
        _, denied = add(lab, f"denied{attempt}", labelled("denied"))
        assert not ping(client, denied["ips"][0]["address"])
        _, allowed = add(lab, f"allowed{attempt}", labelled("allowed"))
        assert ping(client, allowed["ips"][0]["address"]), "an allowed pod's first packet must pass"
        assert ping(client, allowed["ips"][1]["address"])


def test_a_runtime_killed_during_add_leaves_nothing_after_gc(cni_lab):
    lab = cni_lab
    sandbox = new_sandbox(lab, "killed")
    conf = netconf(lab, "node1", felix_health_url="http://127.0.0.1:9")  # felix never answers: ADD waits
    env = {
        "PATH": os.environ["PATH"],
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "killed",
        "CNI_NETNS": sandbox,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": cni_path(lab),
    }
    plugin = subprocess.Popen(
        ["ip", "netns", "exec", lab.nodes["node1"].netns, str(lab.dir / "cni-bin" / "calyx-cni")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    try:
        plugin.stdin.write(json.dumps(conf).encode())
        plugin.stdin.close()
        wait_for(lambda: cx_links(lab, "node1"), timeout=20, what="the ADD to create its veth")
        time.sleep(0.5)  # and write its endpoint
    finally:
        os.killpg(plugin.pid, signal.SIGKILL)
        plugin.wait(timeout=10)
    assert lab.store.list_kind(WorkloadEndpoint)[0], "killed while waiting for felix: the endpoint was written"
    gc = run_plugin(lab, "node1", "GC", {**netconf(lab, "node1", cniVersion="1.1.0"), "cni.dev/valid-attachments": []})
    assert gc.ok, gc.output
    assert cx_links(lab, "node1") == [] and lab.kernel_routes("node1") == set()
    code, report = ipam_check(lab)
    assert code == 0, report
    assert lab.store.list_kind(WorkloadEndpoint)[0] == []
    assert [h for h in IPAM(lab.kv, lab.prefix).handles() if h.startswith(f"{NETWORK}.")] == []


def test_with_calyx_cni_server_down_the_client_says_what_to_do(cni_lab):
    """Stopped (no socket) and killed (a stale socket): code 11, naming calyx-node and the socket."""
    lab = cni_lab
    sandbox = new_sandbox(lab, "down")
    server = start_cni_server(lab, "node1")
    assert run_plugin(lab, "node1", "ADD", netconf(lab, "node1"), "up", new_sandbox(lab, "up")).ok
    server.stop()
    stopped = run_plugin(lab, "node1", "ADD", netconf(lab, "node1"), "down", sandbox)
    stop_cni_server(lab, "node1", server)
    server = start_cni_server(lab, "node1")
    server.kill9()
    killed = run_plugin(lab, "node1", "ADD", netconf(lab, "node1"), "down", sandbox)
    stop_cni_server(lab, "node1", server)
    socket_path = str(lab.dir / "node1" / "cni.sock")
    for failure, reason in ((stopped, "No such file or directory"), (killed, "Connection refused")):
        assert failure.code == 1 and failure.output["code"] == 11, failure.output
        assert failure.output["msg"] == f"is calyx-node running on this node? cannot reach {socket_path}: {reason}"
    assert len(cx_links(lab, "node1")) == 1, "the refused ADDs made nothing (one veth: the ADD while it was up)"
    assert [e.spec.containerID for e in lab.store.list_kind(WorkloadEndpoint)[0]] == ["up"]


def test_the_client_finds_the_server_named_in_the_network_configuration(cni_lab):
    """cni_socket in the conflist and no CALYX_CNI_SOCKET: what a runtime's own cleanup sees."""
    lab = cni_lab
    server = start_cni_server(lab, "node1")
    try:
        conf = netconf(lab, "node1", cni_socket=str(cni_socket(lab, "node1")))
        sandbox, result = add(lab, "named", conf)
        assert workload_addresses(sandbox) == {ip["address"] for ip in result["ips"]}
        assert run_plugin(lab, "node1", "DEL", conf, "named", sandbox).ok
        elsewhere = netconf(lab, "node1", cni_socket=str(lab.dir / "elsewhere.sock"))
        refused = run_plugin(lab, "node1", "ADD", elsewhere, "elsewhere", new_sandbox(lab, "elsewhere"))
        assert refused.output["code"] == 11 and str(lab.dir / "elsewhere.sock") in refused.output["msg"]
    finally:
        stop_cni_server(lab, "node1", server)
    assert "calyx-cni ADD named eth0: exit 0" in (lab.dir / "node1" / "cni-server.log").read_text()
