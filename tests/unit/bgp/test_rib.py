"""The learned RIB: ECMP, withdraws, graceful restart (stale until End-of-RIB or the time),
and routes adopted from the kernel at start."""

from bgp.messages import Session, apply_message
from bgp.rib import LearnedRib


def update(peer, announce=None, withdraw=None, eor=None):
    message = {"update": {"announce": announce or {}, "withdraw": withdraw or {}}} if eor is None else {"eor": eor}
    return {"type": "update", "neighbor": {"address": {"peer": peer}, "direction": "receive", "message": message}}


def state(peer, value, reason=""):
    return {"type": "state", "neighbor": {"address": {"peer": peer}, "state": value, "reason": reason}}


def opened(peer, restart_time):
    caps = {"64": {"name": "graceful restart", "time": restart_time}} if restart_time else {}
    return {
        "type": "open",
        "neighbor": {"address": {"peer": peer}, "direction": "receive", "open": {"capabilities": caps}},
    }


def feed(rib, sessions, *messages, now=0.0):
    for message in messages:
        apply_message(message, rib, sessions, now, 1000.0 + now)


def test_two_peers_offering_a_prefix_make_an_ecmp_route_and_withdraws_remove_hops():
    rib, sessions = LearnedRib(), {}
    feed(
        rib,
        sessions,
        update("10.0.0.2", {"ipv4 unicast": {"10.0.0.2": [{"nlri": "10.244.1.0/26"}]}}),
        update("10.0.0.3", {"ipv4 unicast": {"10.0.0.3": [{"nlri": "10.244.1.0/26"}, {"nlri": "10.244.2.0/26"}]}}),
        update("fd00::2", {"ipv6 unicast": {"fd00::2,fe80::1": [{"nlri": "fd00:244::/122"}]}}),
    )
    assert rib.desired() == {
        "10.244.1.0/26": {"10.0.0.2", "10.0.0.3"},
        "10.244.2.0/26": {"10.0.0.3"},
        "fd00:244::/122": {"fd00::2"},
    }
    feed(rib, sessions, update("10.0.0.3", withdraw={"ipv4 unicast": [{"nlri": "10.244.1.0/26"}]}))
    assert rib.desired()["10.244.1.0/26"] == {"10.0.0.2"} and rib.received("10.0.0.3") == 1


def test_graceful_restart_keeps_routes_until_end_of_rib_then_drops_what_was_not_resent_after_a_settle():
    rib, sessions = LearnedRib(), {"10.0.0.2": Session("10.0.0.2", "mesh:n2", 64512)}
    feed(
        rib,
        sessions,
        opened("10.0.0.2", 30),
        state("10.0.0.2", "up"),
        update("10.0.0.2", {"ipv4 unicast": {"10.0.0.2": [{"nlri": "10.244.1.0/26"}, {"nlri": "10.244.9.0/26"}]}}),
    )
    feed(rib, sessions, state("10.0.0.2", "down", "connection reset"), now=5.0)
    assert sessions["10.0.0.2"].state == "down" and sessions["10.0.0.2"].since == 1005.0
    assert rib.expire(10.0) == 35.0 and set(rib.desired()) == {"10.244.1.0/26", "10.244.9.0/26"}
    feed(
        rib,
        sessions,
        state("10.0.0.2", "up"),
        update("10.0.0.2", {"ipv4 unicast": {"10.0.0.2": [{"nlri": "10.244.1.0/26"}]}}),
        now=12.0,
    )
    assert set(rib.desired()) == {"10.244.1.0/26", "10.244.9.0/26"}  # still waiting for End-of-RIB
    feed(rib, sessions, update("10.0.0.2", eor={"afi": "ipv4", "safi": "unicast"}), now=13.0)
    assert rib.expire(14.9) == 15.0 and set(rib.desired()) == {"10.244.1.0/26", "10.244.9.0/26"}
    assert rib.expire(15.0) is None and set(rib.desired()) == {"10.244.1.0/26"}


def test_stale_routes_go_when_the_restart_time_is_up():
    rib, sessions = LearnedRib(), {}
    feed(
        rib,
        sessions,
        opened("10.0.0.2", 4),
        update("10.0.0.2", {"ipv4 unicast": {"10.0.0.2": [{"nlri": "10.244.1.0/26"}]}}),
    )
    feed(rib, sessions, state("10.0.0.2", "down"), now=100.0)
    assert rib.expire(103.9) == 104.0 and rib.desired()
    assert rib.expire(104.0) is None and not rib.desired()


def test_without_graceful_restart_a_lost_session_drops_its_routes_at_once():
    rib, sessions = LearnedRib(), {}
    feed(
        rib,
        sessions,
        opened("10.0.0.2", 0),
        update("10.0.0.2", {"ipv4 unicast": {"10.0.0.2": [{"nlri": "10.244.1.0/26"}]}}),
        state("10.0.0.2", "down"),
    )
    assert not rib.desired()


def test_kernel_routes_from_a_previous_run_are_held_until_relearned_or_expired():
    rib = LearnedRib()
    rib.adopt({"10.244.1.0/26": frozenset({"10.0.0.2"}), "10.244.9.0/26": frozenset({"10.0.0.9"})}, now=0.0, hold=120)
    rib.announce("10.0.0.2", "10.244.1.0/26", "10.0.0.2")
    assert rib.stale_count() == 1 and rib.expire(60.0) == 120.0
    rib.expire(120.0)
    assert rib.desired() == {"10.244.1.0/26": {"10.0.0.2"}}
