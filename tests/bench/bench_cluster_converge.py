"""A 20-node cluster converging on bursts (issue 15): etcd, a BIRD route reflector, felix and
calyx-bgp on every node, in network namespaces (tests/lab/converge.py).

Each burst (on the same cluster: the previous one removed, its empty blocks too, so that BGP
carries new blocks every time) writes 1,000 endpoints (50 per node: IPAM addresses, then the WorkloadEndpoint, one
writer per node as its CNI plugin would, as fast as etcd takes them). Converged: every felix has
programmed the last write's revision (routes, the policy's selector set) and every calyx-bgp
holds a learned route for every other node's blocks. Reported over the bursts:

- seconds from the last write until the last node converged (goal p50 <= 2 s);
- the whole burst (first write to converged) against its baseline, the writes alone (first
  write to etcd's answer to the last one);
- the etcd keys each felix received per burst against those a bare watch received (a felix sees
  each change once: ~the burst, not the burst x nodes);
- the cluster's memory (RSS of every daemon and ExaBGP, by role).

    python -m tests.bench.bench_cluster_converge [--nodes 20] [--per-node 50] [--bursts 5]"""

import argparse
import signal
import statistics
import sys
import time

from tests.lab.converge import ConvergeCluster
from tests.lab.interfaces import load_average, wait_for_quiet
from tests.lab.topology import enter_controller_namespace, leave_controller_namespace


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--per-node", type=int, default=50)
    parser.add_argument("--bursts", type=int, default=5)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped run still tears its cluster down
    print("waiting for the machine to be quiet...", flush=True)
    waiting = time.perf_counter()
    loads = [wait_for_quiet()]
    print(f"  waited {time.perf_counter() - waiting:.0f} s", flush=True)
    enter_controller_namespace("cxbench")
    cluster = ConvergeCluster(nodes=args.nodes, per_node=args.per_node, timeout=180)
    try:
        started = time.perf_counter()
        cluster.build()
        print(f"{args.nodes} nodes up in {time.perf_counter() - started:.1f} s", flush=True)
        bursts = []
        for k in range(args.bursts):
            begun = time.perf_counter()
            if k:
                converged = cluster.clear()
                print(
                    f"  cleared in {cluster.clear_writes_seconds:.2f} s, converged {converged:.2f} s after", flush=True
                )
            time.sleep(2)  # the previous burst's status writes and BGP updates settle
            burst = cluster.burst()
            bursts.append(burst)
            loads.append(load_average())
            print(
                f"  burst {k + 1}: {burst.endpoints} endpoints written in {burst.write_seconds:.2f} s, converged "
                f"{burst.converge_seconds:.2f} s after the last write; felix received "
                f"{min(burst.felix_changes.values())}-{max(burst.felix_changes.values())} keys "
                f"(bare watch {burst.watch_changes}); {time.perf_counter() - begun:.0f} s with the clear before it",
                flush=True,
            )
        checking = time.perf_counter()
        missing = cluster.check_routes() + cluster.check_sets()
        memory = cluster.memory_kib()
        print(f"kernel checked on every node in {time.perf_counter() - checking:.1f} s", flush=True)
    finally:
        stopping = time.perf_counter()
        cluster.destroy()
        leave_controller_namespace()
        print(f"torn down in {time.perf_counter() - stopping:.1f} s", flush=True)
    lag = statistics.median(b.converge_seconds for b in bursts)
    whole = statistics.median(b.write_seconds + b.converge_seconds for b in bursts)
    writes = statistics.median(b.write_seconds for b in bursts)
    received = statistics.median(statistics.mean(b.felix_changes.values()) for b in bursts)
    watched = statistics.median(b.watch_changes for b in bursts)
    endpoints = bursts[0].endpoints
    print(f"\n{args.nodes} nodes, bursts of {endpoints} endpoints ({args.per_node} per node), {args.bursts} bursts")
    print(f"load average: {', '.join(f'{x:.2f}' for x in loads)}")
    print(f"converged after the last write: p50 {lag:.2f} s, max {max(b.converge_seconds for b in bursts):.2f} s")
    print(f"  goal p50 <= 2 s: {'met' if lag <= 2 else 'NOT met'}")
    print(f"whole burst {whole:.2f} s against the writes alone {writes:.2f} s: {whole / writes:.2f}x")
    print(
        f"etcd keys per felix per burst: {received:.0f} against the {watched:.0f} a bare watch saw written "
        f"({received / watched:.2f}x; {watched / endpoints:.1f} keys per endpoint: the endpoint, IPAM handles "
        f"and blocks; a fan-out per node would multiply it by {args.nodes})"
    )
    total = sum(memory.values())
    roles = ", ".join(f"{role} {kib / 1024:.0f} MiB" for role, kib in sorted(memory.items()))
    print(f"cluster memory: {total / 1024:.0f} MiB ({roles}), {total / 1024 / args.nodes:.0f} MiB per node")
    if missing:
        print(f"NOT converged in the kernel: {missing[:10]}")
        return 1
    print("every node: a learned route for every remote endpoint, the policy set complete")
    return 0


if __name__ == "__main__":
    sys.exit(main())
