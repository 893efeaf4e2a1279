"""Integration tests: root, network namespaces, a real etcd and real felix processes.

This process moves into a controller namespace of its own before any socket or thread exists,
so nothing it does can reach or change the host's namespace."""

import os
import shutil

import pytest

from policy.datastore.store import WriteMode
from tests.lab.topology import Lab, enter_controller_namespace, leave_controller_namespace

MISSING = [tool for tool in ("ip", "etcd", "etcdctl", "ping") if not shutil.which(tool)]
CAN_RUN = os.geteuid() == 0 and not MISSING

if CAN_RUN:
    enter_controller_namespace()


def pytest_unconfigure(config):
    leave_controller_namespace()


def pytest_collection_modifyitems(config, items):
    if CAN_RUN:
        return
    reason = "integration tests need root" if os.geteuid() != 0 else f"missing tools: {', '.join(MISSING)}"
    for item in items:
        if item.get_closest_marker("integration"):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def lab_factory():
    """Build labs that are always torn down, printing daemon logs (shown when a test fails)."""
    labs = []

    def make(**kwargs) -> Lab:
        lab = Lab(**kwargs)
        labs.append(lab)
        lab.build()
        return lab

    yield make
    for lab in labs:
        print(lab.logs())
        lab.destroy()


@pytest.fixture
def cluster(lab_factory):
    """Two nodes running felix, two workloads each, all endpoints written and programmed."""
    lab = lab_factory(nodes=2)
    for node in lab.nodes:
        lab.add_workload(node, f"{node}-a")
        lab.add_workload(node, f"{node}-b")
    revision = lab.store.write([w.endpoint() for w in lab.workloads()], WriteMode.CREATE)
    for node in lab.nodes:
        lab.start_felix(node)
    for node in lab.nodes:
        lab.wait_programmed(node, revision, timeout=20)
    return lab
