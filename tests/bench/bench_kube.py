"""calyx-kube-controllers benchmark, in one run, in network namespaces (one node with felix):

1. a NetworkPolicy written to the API server -> enforced by felix on a node with 10,000
   endpoints and 1,000 policies (goal p99 <= 200 ms), against the same change written to etcd
   directly (the baseline: what the controller adds is the ratio);
2. a pod label change at the API server -> enforced (goal p99 <= 200 ms), against an endpoint's
   label written to etcd directly;
3. the controller's memory (RSS) with 10,000 pods and 1,000 policies, against a Python process
   that imported the same modules and holds nothing.

"Enforced" is felix reporting the etcd revision programmed once its nftables transaction has
returned, polled every 5 ms. Bounded: --changes changes of each kind (default 100).

    python -m tests.bench.bench_kube [--changes 100] [--pods 10000] [--policies 1000]"""

import argparse
import statistics
import subprocess
import sys
import time

from policy.datastore.store import WriteMode
from policy.model.documents import parse_resource
from tests.lab.interfaces import wait_for_quiet
from tests.lab.kube_lab import KubeControllersInLab, pod_object
from tests.lab.processes import rss_kib
from tests.lab.topology import Lab, enter_controller_namespace, leave_controller_namespace

NAMESPACES = 10


def address(i: int) -> str:
    return f"10.{64 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}"


def pod_labels(i: int, policies: int) -> dict:
    return {"app": f"app{i % policies}", "role": f"r{i % 10}"}


def k8s_policy(k: int, port: int = 80) -> dict:
    return {
        "metadata": {"name": f"p{k}", "namespace": f"ns{k % NAMESPACES}"},
        "spec": {
            "podSelector": {"matchLabels": {"app": f"app{k}"}},
            "ingress": [
                {
                    "from": [
                        {
                            "podSelector": {
                                "matchExpressions": [{"key": "role", "operator": "In", "values": [f"r{k % 10}"]}]
                            }
                        }
                    ],
                    "ports": [{"port": port}, {"port": "http"}],
                }
            ],
        },
    }


def endpoint_doc(name: str, namespace: str, i: int, labels: dict, orchestrator: str = "k8s") -> dict:
    """As the CNI plugin writes it, and as the controller keeps it (profile of the service account)."""
    return {
        "apiVersion": "calyx.io/v1",
        "kind": "WorkloadEndpoint",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "node": "node1",
            "interfaceName": f"cxw{i}",
            "orchestrator": orchestrator,
            "pod": name if orchestrator == "k8s" else None,
            "workload": name,
            "ipNetworks": [f"{address(i)}/32"],
            "ports": [{"name": "http", "port": 8080}],
            "serviceAccountName": "default" if orchestrator == "k8s" else None,
            "profiles": [f"ksa.{namespace}.default"] if orchestrator == "k8s" else [],
        },
    }


def direct_policy(port: int) -> object:
    return parse_resource(
        {
            "apiVersion": "calyx.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "bench-direct", "namespace": "ns0"},
            "spec": {
                "order": 1000,
                "selector": "app == 'direct'",
                "ingress": [{"action": "Allow", "protocol": "TCP", "destination": {"ports": [port]}}],
            },
        }
    )


def idle_rss() -> int:
    """A Python process with calyx-kube-controllers' modules imported and nothing held."""
    code = "import policy.kube.main, sys; sys.stdout.write('ready\\n'); sys.stdout.flush(); sys.stdin.read()"
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        proc.stdout.readline()
        return rss_kib(proc.pid)
    finally:
        proc.stdin.close()
        proc.wait(10)


class Bench:
    def __init__(self, lab: Lab, kube: KubeControllersInLab):
        self.lab, self.kube = lab, kube

    def programmed(self, revision: int, started: float) -> None:
        while self.lab.felix_status("node1")["programmedRevision"] < revision:
            if time.perf_counter() > started + 10:
                raise TimeoutError(f"revision {revision} not programmed after 10 s")
            time.sleep(0.005)

    def through_kube(self, change) -> float:
        started = time.perf_counter()
        resource, version = change()
        revision = self.kube.handled(resource, version, timeout=10)
        self.programmed(revision, started)
        return time.perf_counter() - started

    def direct(self, resource) -> float:
        started = time.perf_counter()
        revision = self.lab.store.write([resource], WriteMode.APPLY)
        self.programmed(revision, started)
        return time.perf_counter() - started


def p99(samples: list[float]) -> float:
    return sorted(samples)[max(0, int(len(samples) * 0.99) - 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--policies", type=int, default=1000)
    args = parser.parse_args()
    print("waiting for the machine to be quiet...", flush=True)
    wait_for_quiet()
    enter_controller_namespace("cxbench")
    lab = Lab(nodes=1)
    kube = None
    try:
        lab.build()
        kube = KubeControllersInLab(lab, bookmark_interval=1.0)
        api = kube.api.store
        print(f"loading {args.pods} pods, {args.policies} policies...", flush=True)
        api.create("nodes", {"metadata": {"name": "node1"}})
        for n in range(NAMESPACES):
            api.create("namespaces", {"metadata": {"name": f"ns{n}", "labels": {"ns": f"ns{n}"}}})
            api.create("serviceaccounts", {"metadata": {"name": "default", "namespace": f"ns{n}"}})
        endpoints = []
        for i in range(args.pods):
            ns, labels = f"ns{i % NAMESPACES}", pod_labels(i, args.policies)
            api.create("pods", pod_object(f"w{i}", ns, "node1", [address(i)], labels))
            endpoints.append(parse_resource(endpoint_doc(f"w{i}", ns, i, labels)))
        endpoints.append(parse_resource(endpoint_doc("direct", "ns0", args.pods, {"app": "direct"}, "lab")))
        for k in range(args.policies):
            api.create("networkpolicies", k8s_policy(k))
        for start in range(0, len(endpoints), 1000):
            lab.store.write(endpoints[start : start + 1000], WriteMode.APPLY)
        lab.store.write([direct_policy(1)], WriteMode.APPLY)
        lab.start_felix("node1")
        started = time.perf_counter()
        kube.start()
        revision = kube.handled("pods", api.version, timeout=300)
        lab.wait_programmed("node1", revision, timeout=600)
        print(f"controller synced and felix programmed in {time.perf_counter() - started:.1f} s", flush=True)
        time.sleep(2)
        memory, baseline_memory = rss_kib(kube.daemon.pid), idle_rss()
        bench = Bench(lab, kube)
        policy_kube, policy_direct, label_kube, label_direct = [], [], [], []
        print(f"{args.changes} policy changes each way...", flush=True)
        for n in range(args.changes):
            k = (n * 37) % args.policies

            def change_policy(k=k, n=n):
                updated = k8s_policy(k, port=20_000 + n)
                return "networkpolicies", api.update("networkpolicies", updated, updated["metadata"]["namespace"])[
                    "metadata"
                ]["resourceVersion"]

            policy_kube.append(bench.through_kube(change_policy))
            time.sleep(0.05)
            policy_direct.append(bench.direct(direct_policy(20_000 + n)))
            time.sleep(0.05)
        print(f"{args.changes} pod label changes each way...", flush=True)
        for n in range(args.changes):
            i = (n * 97) % args.pods
            ns = f"ns{i % NAMESPACES}"

            def change_label(i=i, ns=ns, n=n):
                pod = api.get("pods", ns, f"w{i}")
                pod["metadata"]["labels"] = {**pod["metadata"]["labels"], "role": f"r{(i + n + 1) % 10}"}
                return "pods", api.update("pods", pod, ns)["metadata"]["resourceVersion"]

            label_kube.append(bench.through_kube(change_label))
            time.sleep(0.05)
            direct = endpoint_doc("direct", "ns0", args.pods, {"app": "direct", "role": f"r{n % 10}"}, "lab")
            label_direct.append(bench.direct(parse_resource(direct)))
            time.sleep(0.05)
    finally:
        if kube:
            kube.close()
        lab.destroy()
        leave_controller_namespace()
    load = open("/proc/loadavg").read().split()[0]
    print(
        f"\nkube-controllers benchmark ({args.pods} pods and endpoints on one felix node, {args.policies} policies; load {load})"
    )
    for what, through, direct in (
        ("NetworkPolicy written to the API server -> enforced", policy_kube, policy_direct),
        ("pod label change at the API server -> enforced", label_kube, label_direct),
    ):
        print(
            f"  {what}: p50 {statistics.median(through) * 1000:.1f} ms, p99 {p99(through) * 1000:.1f} ms "
            f"(goal p99 <= 200 ms: {'met' if p99(through) <= 0.2 else 'NOT met'}); written to etcd directly: "
            f"p50 {statistics.median(direct) * 1000:.1f} ms, p99 {p99(direct) * 1000:.1f} ms -> ratio p99 "
            f"{p99(through) / p99(direct):.2f}x over {len(through)} changes"
        )
    print(
        f"  controller memory with {args.pods} pods and {args.policies} policies: RSS {memory / 1024:.1f} MiB, "
        f"an idle process with the same modules {baseline_memory / 1024:.1f} MiB -> ratio {memory / baseline_memory:.2f}x "
        f"({(memory - baseline_memory) / 1024:.1f} MiB held)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
