"""A controller against the test API server (127.0.0.1, a port of its own) and a fake etcd."""

import threading
import time

import pytest

from policy.datastore.store import ResourceStore, WriteMode
from policy.kube.client import KubeClient, api_client
from policy.kube.controller import ControllerConfig, KubeControllers
from policy.model.names import host_interface_name
from policy.model.resources import Metadata, WorkloadEndpoint, WorkloadEndpointSpec
from tests.fakes import FakeKV
from tests.lab.kube_api import KubeAPIServer
from tests.lab.processes import wait_for

PREFIX = "/calyx"


def pod(name: str, namespace: str, labels: dict, node: str = "node1", ip: str = "10.0.0.1", sa: str = "default"):
    return {
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"nodeName": node, "serviceAccountName": sa, "containers": [{"name": "main", "image": "lab"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    }


def endpoint(name: str, namespace: str, node: str = "node1", ip: str = "10.0.0.1", labels=None) -> WorkloadEndpoint:
    """What the CNI plugin writes for a pod."""
    return WorkloadEndpoint(
        metadata=Metadata(name=f"{node}-k8s-{name}-eth0", namespace=namespace, labels=labels or {}),
        spec=WorkloadEndpointSpec(
            node=node,
            interfaceName=host_interface_name(namespace, name),
            orchestrator="k8s",
            pod=name,
            workload=name,
            ipNetworks=[f"{ip}/32"],
        ),
    )


class Harness:
    def __init__(self, tmp_path, **config):
        self.api = KubeAPIServer(bookmark_interval=0.2).start()
        self.kubeconfig = self.api.write_kubeconfig(tmp_path / "kubeconfig")
        self.kv = FakeKV()
        self.store = ResourceStore(self.kv, PREFIX)
        self.config = ControllerConfig(PREFIX, **{"compaction_interval": 0.0, **config})
        self.controller: KubeControllers | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self, clock=time.monotonic) -> KubeControllers:
        self._stop = threading.Event()
        client = KubeClient(api_client(self.kubeconfig))
        self.controller = KubeControllers(self.config, self.kv, client, compact=self.kv.compact, clock=clock)
        self._thread = threading.Thread(target=self.controller.run, args=(self._stop,), daemon=True)
        self._thread.start()
        self.wait_ready()
        return self.controller

    def stop(self) -> None:
        if self._thread:
            self._stop.set()
            self.controller.loop.stop()
            self._thread.join(10)
            self._thread = None

    def wait_ready(self, timeout: float = 10) -> dict:
        return wait_for(lambda: self.controller.status.get("ready") and self.controller.status, timeout, what="ready")

    def wait_handled(self, resource: str, version: str, timeout: float = 10) -> dict:
        """Until the controller has taken `version` of `resource` and written what follows."""
        return wait_for(
            lambda: (
                int(self.controller.status.get("resourceVersions", {}).get(resource) or 0) >= int(version)
                and not self.controller.status.get("pendingWrites")
                and self.controller.status
            ),
            timeout,
            what=lambda: f"{resource} at {version}: {self.controller.status}",
        )

    def add_endpoint(self, wep: WorkloadEndpoint) -> int:
        return self.store.write([wep], WriteMode.CREATE)

    def close(self) -> None:
        self.stop()
        self.api.stop()


@pytest.fixture
def harness(tmp_path):
    h = Harness(tmp_path)
    yield h
    h.close()
