"""policyctl and the agent against a real etcd: round trips, bad input, TLS client certificates, failover."""

import os
import subprocess
import sys
import threading

import pytest
import yaml

from policy.datastore.etcd import EtcdKV, EtcdSettings
from policy.datastore.keys import resources_root
from policy.datastore.kv import KVError, Write
from policy.datastore.store import WriteMode
from policy.datastore.watch import Backoff, SyncBatch, Syncer
from policy.runtime.status import StatusWriter, bgp_status_key, policy_status_key
from tests.lab.processes import wait_for
from tests.policy_model import docs

pytestmark = pytest.mark.integration

NODE = "apiVersion: calyx.io/v1\nkind: Node\nmetadata: {name: node1, labels: {rack: r1}}\nspec: {bgp: {asNumber: 64512, ipv4Address: 198.18.1.2/24}}\n"
WEP = (
    "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {name: web, namespace: prod, labels: {app: web}}\n"
    "spec: {node: node1, interfaceName: cxweb, ipNetworks: [198.19.1.50/32], ports: [{name: http, port: 80}]}\n"
)
NAMESPACE = "apiVersion: v1\nkind: Namespace\nmetadata: {name: prod, labels: {team: a}}\n"


def policyctl(lab, *args: str, input: str | None = None, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(extra_env or {})}
    return subprocess.run(
        [sys.executable, "-m", "policy.ctl.main", *lab.etcd_flags(), *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


def stored_keys(lab) -> list[str]:
    return lab.etcdctl("get", "--prefix", lab.prefix, "--keys-only").split()


def test_policyctl_round_trips_every_kind_through_etcd(lab_factory, tmp_path):
    lab = lab_factory(nodes=0)
    manifest = tmp_path / "all.yaml"
    manifest.write_text("---\n".join([NODE, WEP, NAMESPACE]))
    applied = policyctl(lab, "apply", "-f", str(manifest))
    assert applied.returncode == 0, applied.stderr
    assert sorted(stored_keys(lab)) == [
        "/calyx/v1/namespaces/prod",
        "/calyx/v1/nodes/node1",
        "/calyx/v1/workloadendpoints/prod/web",
    ]
    checks = {
        ("node", "node1"): lambda d: d["spec"]["bgp"] == {"asNumber": 64512, "ipv4Address": "198.18.1.2/24"},
        ("wep", "web"): lambda d: (
            (d["spec"]["ipNetworks"], d["spec"]["ports"][0])
            == (["198.19.1.50/32"], {"name": "http", "port": 80, "protocol": "TCP"})
        ),
        ("ns", "prod"): lambda d: d["metadata"]["labels"] == {"team": "a", "kubernetes.io/metadata.name": "prod"},
    }
    for (kind, name), check in checks.items():
        got = policyctl(lab, "get", kind, name, "-n", "prod", "-o", "yaml")
        assert got.returncode == 0, got.stderr
        doc = yaml.safe_load(got.stdout)
        assert doc["apiVersion"] == "calyx.io/v1" and doc["metadata"]["resourceVersion"].isdigit()
        assert check(doc), doc
        # What get prints applies back unchanged (a compare-and-swap on its resourceVersion).
        assert policyctl(lab, "apply", "-f", "-", input=got.stdout).returncode == 0
    table = policyctl(lab, "get", "workloadendpoints", "-A").stdout
    assert "prod" in table and "198.19.1.50/32" in table
    deleted = policyctl(lab, "delete", "-f", str(manifest))
    assert deleted.returncode == 0, deleted.stderr
    assert stored_keys(lab) == []


def test_bad_input_writes_nothing_to_etcd(lab_factory, tmp_path):
    lab = lab_factory(nodes=0)
    bad = tmp_path / "bad.yaml"
    bad.write_text(NODE + "---\n" + WEP.replace("198.19.1.50/32", "198.19.1.500/32"))
    result = policyctl(lab, "apply", "-f", str(bad))
    assert result.returncode == 1
    assert f"{bad}: document 2 (WorkloadEndpoint prod/web): spec.ipNetworks[0]" in result.stderr
    assert stored_keys(lab) == []


def test_tls_client_certificates_and_failover_to_the_next_endpoint(lab_factory):
    lab = lab_factory(nodes=1, tls=True)
    dead, live = "https://198.18.200.9:2379", lab.etcd_url  # nothing listens on the first
    no_cert = subprocess.run(
        [
            sys.executable,
            "-m",
            "policy.ctl.main",
            "--etcd-endpoints",
            live,
            "--etcd-ca-cert-file",
            lab.tls["ca"],
            "get",
            "nodes",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert no_cert.returncode == 1 and "etcd" in no_cert.stderr  # the server insists on a client certificate
    env = {
        "ETCD_ENDPOINTS": f"{dead},{live}",
        "ETCD_CA_CERT_FILE": lab.tls["ca"],
        "ETCD_CERT_FILE": lab.tls["client_cert"],
        "ETCD_KEY_FILE": lab.tls["client_key"],
    }
    result = subprocess.run(
        [sys.executable, "-m", "policy.ctl.main", "apply", "-f", "-"],
        input=NODE,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr
    assert "Node node1 applied" in result.stdout
    # The agent speaks TLS too, and fails over the same way.
    workload = lab.add_workload("node1", "tls")
    revision = lab.store.write([workload.endpoint()], WriteMode.CREATE)
    node = lab.nodes["node1"]
    lab.felix_args = ("--etcd-endpoints", f"{dead},{live}")
    lab.start_felix("node1")
    lab.wait_programmed("node1", revision, timeout=20)
    wait_for(
        lambda: (f"{workload.ip}/32", workload.interface) in lab.kernel_routes("node1"),
        timeout=5,
        what="route over TLS",
    )
    assert node.felix.running()


def test_status_writes_of_many_nodes_never_reach_a_watching_daemon(lab_factory):
    """Status lives outside the tree the daemons watch: count what a felix's watch receives."""
    lab = lab_factory(nodes=0)
    batches: list[SyncBatch] = []
    stop = threading.Event()
    syncer = Syncer(lab.kv, resources_root(lab.prefix), batches.append, stop, Backoff(maximum=0.5))
    thread = threading.Thread(target=syncer.run, name="test-watch", daemon=True)
    thread.start()
    try:
        wait_for(lambda: any(batch.complete for batch in batches), timeout=10)
        writers = [
            StatusWriter(lab.kv, key(lab.prefix, f"node{i}"))
            for i in range(8)
            for key in (bgp_status_key, policy_status_key)
        ]
        written = sum(writer.write({"round": round_}) for round_ in range(5) for writer in writers)
        revision = lab.store.write(docs(NODE), WriteMode.APPLY)  # a resource after them: the watch is live
        wait_for(lambda: any(batch.revision >= revision for batch in batches), timeout=10)
    finally:
        stop.set()
        thread.join(timeout=10)
    keys = [change.key for batch in batches for change in batch.changes]
    status_events = [key for key in keys if "/status/" in key]
    assert written == 80 and len(lab.etcdctl("get", "--prefix", f"{lab.prefix}/status/", "--keys-only").split()) == 16
    assert status_events == [] and keys == ["/calyx/v1/nodes/node1"], f"{len(status_events)} status events received"


def test_a_list_page_over_the_receive_limit_is_asked_for_again_in_smaller_pages(lab_factory):
    """Pages are large (etcd counts the rest of the range for each one): one that the client
    may not receive is fetched again smaller, down to a key at a time; a lone key over the
    limit is an error, never a loop."""
    lab = lab_factory(nodes=0)
    values = {f"/big/k{i:03}": bytes([65 + i % 26]) * 4096 for i in range(50)}
    lab.kv.commit([Write(key, value) for key, value in values.items()])
    small = EtcdKV(EtcdSettings(endpoints=(lab.etcd_url,), timeout=3), max_response_bytes=32 * 1024)
    pages = [page for page, _ in small.pages("/big/", page_size=100)]
    assert [(kv.key, kv.value) for page in pages for kv in page] == sorted(values.items())
    assert max(len(page) for page in pages) < 8  # 100 -> 25 -> 6 keys of 4 KiB under 32 KiB
    lab.kv.commit([Write("/huge/one", b"x" * 40 * 1024)])
    with pytest.raises(KVError, match="RESOURCE_EXHAUSTED"):
        list(small.pages("/huge/", page_size=100))
