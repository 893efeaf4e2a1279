"""How explain, diff --flows and reachability scale, in one run, without root: for N endpoints
under M policies (10 namespaces, a policy per 10 endpoints, each allowing one port from
another app), against a plain compile of the same model by the nftables compiler (what felix
does at start) measured in the same run:

1. explain one flow: build the evaluator from the resources and answer one flow;
2. diff --flows for one changed policy: every pair x port class checked, pairs whose ends
   decide as before skipped;
3. reachability of one namespace (N/10 endpoints squared) at one port;
4. reachability of every endpoint at one port (N squared pairs; only up to N = 1,000).

    python -m tests.bench.bench_explain [--sizes 100,300,1000]"""

import argparse
import time
from collections.abc import Callable
from typing import TypeVar

from policy.compiler.compiler import PolicyCompiler
from policy.evaluate import flows
from policy.evaluate.evaluator import Evaluator
from policy.model.documents import parse_resource
from tests.policy_model import feed

NAMESPACES = 10
APPS = 20


def model(endpoints: int, policies: int) -> list:
    resources = [
        parse_resource({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"ns{n}"}})
        for n in range(NAMESPACES)
    ]
    for i in range(endpoints):
        resources.append(
            parse_resource(
                {
                    "apiVersion": "calyx.io/v1",
                    "kind": "WorkloadEndpoint",
                    "metadata": {
                        "name": f"e{i}",
                        "namespace": f"ns{i % NAMESPACES}",
                        "labels": {"app": f"a{i % APPS}"},
                    },
                    "spec": {
                        "node": f"n{i % 4}",
                        "interfaceName": f"cx{i:011x}",
                        "ipNetworks": [f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}/32"],
                        "ports": [{"name": "http", "port": 8080}],
                    },
                }
            )
        )
    resources += [policy(j, 80 + j % 5) for j in range(policies)]
    return resources


def policy(j: int, port: int):
    return parse_resource(
        {
            "apiVersion": "calyx.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": f"p{j}", "namespace": f"ns{j % NAMESPACES}"},
            "spec": {
                "selector": f"app == 'a{j % APPS}'",
                "ingress": [
                    {
                        "action": "Allow",
                        "protocol": "TCP",
                        "source": {"selector": f"app == 'a{(j + 1) % APPS}'", "namespaceSelector": "all()"},
                        "destination": {"ports": [port, "http"]},
                    }
                ],
            },
        }
    )


T = TypeVar("T")


def timed(action: Callable[[], T]) -> tuple[float, T]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def compile_baseline(resources: list) -> float:
    def run():
        compiler = PolicyCompiler("n0")
        for resource in resources:
            feed(compiler, resource)
        compiler.ruleset()

    return timed(run)[0]


def explain_one(resources: list) -> float:
    def run():
        evaluator = Evaluator(resources)
        a, b = (flows.peers(evaluator, 4, evaluator.universe.endpoints[k : k + 1])[0] for k in (0, 1))
        evaluator.flow(b, a, flows.Service(6, 80, 80).packet(b.address, a.address))

    return timed(run)[0]


def diff_one_policy(resources: list) -> tuple[float, int, int]:
    """Seconds, pairs x services in the question, and changes found, for policy p0 changed."""
    before = Evaluator(resources)
    changed = [r for r in resources if not (r.kind == "NetworkPolicy" and r.name == "p0")] + [policy(0, 443)]

    def run():
        after = Evaluator(changed)
        ends = flows.peers(before, 4)
        cells = flows.changed_pairs(before, after, flows.pairs(ends, ends))
        found = flows.services([before, after], 4)
        return len(cells) * len(found), flows.flow_changes(before, after, cells, found)

    seconds, (checks, changes) = timed(run)
    return seconds, checks, len(changes)


def reachability(resources: list, namespace: str | None) -> tuple[float, int]:
    def run():
        evaluator = Evaluator(resources)
        members = [m for m in evaluator.universe.endpoints if namespace is None or m.namespace == namespace]
        ends = flows.peers(evaluator, 4, members)
        cells = flows.pairs(ends, ends)
        flows.matrix(evaluator, cells, [flows.Service(6, 80, 80)])
        return len(cells)

    seconds, cells = timed(run)
    return seconds, cells


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100,300,1000", help="endpoint counts; policies are a tenth")
    args = parser.parse_args()
    print("N endpoints, M policies | compile (baseline) | explain one flow | diff --flows one policy | reachability")
    for endpoints in (int(n) for n in args.sizes.split(",")):
        policies = max(1, endpoints // 10)
        resources = model(endpoints, policies)
        baseline = compile_baseline(resources)
        explain = explain_one(resources)
        diff_seconds, checks, changes = diff_one_policy(resources)
        ns_seconds, ns_cells = reachability(resources, "ns0")
        print(f"N={endpoints} M={policies}: compile {baseline * 1000:.0f} ms")
        print(f"  explain one flow        {explain * 1000:8.0f} ms  {explain / baseline:6.2f}x compile")
        print(
            f"  diff --flows (p0)       {diff_seconds * 1000:8.0f} ms  {diff_seconds / baseline:6.2f}x compile"
            f"  ({checks:,} pair x port checks left to evaluate, {changes} changes)"
        )
        print(
            f"  reachability -n ns0     {ns_seconds * 1000:8.0f} ms  {ns_seconds / baseline:6.2f}x compile"
            f"  ({ns_cells:,} pairs, {ns_seconds / ns_cells * 1e6:.0f} us a pair)"
        )
        if endpoints <= 1000:
            all_seconds, all_cells = reachability(resources, None)
            print(
                f"  reachability (all)      {all_seconds * 1000:8.0f} ms  {all_seconds / baseline:6.2f}x compile"
                f"  ({all_cells:,} pairs, {all_seconds / all_cells * 1e6:.0f} us a pair)"
            )


if __name__ == "__main__":
    main()
