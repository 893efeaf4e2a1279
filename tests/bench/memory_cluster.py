"""Where felix's memory goes in a cluster-shaped world, without root: the real Agent (intake,
route index, policy compiler, policy driver) fed by FakeKV, programming FakeKernel and FakeNft.

tracemalloc counts what the agent's own Python code keeps after its first sync (the fakes'
allocations are left out), per remote endpoint (a cluster of N nodes against the same cluster
with only the local node's endpoints) and per local endpoint (10,000 local against none).

    python -m tests.bench.memory_cluster [--nodes 1000] [--top 25]"""

import argparse
import gc
import linecache
import sys
import threading
import time
import tracemalloc
from dataclasses import dataclass

from felix.agent import Agent
from felix.config import AgentConfig
from policy.datastore.etcd import EtcdSettings
from policy.datastore.keys import key_of
from policy.datastore.kv import KeyValue
from policy.datastore.store import encode
from tests.bench.cluster_model import LOCAL_NODE, ClusterShape, interface_of, local_indices, resources
from tests.fakes import FakeKernel, FakeKV, FakeNft
from tests.lab.interfaces import load_average

PREFIX = "/calyx"
EXCLUDED = ("tracemalloc", "fakes.py")  # in any frame: what the fakes keep is not felix's


@dataclass
class Measured:
    heap: int  # bytes the agent's code still holds after the first sync
    seconds: float  # from Agent() to the first programmed revision
    snapshot: tracemalloc.Snapshot


def fill(kv: FakeKV, items) -> int:
    """Straight into the fake's store: the harness measures the agent, not the writes."""
    for resource in items:
        kv.revision += 1
        key = key_of(PREFIX, resource)
        kv.data[key] = KeyValue(key, encode(resource), kv.revision, kv.revision)
    return kv.revision


def run_agent(shape: ClusterShape, endpoints: range, local: list[str]) -> Measured:
    kv = FakeKV()
    revision = fill(kv, resources(shape, endpoints))
    kernel = FakeKernel({name: 1000 + n for n, name in enumerate(local)})
    gc.collect()
    tracemalloc.start(30)
    before = tracemalloc.take_snapshot()
    started = time.perf_counter()
    config = AgentConfig(node_name=LOCAL_NODE, etcd=EtcdSettings(), etcd_prefix=PREFIX)
    agent = Agent(config, kv, kernel, FakeNft())
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 600
    while agent.status.programmed_revision < revision:
        if time.monotonic() > deadline or not thread.is_alive():
            raise TimeoutError("the agent did not program the cluster")
        time.sleep(0.01)
    seconds = time.perf_counter() - started
    time.sleep(0.2)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    keep = [tracemalloc.Filter(False, f"*{name}*", all_frames=True) for name in EXCLUDED]
    stats = after.filter_traces(keep).compare_to(before.filter_traces(keep), "filename")
    agent.loop.stop()
    thread.join(timeout=30)
    return Measured(sum(s.size_diff for s in stats), seconds, after.filter_traces(keep))


def top_lines(snapshot: tracemalloc.Snapshot, count: int, per: int) -> str:
    lines = []
    for stat in snapshot.statistics("lineno")[:count]:
        frame = stat.traceback[0]
        code = linecache.getline(frame.filename, frame.lineno).strip()
        where = frame.filename.split("/work/main/")[-1].split("site-packages/")[-1]
        lines.append(f"  {stat.size / per:8.1f} B/endpoint  {where}:{frame.lineno}  {code[:90]}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    shape = ClusterShape(nodes=args.nodes)
    local = [interface_of(i) for i in local_indices(shape)]
    only_local = run_agent(shape, local_indices(shape), local)
    cluster = run_agent(shape, range(shape.endpoints), local)
    remote = shape.endpoints - shape.per_node
    per_remote = (cluster.heap - only_local.heap) / remote

    all_local = ClusterShape(nodes=1, per_node=10_000, policies=shape.policies)
    none = run_agent(all_local, range(0), [])
    many = run_agent(all_local, range(all_local.endpoints), [interface_of(i) for i in range(all_local.endpoints)])
    per_local = (many.heap - none.heap) / all_local.endpoints

    print(f"felix's Python heap after the first sync (tracemalloc; load average {load_average():.2f})")
    print(
        f"  cluster of {shape.endpoints} endpoints on {shape.nodes} nodes, {shape.policies} policies: "
        f"{cluster.heap / 2**20:.1f} MiB in {cluster.seconds:.1f} s; only the {shape.per_node} local endpoints: "
        f"{only_local.heap / 2**20:.1f} MiB in {only_local.seconds:.1f} s"
    )
    print(f"  per remote endpoint: {per_remote:.0f} B (goal for RSS <= 1.5 KiB = 1536 B)")
    print(
        f"  per local endpoint (10,000 local against none, same policies): {per_local:.0f} B (goal for RSS <= 2 KiB = 2048 B)"
    )
    print(f"\nwhere the cluster's heap is, per endpoint of the cluster (top {args.top} lines):")
    print(top_lines(cluster.snapshot, args.top, shape.endpoints))
    return 0


if __name__ == "__main__":
    sys.exit(main())
