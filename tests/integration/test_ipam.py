"""IPAM against a real etcd: concurrent allocators on three nodes, each with its own client."""

import subprocess
import sys
import threading

import pytest

from policy.datastore.etcd import EtcdKV, EtcdSettings
from policy.datastore.ipam import IPAM
from policy.datastore.store import WriteMode
from policy.model.documents import parse_resource

pytestmark = pytest.mark.integration


def test_fifty_concurrent_allocations_over_three_nodes_are_unique_and_all_released(lab_factory):
    lab = lab_factory(nodes=1)
    lab.store.write(
        [
            parse_resource(
                {
                    "apiVersion": "calyx.io/v1",
                    "kind": "IPPool",
                    "metadata": {"name": "pods"},
                    "spec": {"cidr": "198.19.128.0/26", "blockSize": 29},
                }
            )
        ],
        WriteMode.CREATE,
    )
    results: dict[int, str] = {}
    errors: list[Exception] = []

    def worker(i: int, release: bool = False) -> None:
        kv = EtcdKV(EtcdSettings(endpoints=(lab.etcd_url,), timeout=5))
        try:
            manager = IPAM(kv, lab.prefix)
            if release:
                manager.release_handle(f"pod-{i}")
            else:
                results[i] = manager.allocate(f"node{i % 3 + 1}", f"pod-{i}")
        except Exception as exc:
            errors.append(exc)
        finally:
            kv.close()

    for release in (False, True):
        threads = [threading.Thread(target=worker, args=(i, release)) for i in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        if not release:
            assert len(results) == 50 and len(set(results.values())) == 50
            manager = IPAM(lab.kv, lab.prefix)
            assert sorted(a for h in manager.handles().values() for a in h.addresses) == sorted(results.values())
            assert {b.affinity for b in manager.blocks()} == {"node1", "node2", "node3"}
    manager = IPAM(lab.kv, lab.prefix)
    assert manager.handles() == {} and all(not b.allocations for b in manager.blocks())
    assert manager.check() == {"leaked": [], "unallocated": [], "duplicates": [], "dangling": []}
    # The bare-metal way: policyctl prints the address.
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "policy.ctl.main",
            *lab.etcd_flags(),
            "ipam",
            "allocate",
            "--node",
            "node1",
            "--handle",
            "script",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and out.stdout.strip().startswith("198.19.128."), out.stderr
