"""`make demo`: a two-node Calyx cluster in network namespaces, with real packets.

etcd, a BIRD top-of-rack acting as route reflector, two nodes running felix and calyx-bgp,
and two workloads per node with addresses from IPAM, each attached by the workload recipe and
declared with policyctl.  Prints each node's BGP sessions, its workload routes and the routes
it learned over BGP, and the reachability between all workloads (ping and TCP, IPv4 and IPv6:
no static route anywhere); then applies a Kubernetes
NetworkPolicy that lets only node1-a reach node2-b and prints the IPv4 table again, enforced
by nftables.  Then tears it all down (--keep leaves it up; --down removes a kept one)."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.lab import netns
from tests.lab.bgp_lab import BgpLab
from tests.lab.processes import wait_for
from tests.lab.topology import Lab, ctl_namespace, enter_controller_namespace, leave_controller_namespace
from tests.lab.traffic import ping, reachability, start_echo_servers

STATE = Path(".demo/state.json")


def _manifest(lab: Lab) -> str:
    """The workloads' endpoints (calyx-bgp registers the Node resources itself)."""
    docs = []
    for node in lab.nodes.values():
        for w in node.workloads:
            docs.append(json.loads(w.endpoint().model_dump_json(exclude_none=True)))
    return "\n---\n".join(json.dumps(d) for d in docs)


POLICY = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: only-node1-a, namespace: default}
spec:
  podSelector: {matchLabels: {app: node2-b}}
  ingress: [{from: [{podSelector: {matchLabels: {app: node1-a}}}]}]
"""


def _policyctl(lab: Lab, *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "policy.ctl.main", *lab.etcd_flags(), *args], check=True, capture_output=True, text=True
    ).stdout


def _print_table(lab: Lab, family: int, expect=lambda src, dst: True) -> bool:
    names = [w.name for w in lab.workloads()]
    table = reachability(lab, family)
    width = max(len(n) for n in names) + 2
    print(f"\nIPv{family} reachability (ping/tcp), from row to column:")
    print(" " * width + "".join(n.ljust(width) for n in names))
    for src in names:
        cells = ["-" if src == dst else "/".join("ok" if r else "NO" for r in table[(src, dst)]) for dst in names]
        print(src.ljust(width) + "".join(c.ljust(width) for c in cells))
    return all(
        all(result) == expect(src, dst) and any(result) == expect(src, dst) for (src, dst), result in table.items()
    )


def run(keep: bool) -> int:
    enter_controller_namespace("cxdemo")
    lab = BgpLab(nodes=2, lab_id="demo", reflector=True)
    try:
        print("building: etcd, a BIRD top-of-rack (route reflector), node1, node2 (network namespaces)...")
        lab.build()
        for node in lab.nodes:
            lab.start_bgp(node)
        for node in lab.nodes:
            for suffix in ("a", "b"):
                lab.add_ipam_workload(node, f"{node}-{suffix}")
        print(_policyctl(lab, "ipam", "show").rstrip())
        manifest = lab.dir / "cluster.yaml"
        manifest.write_text(_manifest(lab))
        print(f"policyctl apply -f {manifest}")
        subprocess.run(
            [sys.executable, "-m", "policy.ctl.main", *lab.etcd_flags(), "apply", "-f", str(manifest)], check=True
        )
        revision = int(
            json.loads(lab.etcdctl("get", "/", "--prefix", "--keys-only", "-w", "json"))["header"]["revision"]
        )
        for node in lab.nodes:
            lab.start_felix(node)
        for node in lab.nodes:
            status = lab.wait_programmed(node, revision, timeout=30)
            print(f"felix on {node}: {status}")
        wait_for(lambda: lab.bird_established() == 4, timeout=30, what="BGP sessions with the top-of-rack")
        wait_for(
            lambda: all(len(lab.learned_routes(n)) == 2 for n in lab.nodes), timeout=30, what="routes learned over BGP"
        )
        for name, node in lab.nodes.items():
            print(f"\npolicyctl node status {name}")
            wait_for(lambda: "up" in _policyctl(lab, "node", "status", name), timeout=10, what="published BGP status")
            print(_policyctl(lab, "node", "status", name).rstrip())
            print(f"{name}: ip route show proto 76 (workloads; blackholes for the node's IPAM blocks)")
            print(netns.in_ns(node.netns, "ip", "route", "show", "proto", "76").stdout.rstrip())
            print(netns.in_ns(node.netns, "ip", "-6", "route", "show", "proto", "76").stdout.rstrip())
            print(f"{name}: ip route show proto 77 (learned over BGP)")
            print(netns.in_ns(node.netns, "ip", "route", "show", "proto", "77").stdout.rstrip())
            print(netns.in_ns(node.netns, "ip", "-6", "route", "show", "proto", "77").stdout.rstrip())
        print("\ntop-of-rack (BIRD) routes:\n" + lab.birdc("show", "route").rstrip())
        start_echo_servers(lab)
        first = lab.workloads()[0]
        wait_for(
            lambda: all(ping(first, w.ipv6) for w in lab.workloads()[1:]), timeout=10, what="IPv6 neighbour discovery"
        )
        ok = _print_table(lab, 4) & _print_table(lab, 6)
        print("\nall workloads reach each other" if ok else "\nSOME WORKLOADS CANNOT REACH EACH OTHER")
        policy = lab.dir / "policy.yaml"
        policy.write_text(POLICY)
        print(
            f"\npolicyctl apply -f {policy}   (only node1-a may reach node2-b)\n{_policyctl(lab, 'apply', '-f', str(policy))}"
        )
        revision = int(
            json.loads(lab.etcdctl("get", "/", "--prefix", "--keys-only", "-w", "json"))["header"]["revision"]
        )
        for node in lab.nodes:
            lab.wait_programmed(node, revision, timeout=30)
        print(_policyctl(lab, "get", "networkpolicy", "-o", "wide").rstrip())
        enforced = _print_table(lab, 4, expect=lambda src, dst: dst != "node2-b" or src == "node1-a")
        print("\nthe policy is enforced" if enforced else "\nTHE POLICY IS NOT ENFORCED AS WRITTEN")
        ok &= enforced
        if keep:
            _save(lab)
            print(
                f"\nleft running (KEEP=1). Try:\n  ip netns exec {lab.nodes['node1'].netns} ip route\n"
                f"  ip netns exec {ctl_namespace()} {sys.executable} -m policy.ctl.main --etcd-endpoints {lab.etcd_url} get wep -A\n"
                "Remove it with: make demo-down"
            )
        return 0 if ok else 1
    finally:
        if not keep:
            lab.destroy()
            leave_controller_namespace()


def _save(lab: Lab) -> None:
    STATE.parent.mkdir(exist_ok=True)
    STATE.write_text(
        json.dumps(
            {
                "namespaces": lab.namespaces + [ctl_namespace()],
                "pids": [d.pid for d in lab.daemons],
                "dir": str(lab.dir),
            }
        )
    )


def down() -> int:
    if not STATE.exists():
        print("no demo is running")
        return 0
    state = json.loads(STATE.read_text())
    for pid in state["pids"]:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    for ns in reversed(state["namespaces"]):
        netns.remove(ns)
    subprocess.run(["rm", "-rf", state["dir"]], check=False)
    STATE.unlink()
    print(f"removed {len(state['namespaces'])} namespaces and {len(state['pids'])} processes")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    parser.add_argument("--down", action="store_true", help="remove a cluster left by --keep")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("the demo builds network namespaces: run it as root", file=sys.stderr)
        return 2
    if args.down:
        return down()
    if STATE.exists():
        print("a demo is already running: make demo-down first", file=sys.stderr)
        return 2
    return run(args.keep)


if __name__ == "__main__":
    sys.exit(main())
