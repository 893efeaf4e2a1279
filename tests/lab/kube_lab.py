"""Kubernetes in the lab: the test API server in this process (on 127.0.0.1 of the controller
namespace the lab runs from), calyx-kube-controllers as a process beside it, and the e2e
NetworkPolicy model driven through the API server instead of etcd."""

import json
import sys
import time
import urllib.request

import yaml

from policy.datastore.store import WriteMode
from tests.lab.kube_api import KubeAPIServer
from tests.lab.netpol import NAMESPACES, PolicyLab
from tests.lab.processes import Daemon, wait_for
from tests.lab.topology import Lab

HEALTH = "127.0.0.1:9097"


class KubeControllersInLab:
    def __init__(self, lab: Lab, grace: float = 300.0, bookmark_interval: float = 0.2):
        self.lab, self.grace = lab, grace
        self.api = KubeAPIServer("127.0.0.1", 0, bookmark_interval).start()
        self.kubeconfig = self.api.write_kubeconfig(lab.dir / "kubeconfig")
        self.daemon: Daemon | None = None

    def start(self, *extra: str) -> Daemon:
        cmd = [
            sys.executable,
            "-m",
            "policy.kube.main",
            "--kubeconfig",
            self.kubeconfig,
            *self.lab.etcd_flags(),
            "--health-host",
            "127.0.0.1",
            "--node-release-grace",
            str(self.grace),
            "--node-recheck-interval",
            "1",
            *extra,
        ]
        self.daemon = self.lab._daemon("kube-controllers", cmd)
        wait_for(lambda: self.status().get("ready"), 30, what=lambda: f"calyx-kube-controllers ready: {self.status()}")
        return self.daemon

    def stop(self) -> None:
        if self.daemon:
            self.daemon.stop()
            self.lab.daemons.remove(self.daemon)
            self.daemon = None

    def close(self) -> None:
        self.stop()
        self.api.stop()

    def status(self) -> dict:
        try:
            with urllib.request.urlopen(f"http://{HEALTH}/readyz", timeout=2) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read())
        except OSError:
            return {}

    def handled(self, resource: str, version: str | int, timeout: float = 20) -> int:
        """Wait until the controller took `version` of `resource` and wrote what follows; the etcd
        revision that holds it."""
        status = wait_for(
            lambda: (
                (s := self.status())
                and int(s.get("resourceVersions", {}).get(resource) or 0) >= int(version)
                and not s.get("pendingWrites")
                and s
            ),
            timeout,
            interval=0.005,
            what=lambda: f"{resource} at {version}: {self.status()}",
        )
        return status["writtenRevision"]


def pod_object(name: str, namespace: str, node: str, ips: list[str], labels: dict) -> dict:
    return {
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"nodeName": node, "serviceAccountName": "default", "containers": [{"name": "serve", "image": "lab"}]},
        "status": {"phase": "Running", "podIP": ips[0], "podIPs": [{"ip": ip} for ip in ips]},
    }


class KubePolicyLab(PolicyLab):
    """The e2e model with Kubernetes as the source: namespaces, pods and policies live in the API
    server; the endpoints are written as the CNI plugin would (orchestrator k8s, the pod's name);
    labels and policies reach etcd through calyx-kube-controllers only."""

    def __init__(self, lab: Lab, controllers: KubeControllersInLab):
        super().__init__(lab)
        self.kube = controllers

    def build(self) -> None:
        api = self.kube.api.store
        for node in self.lab.nodes:
            api.create("nodes", {"metadata": {"name": node}})
        for ns in NAMESPACES:
            api.create("namespaces", {"metadata": {"name": ns, "labels": {"ns": ns}}})
            api.create("serviceaccounts", {"metadata": {"name": "default", "namespace": ns}})
        super().build()  # workloads, the endpoints as the CNI plugin writes them, felix, servers
        for name, workload in self.pods.items():
            ns, pod = name.split("/")
            api.create("pods", pod_object(pod, ns, workload.node, [workload.ip, workload.ipv6], {"pod": pod}))
        self.kube.start()
        self.wait_kube("pods", api.version)

    def endpoint(self, name: str):
        wep = super().endpoint(name)
        ns, pod = name.split("/")
        spec = wep.spec.model_copy(update={"orchestrator": "k8s", "pod": pod, "workload": pod})
        return wep.model_copy(update={"spec": spec})

    def wait_kube(self, resource: str, version) -> None:
        revision = self.kube.handled(resource, version)
        for node in self.lab.nodes:
            self.lab.wait_programmed(node, revision, timeout=20)

    # -- what the e2e cases call ----------------------------------------------------------
    def apply(self, text: str) -> None:
        touched: dict[str, int] = {}
        for doc in yaml.safe_load_all(text):
            if doc["kind"] == "Namespace":
                touched["namespaces"] = self._put("namespaces", None, doc)
            else:
                touched["networkpolicies"] = self._put("networkpolicies", doc["metadata"]["namespace"], doc)
        for resource, version in touched.items():
            self.wait_kube(resource, version)

    def _put(self, resource: str, namespace: str | None, doc: dict) -> int:
        api = self.kube.api.store
        name = doc["metadata"]["name"]
        if (namespace, name) in api.objects[resource]:
            doc = {**doc, "metadata": {**doc["metadata"], "resourceVersion": None}}
            return int(api.update(resource, doc, namespace)["metadata"]["resourceVersion"])
        return int(api.create(resource, doc, namespace)["metadata"]["resourceVersion"])

    def delete(self, text: str) -> None:
        version = 0
        for doc in yaml.safe_load_all(text):
            gone = self.kube.api.store.delete("networkpolicies", doc["metadata"]["namespace"], doc["metadata"]["name"])
            version = int(gone["metadata"]["resourceVersion"])
        self.wait_kube("networkpolicies", version)

    def relabel(self, name: str, labels: dict[str, str]) -> None:
        ns, pod = name.split("/")
        self.labels[name] = labels
        current = self.kube.api.store.get("pods", ns, pod)
        current["metadata"]["labels"] = labels
        changed = self.kube.api.store.update("pods", current, ns)
        self.wait_kube("pods", changed["metadata"]["resourceVersion"])

    def relabel_namespace(self, ns: str, labels: dict[str, str]) -> int:
        current = self.kube.api.store.get("namespaces", None, ns)
        current["metadata"]["labels"] = labels
        return int(self.kube.api.store.update("namespaces", current)["metadata"]["resourceVersion"])

    def reset(self) -> None:
        api = self.kube.api.store
        for ns, name in list(api.objects["networkpolicies"]):
            api.delete("networkpolicies", ns, name)
        for ns in NAMESPACES:
            if api.get("namespaces", None, ns)["metadata"].get("labels") != {"ns": ns}:
                self.relabel_namespace(ns, {"ns": ns})
        for name in self.pods:
            ns, pod = name.split("/")
            if api.get("pods", ns, pod)["metadata"].get("labels") != {"pod": pod}:
                current = api.get("pods", ns, pod)
                current["metadata"]["labels"] = {"pod": pod}
                api.update("pods", current, ns)
            self.labels[name] = {"pod": pod}
        for resource in ("networkpolicies", "namespaces", "pods"):
            self.wait_kube(resource, api.version)

    def etcd_revision(self) -> int:
        """The newest mod revision under the lab's prefix: moves only when something is written."""
        return self.lab.kv.prefix_state(self.lab.prefix + "/v1/")[1]

    def write_endpoints(self) -> int:
        return self.lab.store.write([self.endpoint(n) for n in self.pods], WriteMode.APPLY)


def measured(action, done, timeout: float = 10) -> float:
    """Seconds from action() to done() being true, polled every 5 ms."""
    started = time.perf_counter()
    action()
    wait_for(done, timeout, interval=0.005)
    return time.perf_counter() - started
