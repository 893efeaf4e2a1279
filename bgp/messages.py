"""ExaBGP's JSON messages, turned into changes of the learned RIB and the session table."""

import ipaddress
import logging
from dataclasses import dataclass

from bgp.rib import LearnedRib

log = logging.getLogger(__name__)

GRACEFUL_RESTART_CAPABILITY = "64"


@dataclass
class Session:
    peer: str
    name: str
    as_number: int
    state: str = "idle"  # ExaBGP's words: idle, connected, up, down
    since: float | None = None  # wall-clock time of the last change
    eor_sent: bool = False  # End-of-RIB sent since the session came up


def apply_message(message: dict, rib: LearnedRib, sessions: dict[str, Session], now: float, wall: float) -> bool:
    """Apply one message; True if the learned routes may have changed."""
    kind = message.get("type")
    neighbor = message.get("neighbor", {})
    peer = neighbor.get("address", {}).get("peer")
    if peer is None:
        return False
    if kind == "state":
        state = neighbor.get("state", "")
        session = sessions.get(peer)
        if session is not None and session.state != state:
            session.state, session.since, session.eor_sent = state, wall, False
        if state == "down":
            log.info("session with %s down: %s", peer, neighbor.get("reason", ""))
            rib.session_down(peer, now)
            return True
        return False
    if kind == "open" and neighbor.get("direction") == "receive":
        capability = neighbor.get("open", {}).get("capabilities", {}).get(GRACEFUL_RESTART_CAPABILITY, {})
        rib.opened(peer, int(capability.get("time", 0)))
        return False
    if kind == "update" and neighbor.get("direction", "receive") == "receive":
        return _apply_update(peer, neighbor.get("message", {}), rib, now)
    return False


def _apply_update(peer: str, message: dict, rib: LearnedRib, now: float) -> bool:
    if "eor" in message:
        rib.end_of_rib(peer, now)
        return True
    update = message.get("update", {})
    for family, by_nexthop in update.get("announce", {}).items():
        if not family.endswith(" unicast"):
            continue
        for nexthop, entries in by_nexthop.items():
            hop = nexthop.split(",")[0].strip()  # an IPv6 global next hop may come with its link-local
            if _address(hop) is None:
                log.warning("ignoring routes from %s via next hop %r: not an address", peer, hop)
                continue
            for entry in entries:
                if (prefix := _network(entry["nlri"])) is not None:
                    rib.announce(peer, prefix, hop)
    for family, entries in update.get("withdraw", {}).items():
        if family.endswith(" unicast"):
            for entry in entries:
                if (prefix := _network(entry["nlri"])) is not None:
                    rib.withdraw(peer, prefix)
    return True


def _address(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _network(text: object) -> str | None:
    """The prefix ExaBGP reported, or None (logged) when it is not one: it must never reach the kernel."""
    try:
        return str(ipaddress.ip_network(str(text)))
    except ValueError:
        log.warning("ignoring a route for %r: not a prefix", text)
        return None
