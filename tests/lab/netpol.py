"""The Kubernetes NetworkPolicy e2e model in the lab: namespaces x, y, z with pods a, b, c
(labelled pod=<name>, namespaces ns=<name>), each serving TCP and UDP on ports 80 and 81,
spread over two nodes; and a reachability matrix probed with real packets."""

import json
import subprocess

from policy.datastore.store import Ref, WriteMode
from policy.model.documents import load_documents
from policy.model.policies import GlobalNetworkPolicy, GlobalNetworkSet, NetworkPolicy, NetworkSet, Profile, Tier
from policy.model.resources import EndpointPort, Metadata, Namespace, WorkloadEndpoint, WorkloadEndpointSpec
from tests.lab import netns
from tests.lab.processes import wait_for
from tests.lab.topology import Lab, Workload
from tests.lab.traffic import PROBE

NAMESPACES = ("x", "y", "z")
PODS = ("a", "b", "c")
PORTS = (80, 81)
PROBE_TIMEOUT = 1.0
POLICY_KINDS = (NetworkPolicy, GlobalNetworkPolicy, NetworkSet, GlobalNetworkSet, Tier, Profile)


def pod_names() -> list[str]:
    return [f"{ns}/{pod}" for ns in NAMESPACES for pod in PODS]


class PolicyLab:
    def __init__(self, lab: Lab):
        self.lab = lab
        self.pods: dict[str, Workload] = {}
        self.labels: dict[str, dict[str, str]] = {}
        self.profiles: dict[str, list[str]] = {}

    def build(self) -> None:
        nodes = list(self.lab.nodes)
        for i, name in enumerate(pod_names()):
            ns, pod = name.split("/")
            self.pods[name] = self.lab.add_workload(nodes[i % len(nodes)], pod, namespace=ns)
            self.labels[name] = {"pod": pod}
            self.profiles[name] = []
        namespaces = [Namespace(metadata=Metadata(name=ns, labels={"ns": ns})) for ns in NAMESPACES]
        revision = self.lab.store.write(namespaces + [self.endpoint(n) for n in self.pods], WriteMode.CREATE)
        for node in nodes:
            self.lab.start_felix(node)
        for workload in self.pods.values():
            self.lab._daemon(
                f"serve-{workload.namespace}-{workload.name}",
                ["ip", "netns", "exec", workload.netns, "python3", PROBE, "serve", *map(str, PORTS)],
            )
        for workload in self.pods.values():
            wait_for(
                lambda: netns.in_ns(workload.netns, "ss", "-Hlun", "sport = :81").stdout.strip(),
                timeout=10,
                what=f"servers in {workload.netns}",
            )
        self.wait(revision)

    def endpoint(self, name: str) -> WorkloadEndpoint:
        w = self.pods[name]
        ports = [
            EndpointPort(name=f"serve-{p}-{proto.lower()}", protocol=proto, port=p)
            for p in PORTS
            for proto in ("TCP", "UDP")
        ]
        return WorkloadEndpoint(
            metadata=Metadata(name=w.name, namespace=w.namespace, labels=self.labels[name]),
            spec=WorkloadEndpointSpec(
                node=w.node,
                interfaceName=w.interface,
                orchestrator="lab",
                workload=w.name,
                ipNetworks=[f"{w.ip}/32", f"{w.ipv6}/128"],
                ports=ports,
                profiles=self.profiles[name],
            ),
        )

    def relabel(self, name: str, labels: dict[str, str]) -> None:
        self.labels[name] = labels
        self.wait(self.lab.store.write([self.endpoint(name)], WriteMode.APPLY))

    def set_profiles(self, name: str, profiles: list[str]) -> None:
        self.profiles[name] = profiles
        self.wait(self.lab.store.write([self.endpoint(name)], WriteMode.APPLY))

    def apply(self, text: str) -> None:
        self.wait(self.lab.store.write(load_documents(text, "<test>"), WriteMode.APPLY))

    def delete(self, text: str) -> None:
        refs = [Ref(type(r), r.name, r.namespace) for r in load_documents(text, "<test>")]
        self.wait(self.lab.store.delete(refs))

    def reset(self) -> None:
        """Remove every policy-related resource and restore the pods' labels."""
        refs = [Ref(type(r), r.name, r.namespace) for kind in POLICY_KINDS for r in self.lab.store.list_kind(kind)[0]]
        changed = [n for n in self.pods if self.labels[n] != {"pod": n.split("/")[1]} or self.profiles[n]]
        for name in changed:
            self.labels[name], self.profiles[name] = {"pod": name.split("/")[1]}, []
        revision = self.lab.store.write([self.endpoint(n) for n in changed], WriteMode.APPLY) if changed else 0
        if refs:
            revision = self.lab.store.delete(refs)
        self.wait(revision)

    def wait(self, revision: int | None) -> None:
        revision = revision or 0
        for node in self.lab.nodes:
            self.lab.wait_programmed(node, revision, timeout=20)

    def reachable_from(self, namespace: str, pods: list[str], port: int = 80, proto: str = "tcp") -> dict[str, bool]:
        """pod -> reachable from a namespace outside the model (a fabric host), over IPv4."""
        targets = [[self.pods[pod].ip, port, proto] for pod in pods]
        out = netns.in_ns(namespace, "python3", PROBE, "probe", str(PROBE_TIMEOUT), json.dumps(targets), timeout=30)
        return dict(zip(pods, json.loads(out.stdout), strict=True))

    def matrix(self, port: int = 80, proto: str = "tcp", family: int = 4) -> dict[tuple[str, str], bool]:
        """(from, to) -> reachable, probing all 81 pairs in parallel."""
        names = pod_names()
        targets = [[self.pods[d].ip if family == 4 else self.pods[d].ipv6, port, proto] for d in names]
        procs = {
            src: subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    self.pods[src].netns,
                    "python3",
                    PROBE,
                    "probe",
                    str(PROBE_TIMEOUT),
                    json.dumps(targets),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for src in names
        }
        result = {}
        for src, proc in procs.items():
            out, _ = proc.communicate(timeout=30)
            for dst, ok in zip(names, json.loads(out), strict=True):
                result[(src, dst)] = ok
        return result


class Reachability:
    """Expected matrix, built like the upstream e2e tests: a default, then exceptions."""

    def __init__(self, default: bool = True):
        self.expected = {(s, d): default for s in pod_names() for d in pod_names()}

    def expect(self, src: str, dst: str, ok: bool) -> "Reachability":
        self.expected[(src, dst)] = ok
        return self

    def ingress(self, dst: str, ok: bool) -> "Reachability":
        for src in pod_names():
            self.expected[(src, dst)] = ok
        return self

    def egress(self, src: str, ok: bool) -> "Reachability":
        for dst in pod_names():
            self.expected[(src, dst)] = ok
        return self

    def self_allowed(self) -> "Reachability":
        """Traffic from a pod to itself never leaves it, so policy cannot stop it."""
        for name in pod_names():
            self.expected[(name, name)] = True
        return self

    def check(self, observed: dict[tuple[str, str], bool], what: str = "") -> None:
        self.self_allowed()
        wrong = [pair for pair, ok in self.expected.items() if observed[pair] != ok]
        if wrong:
            raise AssertionError(f"{what}: {len(wrong)} of 81 pairs differ\n" + self.table(observed))

    def table(self, observed) -> str:
        names = pod_names()
        lines = ["from\\to " + " ".join(n.replace("/", "") for n in names)]
        for src in names:
            cells = []
            for dst in names:
                ok, want = observed[(src, dst)], self.expected[(src, dst)]
                cells.append((" ." if ok else " X") + ("" if ok == want else "!"))
            lines.append(f"{src:8}" + " ".join(c.ljust(2) for c in cells))
        return "\n".join(lines) + "\n(. reachable, X blocked, ! not as expected)"
