"""A node joining and leaving a node-to-node mesh changes every other node's peers: ExaBGP
reloads its configuration, and no other session is reset (counted on every other node and on
the top-of-rack)."""

import pytest

from policy.datastore.store import Ref
from policy.model.resources import Node
from tests.lab.bgp_lab import node_address
from tests.lab.processes import wait_for

pytestmark = pytest.mark.integration


def status(lab, node: str) -> dict:
    return lab.policyctl("node", "status", node, "-o", "json")


def sessions(lab, node: str) -> dict[str, tuple[str, float]]:
    """Peer address -> (state, when it last changed), as calyx-bgp publishes them."""
    return {s["peer"]: (s["state"], s["since"]) for s in status(lab, node)["sessions"]}


def all_up(lab, node: str, peers: set[str]) -> bool:
    found = sessions(lab, node)
    return set(found) == peers and all(state == "up" for state, _ in found.values())


def peers_of(lab, node: str, tor: set[str]) -> set[str]:
    return tor | {a for other in lab.nodes.values() if other.name != node for a in node_address(other.index)}


def resets(lab, before: dict, bird_before: dict[str, str]) -> list[str]:
    """Sessions that went down (or restarted) since `before`, and ExaBGP restarts, on the first nodes."""
    found = []
    for node, kept in before.items():
        now = sessions(lab, node)
        found += [f"{node}: {peer} {now.get(peer)} was {was}" for peer, was in kept.items() if now.get(peer) != was]
        if (restarts := status(lab, node)["exabgp"]["restarts"]) != 0:
            found.append(f"{node}: ExaBGP restarted {restarts} times")
    bird_now = lab.bird_sessions()
    found += [f"tor: {p} since {bird_now.get(p)}, was {t}" for p, t in bird_before.items() if bird_now.get(p) != t]
    return found


def test_a_node_joining_and_leaving_the_mesh_resets_no_other_session(bgp_lab_factory):
    lab = bgp_lab_factory(reflector=False)
    first = list(lab.nodes)
    tor = {s["peer"] for s in status(lab, "node1")["sessions"] if s["name"].startswith("tor")}
    for node in first:
        wait_for(lambda: all_up(lab, node, peers_of(lab, node, tor)), timeout=20, what=lambda: sessions(lab, node))
    before = {node: sessions(lab, node) for node in first}
    bird_before = lab.bird_sessions()
    assert len(bird_before) == 2 * len(first), bird_before

    lab.join_node("node4")
    lab.start_bgp("node4")
    for node in lab.nodes:
        wait_for(lambda: all_up(lab, node, peers_of(lab, node, tor)), timeout=30, what=lambda: sessions(lab, node))
    v4, v6 = node_address(lab.nodes["node1"].index)
    wait_for(
        lambda: {v4, v6} <= {hop for hops in lab.learned_routes("node4").values() for hop in hops},
        timeout=15,
        what=lambda: f"node1's blocks on node4: {lab.learned_routes('node4')}",
    )
    assert resets(lab, before, bird_before) == []
    assert all(status(lab, node)["exabgp"]["reloads"] >= 1 for node in first)

    lab.kill_bgp("node4")
    lab.store.delete([Ref(Node, "node4")])
    gone = set(node_address(lab.nodes["node4"].index))
    for node in first:
        wait_for(lambda: not gone & set(sessions(lab, node)), timeout=15, what=lambda: sessions(lab, node))
    assert resets(lab, before, bird_before) == []
