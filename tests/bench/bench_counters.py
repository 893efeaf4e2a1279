"""What policy rule counters (felix --policy-counters) cost per packet, in one run, in network
namespaces: UDP packets a -> b through one node, every one of them through the policy chains
(a one-way UDP flow stays `ct state new` until b answers, so no packet skips policy as an
established one would), as packets per second delivered to b, for:

- no ruleset at all (the baseline: the kernel forwarding alone);
- the policy set compiled as felix does by default for allowed traffic: counters off (the
  ruleset is byte for byte the compiler's default, checked here; tests/golden holds it);
- the same with deny logging on (felix's default --flow-logs: log statements on drops only);
- the same with counters on (a counter on every policy rule and default drop).

Configurations are interleaved over rounds, so drift on a shared machine hits all alike; the
figure is the median of the rounds, printed as a ratio against the baseline and against off.

    python -m tests.bench.bench_counters [--seconds 1.0] [--rounds 7] [--clients 1000]"""

import argparse
import json
import statistics
import sys
import time

import nftables

from policy.compiler.compiler import PolicyCompiler
from policy.compiler.observe import Observe
from policy.compiler.ruleset import DEFAULT_HOST_ACCESS, build
from policy.datastore.store import WriteMode
from policy.model.documents import parse_resource
from tests.bench.bench_policy import address, wep
from tests.lab import netns
from tests.lab.interfaces import load_average, wait_for_quiet
from tests.lab.scratch import ScratchNamespace
from tests.lab.topology import Lab, enter_controller_namespace, leave_controller_namespace
from tests.policy_model import feed

PORT = 5001
SENDER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((sys.argv[1], int(sys.argv[2])))
end, sent, data = time.perf_counter() + float(sys.argv[3]), 0, b"x" * 18
while time.perf_counter() < end:
    for _ in range(500):
        try:
            s.send(data)
        except OSError:
            pass
    sent += 500
print(sent)
"""
DRAIN = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
while True:
    s.recv(2048)
"""


def model(a, b, clients: int) -> list:
    """b's ingress: denies for other ports first (rules packets pass without matching), then
    UDP from `role == client`, a set that also holds `clients` remote endpoints; a's egress
    open by a policy of its own. The packet meets a policy on both sides."""
    rules = [{"action": "Deny", "protocol": "TCP", "destination": {"ports": [1000 + i]}} for i in range(8)]
    rules.append({"action": "Allow", "protocol": "UDP", "source": {"selector": "role == 'client'"}})
    docs = [
        wep("a", "bench", "node1", a.interface, a.ip, {"app": "a", "role": "client"}),
        wep("b", "bench", "node1", b.interface, b.ip, {"app": "b"}),
        {
            "apiVersion": "calyx.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "b", "namespace": "bench"},
            "spec": {"selector": "app == 'b'", "ingress": rules},
        },
        {
            "apiVersion": "calyx.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "a", "namespace": "bench"},
            "spec": {"selector": "app == 'a'", "egress": [{"action": "Allow"}]},
        },
    ]
    docs += [wep(f"c{i}", "bench", "node2", f"cxc{i}", address(i), {"role": "client"}) for i in range(clients)]
    return [parse_resource(d) for d in docs]


def compiled(resources, observe: Observe | None) -> str:
    compiler = PolicyCompiler("node1") if observe is None else PolicyCompiler("node1", DEFAULT_HOST_ACCESS, observe)
    for resource in resources:
        feed(compiler, resource)
    return build(compiler.ruleset()).text()


def _load(text: str) -> None:
    rc, _, error = nftables.Nftables().cmd(text)
    if rc != 0:
        raise RuntimeError(error)


def delivered(lab: Lab, a, b, seconds: float) -> float:
    """Packets per second b's interface received while a sent as fast as it could."""

    def received() -> int:
        out = netns.in_ns(b.netns, "ip", "-s", "-j", "link", "show", "eth0").stdout
        return json.loads(out)[0]["stats64"]["rx"]["packets"]

    before = received()
    started = time.perf_counter()
    netns.in_ns(a.netns, sys.executable, "-c", SENDER, b.ip, str(PORT), str(seconds), timeout=seconds + 60)
    return (received() - before) / (time.perf_counter() - started)


def measure(lab: Lab, clients: int, seconds: float, rounds: int) -> tuple[dict[str, float], dict[str, int]]:
    node = lab.nodes["node1"]
    a, b = lab.add_workload("node1", "a", namespace="bench"), lab.add_workload("node1", "b", namespace="bench")
    resources = model(a, b, clients)
    revision = lab.store.write([r for r in resources if r.kind == "WorkloadEndpoint"][:2], WriteMode.APPLY)
    lab.start_felix("node1")
    lab.wait_programmed("node1", revision, timeout=60)
    lab.stop_felix("node1")  # routes and sysctls stay; from here the benchmark owns the table
    lab._daemon("bench-drain", ["ip", "netns", "exec", b.netns, sys.executable, "-c", DRAIN, str(PORT)])
    off = compiled(resources, Observe())
    if off != compiled(resources, None):
        raise AssertionError("counters off is not the compiler's default ruleset")
    configs = {
        "no ruleset": "",
        "counters off": off,
        "deny log on": compiled(resources, Observe(deny_log_group=20)),
        "counters on": compiled(resources, Observe(counters=True)),
    }
    counters = {name: text.count("counter") for name, text in configs.items()}
    samples: dict[str, list[float]] = {name: [] for name in configs}
    space = ScratchNamespace(existing=node.netns)
    try:
        for _ in range(rounds):
            for name, text in configs.items():
                space.call(_load, "flush ruleset\n" + text, timeout=300)
                delivered(lab, a, b, 0.2)  # warm up
                samples[name].append(delivered(lab, a, b, seconds))
    finally:
        space.call(_load, "flush ruleset\n", timeout=60)
        space.close()
    stopped = [name for name, values in samples.items() if min(values) < 1000]
    if stopped:
        raise AssertionError(f"packets a -> b did not pass with {', '.join(stopped)}: the model is wrong")
    for name, values in samples.items():
        print(f"  {name:>13}: " + " ".join(f"{v / 1000:.0f}k" for v in values) + " packets/s")
    for name in ("deny log on", "counters on"):  # each round's pair ran back to back: drift cancels
        paired = sorted(on / off for on, off in zip(samples[name], samples["counters off"], strict=True))
        print(f"  {name} / counters off, per round: median {statistics.median(paired):.3f}x, "
              f"range {paired[0]:.3f}-{paired[-1]:.3f}x")  # fmt: skip
    return {name: statistics.median(values) for name, values in samples.items()}, counters


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--clients", type=int, default=1000)
    args = parser.parse_args()
    print("waiting for the machine to be quiet...", flush=True)
    loads = [wait_for_quiet()]
    enter_controller_namespace("cxbench")
    try:
        lab = Lab(nodes=1)
        try:
            lab.build()
            medians, counters = measure(lab, args.clients, args.seconds, args.rounds)
        finally:
            lab.destroy()
    finally:
        leave_controller_namespace()
    loads.append(load_average())
    base, off = medians["no ruleset"], medians["counters off"]
    print(f"load average (1 min) at the start and at the end: {loads[0]:.2f}, {loads[1]:.2f}")
    print(f"\nrule counters benchmark: UDP a -> b through policy, every packet ct state new, median of {args.rounds}")
    for name, value in medians.items():
        print(
            f"  {name:>13}: {value / 1000:7.1f}k packets/s  ({value / base:.3f}x no ruleset, {value / off:.3f}x off)"
            f"  [{counters[name]} counters in the ruleset]"
        )
    print(f"  counters on costs {(1 - medians['counters on'] / off) * 100:+.1f}% of the packet rate with them off")
    return 0


if __name__ == "__main__":
    sys.exit(main())
