"""Route agent benchmark, in one run, in network namespaces:

1. cold start: felix started with N endpoints in etcd until all N routes are in the kernel,
   against `ip -batch` adding the same N routes (goal: ratio <= 2);
2. one more endpoint with N present: etcd put to route in the kernel (goal: p99 <= 50 ms);
3. memory: RSS per endpoint above the same agent with no endpoints (goal: <= 2 KiB).

    python -m tests.bench.bench_routes [--endpoints 10000] [--adds 100]"""

import argparse
import select
import statistics
import subprocess
import sys
import time

from policy.datastore.keys import resource_key
from policy.datastore.kv import Write
from policy.datastore.store import ResourceStore, WriteMode, encode
from policy.model.names import host_interface_name
from policy.model.resources import Metadata, WorkloadEndpoint, WorkloadEndpointSpec
from tests.lab import netns
from tests.lab.interfaces import add_interfaces, load_average, remove_interfaces, single_kind, wait_for_quiet
from tests.lab.processes import rss_kib, wait_for
from tests.lab.topology import Lab, enter_controller_namespace, leave_controller_namespace


def address(i: int) -> str:
    return f"10.{64 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}"


def endpoint(i: int) -> WorkloadEndpoint:
    name = f"w{i}"
    return WorkloadEndpoint(
        metadata=Metadata(name=name, namespace="bench", labels={"app": "bench"}),
        spec=WorkloadEndpointSpec(
            node="node1",
            interfaceName=host_interface_name("bench", name),
            workload=name,
            ipNetworks=[f"{address(i)}/32"],
        ),
    )


def baseline_ip_batch(ns: str, count: int) -> float:
    lines = "".join(
        f"route add {address(i)}/32 dev {host_interface_name('bench', f'w{i}')} proto 76 scope link\n"
        for i in range(count)
    )
    started = time.perf_counter()
    netns.run("ip", "-n", ns, "-batch", "-", input=lines, timeout=600)
    elapsed = time.perf_counter() - started
    netns.run("ip", "-n", ns, "route", "flush", "proto", "76")
    return elapsed


def route_count(ns: str) -> int:
    return netns.run("ip", "-n", ns, "route", "show", "proto", "76").stdout.count("\n")


def load_endpoints(lab: Lab, count: int) -> int:
    store = ResourceStore(lab.kv, lab.prefix)
    revision = 0
    batch = [endpoint(i) for i in range(count)]
    for start in range(0, count, 1000):
        revision = store.write(batch[start : start + 1000], WriteMode.APPLY)
    return revision


def measure_adds(lab: Lab, ns: str, first: int, adds: int) -> list[float]:
    """etcd put to `ip monitor` seeing the route, one endpoint at a time."""
    monitor = subprocess.Popen(["ip", "-n", ns, "monitor", "route"], stdout=subprocess.PIPE, text=True, bufsize=1)
    latencies = []
    try:
        time.sleep(0.3)
        for i in range(first, first + adds):
            target = address(i)
            value = encode(endpoint(i))
            key = resource_key(lab.prefix, WorkloadEndpoint, f"w{i}", "bench")
            started = time.perf_counter()
            lab.kv.commit([Write(key, value)])
            deadline = started + 5
            while time.perf_counter() < deadline:
                ready, _, _ = select.select([monitor.stdout], [], [], deadline - time.perf_counter())
                if ready and target in monitor.stdout.readline():
                    latencies.append(time.perf_counter() - started)
                    break
            else:
                raise TimeoutError(f"route for {target} did not appear")
            time.sleep(0.02)
    finally:
        monitor.kill()
        monitor.wait()
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=10_000)
    parser.add_argument("--adds", type=int, default=100)
    args = parser.parse_args()
    n = args.endpoints
    print("waiting for the machine to be quiet...", flush=True)
    loads = [wait_for_quiet()]
    lab = Lab(nodes=1)
    try:
        enter_controller_namespace("cxbench")
        lab.build()
        ns = lab.nodes["node1"].netns
        # A node routes already (felix turns forwarding on anyway): interfaces inherit it.
        netns.in_ns(ns, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
        print(f"creating {n + args.adds} {single_kind()} interfaces...", flush=True)
        add_interfaces(ns, [host_interface_name("bench", f"w{i}") for i in range(n + args.adds)])
        loads.append(wait_for_quiet())

        # Memory of the empty agent: same binary, same interfaces, a prefix with nothing in it.
        lab.prefix = "/empty"
        empty = lab.start_felix("node1")
        wait_for(lambda: lab.felix_status("node1")["inSync"], 60, what="the empty agent to sync")
        time.sleep(1)
        empty_rss = rss_kib(empty.pid)
        lab.stop_felix("node1")
        lab.prefix = "/calyx"

        ip_batch = baseline_ip_batch(ns, n)
        revision = load_endpoints(lab, n)
        started = time.perf_counter()
        felix = lab.start_felix("node1")
        lab.wait_programmed("node1", revision, timeout=600)
        cold = time.perf_counter() - started
        routes = route_count(ns)
        assert routes == n, f"{routes} routes in the kernel, expected {n}"

        print("felix's own account of the cold start:")
        print("\n".join("  " + line for line in felix.log_path.read_text().splitlines() if "INFO" in line))
        latencies = measure_adds(lab, ns, n, args.adds)
        time.sleep(1)
        full_rss = rss_kib(felix.pid)
        loads.append(load_average())
        lab.stop_felix("node1")
        print(f"interfaces removed in {remove_interfaces(ns):.1f} s")
    finally:
        lab.destroy()
        leave_controller_namespace()
    print(f"load average (1 min) at start, before measuring, at the end: {', '.join(f'{x:.2f}' for x in loads)}")

    p50 = statistics.median(latencies) * 1000
    p99 = sorted(latencies)[max(0, int(len(latencies) * 0.99) - 1)] * 1000
    per_endpoint = (full_rss - empty_rss) / (n + args.adds)
    print(f"\nroute agent benchmark, {n} endpoints")
    print(f"  cold start: felix {cold:.2f} s, ip -batch {ip_batch:.3f} s -> ratio {cold / ip_batch:.1f}x (goal <= 2x)")
    print(
        f"  one endpoint with {n} present, put -> route: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(latencies) * 1000:.1f} ms "
        f"over {len(latencies)} adds (goal p99 <= 50 ms)"
    )
    print(
        f"  memory: empty agent {empty_rss / 1024:.1f} MiB, with {n + args.adds} endpoints {full_rss / 1024:.1f} MiB "
        f"-> {per_endpoint:.2f} KiB per endpoint (goal <= 2 KiB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
