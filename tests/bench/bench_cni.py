"""CNI benchmark, in network namespaces: pod network setup, ADD invoked to ADD returned (felix
has programmed the endpoint), on a node whose felix holds 10,000 endpoints and 1,000 policies,
as a host runs it: the static C client (build/cni-client) of a calyx-cni-server in the node.

1. 100 pods one after another: p50/p99 (goal p99 <= 150 ms);
2. 20 ADDs at once: all succeed, p99 (goal <= 1 s);
3. baseline in the same run: the reference `bridge` + `host-local` plugins doing an ADD (no
   policy, no datastore), 100 times one after another;
4. for comparison, the Python executables (an interpreter per call), 20 one after another.
Bounded: the load and each phase stop at a deadline (5 minutes in all by default).

    python -m tests.bench.bench_cni [--pods 100] [--parallel 20] [--executable-pods 20]"""

import argparse
import shutil
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from policy.datastore.store import WriteMode
from tests.bench.bench_policy import big_model
from tests.integration.cni.conftest import (
    add_pools,
    netconf,
    new_sandbox,
    plugin_dir,
    run_plugin,
    start_cni_server,
    stop_cni_server,
)
from tests.lab.interfaces import load_average, wait_for_quiet
from tests.lab.processes import wait_for
from tests.lab.topology import Lab, enter_controller_namespace, leave_controller_namespace

GOAL_P99, GOAL_PARALLEL_P99 = 0.150, 1.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def load_felix(lab: Lab) -> int:
    """10,000 endpoints and 1,000 policies in etcd, felix started on them and in sync."""
    resources = big_model()
    revision = 0
    for start in range(0, len(resources), 128):
        revision = lab.store.write(resources[start : start + 128], WriteMode.APPLY)
    lab.start_felix("node1")
    wait_for(lambda: lab.felix_status("node1")["programmedRevision"] >= revision, timeout=180, what="felix to load")
    return len(resources)


def calyx_adds(lab: Lab, names: list[str], parallel: int, deadline: float) -> list[float]:
    conf = netconf(lab, "node1", log_level="info", policy_setup_timeout_seconds=30)
    sandboxes = {name: new_sandbox(lab, name) for name in names}

    def add(name: str) -> float:
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark deadline")
        done = run_plugin(lab, "node1", "ADD", conf, name, sandboxes[name], timeout=60)
        if not done.ok:
            raise RuntimeError(f"ADD {name} failed: {done.output}")
        return done.seconds

    with ThreadPoolExecutor(parallel) as pool:
        return list(pool.map(add, names))


def bridge_adds(lab: Lab, count: int, deadline: float) -> list[float]:
    conf = {
        "cniVersion": "1.0.0",
        "name": "baseline",
        "type": "bridge",
        "bridge": "cxbench0",
        "isGateway": True,
        "ipam": {"type": "host-local", "subnet": "10.200.0.0/16", "dataDir": str(lab.dir / "host-local")},
    }
    seconds = []
    for i in range(count):
        if time.monotonic() > deadline:
            break
        done = run_plugin(lab, "node1", "ADD", conf, f"b{i}", new_sandbox(lab, f"b{i}"), plugin="bridge")
        if not done.ok:
            raise RuntimeError(f"bridge ADD failed: {done.output} {done.stderr}")
        seconds.append(done.seconds)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=100)
    parser.add_argument("--parallel", type=int, default=20)
    parser.add_argument("--executable-pods", type=int, default=20, help="ADDs by the Python executables (0: none)")
    parser.add_argument("--keep-logs", help="copy the logs of calyx-cni-server (each ADD's phases) and felix here")
    parser.add_argument("--budget", type=float, default=300, help="seconds for the whole run")
    args = parser.parse_args()
    started = time.monotonic()
    deadline = started + args.budget
    loads = [wait_for_quiet(timeout=30)]
    enter_controller_namespace("cxbench")
    try:
        lab = Lab(nodes=1)
        try:
            lab.build()
            add_pools(lab, block4=24, block6=120)
            plugin_dir(lab)
            print("loading felix with 10,000 endpoints and 1,000 policies...", flush=True)
            held = load_felix(lab)
            print("baseline: bridge + host-local...", flush=True)
            baseline = bridge_adds(lab, args.pods, deadline)
            server = start_cni_server(lab, "node1", log_level="info")
            print(f"{args.pods} calyx-cni ADDs through calyx-cni-server, one at a time...", flush=True)
            serial = calyx_adds(lab, [f"s{i}" for i in range(args.pods)], 1, deadline)
            print(f"{args.parallel} calyx-cni ADDs through calyx-cni-server at once...", flush=True)
            parallel = calyx_adds(lab, [f"p{i}" for i in range(args.parallel)], args.parallel, deadline)
            stop_cni_server(lab, "node1", server)
            if args.keep_logs:
                Path(args.keep_logs).mkdir(parents=True, exist_ok=True)
                for log in (lab.dir / "node1" / "cni-server.log", lab.dir / "felix-node1.log"):
                    shutil.copy(log, args.keep_logs)
            print(f"{args.executable_pods} calyx-cni ADDs as the Python executables, one at a time...", flush=True)
            executable = calyx_adds(lab, [f"x{i}" for i in range(args.executable_pods)], 1, deadline)
        finally:
            lab.destroy()
    finally:
        leave_controller_namespace()
    loads.append(load_average())
    base50, base99 = statistics.median(baseline), percentile(baseline, 0.99)
    p50, p99 = statistics.median(serial), percentile(serial, 0.99)
    par99 = percentile(parallel, 0.99)
    print("\nCNI benchmark")
    print(
        f"  load: felix holds {held} resources (10,000 endpoints, 1,000 policies); load average {loads[0]:.2f} -> {loads[1]:.2f}"
    )
    print(
        f"  baseline bridge + host-local ADD ({len(baseline)}x): p50 {base50 * 1000:.0f} ms, p99 {base99 * 1000:.0f} ms"
    )
    print(
        f"  calyx-cni ADD through calyx-cni-server, programmed ({len(serial)}x, one at a time): p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms"
    )
    print(
        f"    ratio to the baseline: p50 {p50 / base50:.2f}x, p99 {p99 / base99:.2f}x; goal p99 <= 150 ms: {'met' if p99 <= GOAL_P99 else 'NOT met'}"
    )
    print(
        f"  calyx-cni, {len(parallel)} ADDs at once: all succeeded, p99 {par99 * 1000:.0f} ms "
        f"({par99 / base99:.1f}x the baseline's p99); goal <= 1 s: {'met' if par99 <= GOAL_PARALLEL_P99 else 'NOT met'}"
    )
    if executable:
        x50, x99 = statistics.median(executable), percentile(executable, 0.99)
        print(
            f"  the Python executables instead ({len(executable)}x, one at a time): p50 {x50 * 1000:.0f} ms, "
            f"p99 {x99 * 1000:.0f} ms ({x50 / base50:.1f}x, {x99 / base99:.1f}x the baseline; {x50 / p50:.1f}x the server's p50)"
        )
    print(f"  run time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
