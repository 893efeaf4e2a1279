"""BGP benchmark, in one run, in network namespaces (two Calyx nodes, a BIRD route reflector
as top-of-rack, and two BIRD speakers on the same rack for the baselines):

1. propagation: a WorkloadEndpoint with an address borrowed from node2's block written on node1,
   from the etcd put to its /32 in node2's kernel (goal: p99 <= 250 ms); baseline: a /32
   enabled on one BIRD speaker until it is in the other's kernel, through the same reflector;
2. throughput: 10,000 prefixes (IPAM blocks of node1) from the etcd write until all are in the
   reflector's table, against a BIRD speaker announcing the same 10,000;
3. the same work on both sides (goal: ratio <= 2): calyx-bgp started with the 10,000 already in
   etcd until all are in the reflector's table, against BIRD started with them as static routes.

    python -m tests.bench.bench_bgp [--prefixes 10000] [--rounds 100]"""

import argparse
import ipaddress
import itertools
import json
import socket
import time

from pyroute2 import IPRoute

from policy.datastore.ipam import IPAM
from policy.datastore.kv import Write
from policy.datastore.store import MAX_TXN_OPS, Ref, WriteMode
from tests.lab.bgp_lab import AS_NUMBER, TOR, BgpLab, node_address
from tests.lab.interfaces import load_average, wait_for_quiet
from tests.lab.processes import wait_for
from tests.lab.scratch import ScratchNamespace
from tests.lab.topology import enter_controller_namespace, leave_controller_namespace

BULK = ipaddress.ip_network("10.128.0.0/10")
BIRD_PROBE = "198.19.250.1/32"
TIMEOUT = 10.0
REFLECTOR_ERROR_WAIT = 2.0  # the reflector waits 1 s after a session error (`error wait time 1, 4`)


def bulk_prefixes(count: int) -> list[str]:
    return [str(net) for net in itertools.islice(BULK.subnets(new_prefix=26), count)]


def source_config(address: str, prefixes: list[str], announcing: bool = False) -> str:
    """announcing: the bulk routes on from the start, and no `connect delay time` (BIRD waits 5 s
    after its start before it connects; ExaBGP does not), for the cold-start comparison."""
    routes = "\n".join(f"  route {p} blackhole;" for p in prefixes)
    bulk, delay = ("", " connect delay time 0;") if announcing else (" disabled;", "")
    return (
        f"router id {address};\nprotocol device {{}}\n"
        f"protocol static probe {{ ipv4; disabled; route {BIRD_PROBE} blackhole; }}\n"
        f"protocol static bulk {{ ipv4;{bulk}\n{routes}\n}}\n"
        f"protocol bgp tor {{ local {address} as {AS_NUMBER}; neighbor {TOR} as {AS_NUMBER}; direct;{delay}\n"
        f'  ipv4 {{ import none; export where proto = "probe" || proto = "bulk"; next hop self; }}; }}\n'
    )


def sink_config(address: str) -> str:
    return (
        f"router id {address};\nprotocol device {{}}\nprotocol kernel {{ ipv4 {{ import none; export all; }}; }}\n"
        f"protocol bgp tor {{ local {address} as {AS_NUMBER}; neighbor {TOR} as {AS_NUMBER}; direct;\n"
        f"  ipv4 {{ import all; export none; gateway direct; }}; }}\n"
    )


def wait_route(ns: ScratchNamespace, prefix: str, present: bool) -> float:
    """Poll the namespace's main table every millisecond; the time when the route (dis)appeared."""

    def poll() -> float:
        network = ipaddress.ip_network(prefix)
        deadline = time.monotonic() + TIMEOUT
        with IPRoute() as ipr:
            while time.monotonic() < deadline:
                found = any(
                    m["dst_len"] == network.prefixlen and m.get_attr("RTA_DST") == str(network.network_address)
                    for m in ipr.get_routes(family=socket.AF_INET, table=254)
                )  # a dump, not a lookup
                if found == present:
                    return time.perf_counter()
                time.sleep(0.001)
        raise TimeoutError(f"{prefix} did not {'appear' if present else 'leave'} within {TIMEOUT}s")

    return ns.call(poll)


def calyx_propagation(lab: BgpLab, rounds: int) -> list[float]:
    ipam = IPAM(lab.kv, lab.prefix)
    block = next(b for b in ipam.blocks() if b.affinity == "node2" and ":" not in b.cidr)
    borrowed = block.address(block.network.num_addresses - 2)
    wep = lab.add_workload("node1", "probe", attach=False, addresses=(borrowed, "fd00:19:ffff::1")).endpoint(
        networks=[f"{borrowed}/32"]
    )
    node2 = ScratchNamespace(existing=lab.nodes["node2"].netns)
    samples = []
    try:
        for _ in range(rounds):
            started = time.perf_counter()
            lab.store.write([wep], WriteMode.APPLY)
            samples.append(wait_route(node2, f"{borrowed}/32", True) - started)
            lab.store.delete([Ref(type(wep), wep.name, wep.namespace)])
            wait_route(node2, f"{borrowed}/32", False)
    finally:
        node2.close()
    return samples


def bird_propagation(lab: BgpLab, rounds: int) -> list[float]:
    sink = ScratchNamespace(existing=lab.bird_speakers["bsink"].netns)
    samples = []
    try:
        for _ in range(rounds):
            started = time.perf_counter()
            lab.birdc("enable", "probe", socket="bsrc")
            samples.append(wait_route(sink, BIRD_PROBE, True) - started)
            lab.birdc("disable", "probe", socket="bsrc")
            wait_route(sink, BIRD_PROBE, False)
    finally:
        sink.close()
    return samples


def reflector_count(lab: BgpLab, protocol: str) -> int:
    out = lab.birdc("show", "route", "protocol", protocol, "count")
    for line in out.splitlines():
        if "of" in line and "routes" in line:
            return int(line.split()[0])
    return 0


def wait_count(lab: BgpLab, protocol: str, count: int, timeout: float = 120) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if reflector_count(lab, protocol) >= count:
            return time.perf_counter()
        time.sleep(0.01)
    raise TimeoutError(f"the reflector has {reflector_count(lab, protocol)} of {count} routes from {protocol}")


def bird_throughput(lab: BgpLab, count: int) -> float:
    started = time.perf_counter()
    lab.birdc("enable", "bulk", socket="bsrc")
    elapsed = wait_count(lab, "bsrc", count) - started
    lab.birdc("disable", "bulk", socket="bsrc")
    wait_for(lambda: reflector_count(lab, "bsrc") == 0, timeout=60, what="BIRD's bulk withdrawn")
    return elapsed


def calyx_throughput(lab: BgpLab, prefixes: list[str]) -> tuple[float, float]:
    """(until all are at the reflector, of which writing them to etcd) from the first write."""
    before = reflector_count(lab, "node1")
    writes = [
        Write(
            f"{lab.prefix}/v1/ipam/blocks/{p.replace('/', '-')}",
            json.dumps({"cidr": p, "pool": str(BULK), "affinity": "node1", "allocations": {}}).encode(),
        )
        for p in prefixes
    ]
    started = time.perf_counter()
    for start in range(0, len(writes), MAX_TXN_OPS):  # as many as etcd takes in one transaction
        lab.kv.commit(writes[start : start + MAX_TXN_OPS])
    written = time.perf_counter() - started
    return wait_count(lab, "node1", before + len(prefixes), timeout=300) - started, written


def bird_cold(lab: BgpLab, prefixes: list[str]) -> float:
    """BIRD started with the 10,000 static routes until all are in the reflector's table."""
    name = "bsrc"
    config = source_config(node_address(3)[0], prefixes, announcing=True)
    daemon = next(d for d in lab.daemons if d.name == f"bird-{name}")
    daemon.kill9()
    lab.daemons.remove(daemon)
    wait_for(lambda: reflector_count(lab, name) == 0, timeout=60, what=f"{name}'s routes to leave the reflector")
    time.sleep(REFLECTOR_ERROR_WAIT)
    started = time.perf_counter()
    lab.start_bird_speaker(name, config)
    return wait_count(lab, name, len(prefixes)) - started


def calyx_cold(lab: BgpLab, count: int) -> float:
    """calyx-bgp started with the prefixes already in etcd until all are in the reflector's table
    (after its earlier run's routes left it: graceful restart keeps them for the restart time)."""
    lab.kill_bgp("node1")
    wait_for(
        lambda: reflector_count(lab, "node1") == 0,
        timeout=lab.restart_time + 60,
        what="node1's routes to leave the reflector",
    )
    time.sleep(REFLECTOR_ERROR_WAIT)
    started = time.perf_counter()
    lab.start_bgp("node1")
    return wait_count(lab, "node1", count, timeout=300) - started


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prefixes", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    print("waiting for the machine to be quiet...", flush=True)
    loads = [wait_for_quiet()]
    enter_controller_namespace("cxbench")
    lab = BgpLab(nodes=2, reflector=True, bird_speakers=("bsrc", "bsink"))
    try:
        lab.build()
        prefixes = bulk_prefixes(args.prefixes)
        lab.start_bird_speaker("bsrc", source_config(node_address(3)[0], prefixes))
        lab.start_bird_speaker("bsink", sink_config(node_address(4)[0]))
        for node in lab.nodes:
            lab.start_bgp(node)
        lab.add_ipam_workload("node2", "anchor", attach=False)  # gives node2 its block
        wait_for(lambda: lab.bird_established() == 6, timeout=30, what=lambda: lab.birdc("show", "protocols"))
        wait_for(lambda: all(lab.bgp_ready(n) for n in lab.nodes), timeout=30, what="calyx-bgp ready")
        print("propagation...", flush=True)
        bird = bird_propagation(lab, args.rounds)
        calyx = calyx_propagation(lab, args.rounds)
        print("throughput...", flush=True)
        bird_bulk = bird_throughput(lab, len(prefixes))
        calyx_bulk, written = calyx_throughput(lab, prefixes)
        print("throughput from a cold start...", flush=True)
        calyx_start = calyx_cold(lab, reflector_count(lab, "node1"))
        bird_start = bird_cold(lab, prefixes)
    except Exception:
        print(lab.logs())
        raise
    finally:
        lab.destroy()
        leave_controller_namespace()
    p50, p99 = percentile(calyx, 50) * 1e3, percentile(calyx, 99) * 1e3
    b50, b99 = percentile(bird, 50) * 1e3, percentile(bird, 99) * 1e3
    print("\nBGP benchmark")
    print(f"  propagation, borrowed address on node1 -> /32 in node2's kernel via the reflector ({len(calyx)} rounds):")
    print(
        f"    calyx (etcd put -> kernel): p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(calyx) * 1e3:.1f} ms (goal p99 <= 250 ms)"
    )
    print(f"    BIRD -> BIRD (enable -> kernel): p50 {b50:.1f} ms, p99 {b99:.1f} ms; ratio of p99s {p99 / b99:.2f}x")
    print(f"  throughput, {len(prefixes)} prefixes until all are in the reflector's table:")
    print(f"    BIRD -> BIRD: {bird_bulk:.2f} s")
    print(
        f"    calyx-bgp + ExaBGP: {calyx_bulk:.2f} s from the first etcd write ({written:.2f} s of it writing etcd, "
        f"{calyx_bulk - written:.2f} s after)"
    )
    print(
        f"    ratio {calyx_bulk / bird_bulk:.2f}x (goal <= 2x); after the etcd write {(calyx_bulk - written) / bird_bulk:.2f}x"
    )
    print(
        f"  the same work on both sides: started with the {len(prefixes)} prefixes until all are in the reflector's table:"
    )
    print(f"    BIRD started with them as static routes: {bird_start:.2f} s")
    print(
        f"    calyx-bgp started with them in etcd: {calyx_start:.2f} s; ratio {calyx_start / bird_start:.2f}x (goal <= 2x)"
    )
    loads.append(load_average())
    print(f"load average (1 min) at the start and at the end: {loads[0]:.2f}, {loads[1]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
