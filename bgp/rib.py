"""Routes learned from peers, with graceful restart (RFC 4724, receiving side).

When a session drops and the peer had offered graceful restart, its routes stay (stale) for
the restart time it offered, so forwarding survives its restart; they go when the peer sends
End-of-RIB again without them, or when the time is up. Routes already in the kernel when
calyx-bgp starts are held the same way, under a pseudo-peer, until peers re-send them."""

from dataclasses import dataclass, field

KERNEL = "kernel"  # the pseudo-peer holding routes found in the kernel at start
# Stale routes a peer did not re-send go this long after its End-of-RIB, not at once: a route
# reflector finishing its own restart sends End-of-RIB a moment before its other clients'
# routes have reached it (seen with BIRD: a 15 ms hole in forwarding).
END_OF_RIB_SETTLE = 2.0


@dataclass
class _PeerRoutes:
    routes: dict[str, str] = field(default_factory=dict)  # prefix -> next hop
    stale: set[str] = field(default_factory=set)
    stale_until: float | None = None
    restart_time: int = 0  # offered by the peer in its OPEN; 0: no graceful restart


class LearnedRib:
    def __init__(self) -> None:
        self._peers: dict[str, _PeerRoutes] = {}

    def _peer(self, peer: str) -> _PeerRoutes:
        return self._peers.setdefault(peer, _PeerRoutes())

    def adopt(self, routes: dict[str, frozenset[str]], now: float, hold: float) -> None:
        """Hold the kernel's routes from a previous run for `hold` seconds, unless re-learned."""
        held = self._peer(KERNEL)
        for prefix, nexthops in routes.items():
            held.routes[prefix] = min(nexthops)  # ECMP sets are re-learned from the peers
        held.stale = set(held.routes)
        held.stale_until = now + hold

    def opened(self, peer: str, restart_time: int) -> None:
        self._peer(peer).restart_time = restart_time

    def session_down(self, peer: str, now: float) -> None:
        state = self._peer(peer)
        if state.restart_time > 0 and state.routes:
            state.stale = set(state.routes)
            state.stale_until = now + state.restart_time
        else:
            state.routes.clear()
            state.stale.clear()
            state.stale_until = None

    def forget(self, peer: str) -> None:
        """The peer is no longer configured: drop its routes at once."""
        self._peers.pop(peer, None)

    def announce(self, peer: str, prefix: str, nexthop: str) -> None:
        state = self._peer(peer)
        state.routes[prefix] = nexthop
        state.stale.discard(prefix)
        self._release_kernel_copy(prefix)

    def withdraw(self, peer: str, prefix: str) -> None:
        state = self._peer(peer)
        state.routes.pop(prefix, None)
        state.stale.discard(prefix)

    def end_of_rib(self, peer: str, now: float) -> None:
        """The peer has re-sent everything: what is still stale goes after END_OF_RIB_SETTLE
        (each session carries one family)."""
        state = self._peer(peer)
        if state.stale:
            state.stale_until = min(state.stale_until or float("inf"), now + END_OF_RIB_SETTLE)

    def expire(self, now: float) -> float | None:
        """Drop stale routes whose time is up; return the next deadline (None if nothing waits)."""
        deadlines = []
        for state in self._peers.values():
            if state.stale_until is None:
                continue
            if now >= state.stale_until:
                for prefix in state.stale:
                    state.routes.pop(prefix, None)
                state.stale.clear()
                state.stale_until = None
            else:
                deadlines.append(state.stale_until)
        return min(deadlines, default=None)

    def _release_kernel_copy(self, prefix: str) -> None:
        held = self._peers.get(KERNEL)
        if held and prefix in held.routes:
            del held.routes[prefix]
            held.stale.discard(prefix)

    def desired(self) -> dict[str, frozenset[str]]:
        """prefix -> every next hop offering it (several: an ECMP route)."""
        found: dict[str, set[str]] = {}
        for state in self._peers.values():
            for prefix, nexthop in state.routes.items():
                found.setdefault(prefix, set()).add(nexthop)
        return {prefix: frozenset(hops) for prefix, hops in found.items()}

    def received(self, peer: str) -> int:
        state = self._peers.get(peer)
        return len(state.routes) if state else 0

    def stale_count(self) -> int:
        return sum(len(s.stale) for s in self._peers.values())
