"""ExaBGP's configuration and commands as rendered, and its supervision: start, reload on a
peer change, acknowledged announcements sent as differences, restart with backoff."""

from dataclasses import replace

import pytest

from bgp.exabgp_config import announce_commands, environment, render_config, withdraw_commands
from bgp.metrics import BgpMetrics
from bgp.plan import Peer, Plan, Speaker
from bgp.speaker import RELOAD_GIVE_UP, RELOAD_POLL, RELOAD_RESEND, SpeakerControl
from tests.fakes import FakeSpeakerProcess

PEERS = (
    Peer("10.0.0.2", 64512, "mesh:n2", False, "10.0.0.1"),
    Peer("10.0.0.9", 65001, "tor", True, None, "pw"),
    Peer("fd00::2", 64512, "mesh:n2", False, "fd00::1"),
)
SPEAKER = Speaker("10.0.0.1", 64512, 179, ("10.0.0.1", "fd00::1"), PEERS)


def plan(announcements, peers=PEERS) -> Plan:
    return Plan(Speaker("10.0.0.1", 64512, 179, ("10.0.0.1", "fd00::1"), peers), announcements, frozenset())


def test_config_has_one_neighbor_per_peer_with_graceful_restart_and_our_api_process():
    text = render_config(SPEAKER, "/bin/bridge /run/api.sock", graceful_restart=120, hold_time=90)
    assert "run /bin/bridge /run/api.sock;" in text and text.count("neighbor ") == 3
    tor = text[text.index("neighbor 10.0.0.9") : text.index("neighbor fd00::2")]
    assert "peer-as 65001;" in tor and "passive true;" in tor and 'md5-password "pw";' in tor
    assert "local-address" not in tor and "graceful-restart 120;" in tor and "family { ipv4 unicast; }" in tor
    assert "family { ipv6 unicast; }" in text[text.index("neighbor fd00::2") :]
    env = environment(SPEAKER, {"PATH": "/bin"})
    assert env["exabgp.tcp.bind"] == "10.0.0.1 fd00::1" and env["exabgp.api.ack"] == "true" and env["PATH"] == "/bin"


def test_commands_group_by_family_and_communities_and_go_to_peers_of_that_family():
    peers = ["10.0.0.2", "10.0.0.9", "fd00::2"]
    commands = announce_commands(
        {"10.1.0.0/26": (), "10.1.0.64/26": (), "10.2.0.0/26": ("65000:1",), "fd00:1::/122": ("1:2:3",)}, peers
    )
    assert commands == [
        "neighbor 10.0.0.2 , neighbor 10.0.0.9 announce attributes next-hop self nlri 10.1.0.0/26 10.1.0.64/26",
        "neighbor 10.0.0.2 , neighbor 10.0.0.9 announce attributes next-hop self community [ 65000:1 ] nlri 10.2.0.0/26",
        "neighbor fd00::2 announce attributes next-hop self large-community [ 1:2:3 ] nlri fd00:1::/122",
    ]
    assert withdraw_commands(["fd00:1::/122"], ["10.0.0.2"]) == []  # no IPv6 peer: nothing to say
    many = announce_commands({f"10.{i // 256}.{i % 256}.0/24": () for i in range(4500)}, peers)
    assert len(many) == 3 and sum(c.count("/24") for c in many) == 4500


def test_announcements_are_sent_as_differences_and_everything_again_after_a_restart():
    process = FakeSpeakerProcess()
    control = SpeakerControl(process, 120, 90, BgpMetrics(), {})
    control.reconcile(plan({"10.1.0.0/26": ()}), now=0, wall=0)
    assert process.alive and len(process.configs) == 1 and len(process.commands) == 1
    control.reconcile(plan({"10.1.0.0/26": (), "10.1.0.70/32": ()}), now=1, wall=1)
    assert process.commands[-1].endswith("nlri 10.1.0.70/32")
    control.reconcile(plan({"10.1.0.70/32": ()}), now=2, wall=2)
    assert process.commands[-1].endswith("withdraw attributes next-hop self nlri 10.1.0.0/26")
    sent = len(process.commands)
    control.reconcile(plan({"10.1.0.70/32": ()}), now=3, wall=3)
    assert len(process.commands) == sent  # nothing changed, nothing said
    changed = plan({"10.1.0.70/32": ()}, peers=(replace(PEERS[0], as_number=64999),))
    assert control.needs_restart(changed, now=4)  # a kept peer changed: only a restart applies it
    control.lost(now=4, replaced=True)  # replaced at once, without backoff
    control.reconcile(changed, now=4, wall=4)
    assert control.starts == 2 and len(process.configs) == 2 and not control.needs_restart(changed, now=4)
    assert process.commands[-1] == "neighbor 10.0.0.2 announce attributes next-hop self nlri 10.1.0.70/32"
    assert set(control.sessions) == {"10.0.0.2"}
    assert control.needs_restart(changed, now=5) is False
    louder = SpeakerControl(process, 120, 90, BgpMetrics(), {"exabgp.log.level": "DEBUG"})
    louder.reconcile(changed, now=6, wall=6)
    assert louder.needs_restart(replace(changed, speaker=replace(changed.speaker, log_severity="Debug")), now=7)


def test_an_added_peer_is_a_reload_and_gets_everything_alone_once_exabgp_has_it():
    process, metrics = FakeSpeakerProcess(), BgpMetrics()
    control = SpeakerControl(process, 120, 90, metrics, {})
    announced = {"10.1.0.0/26": ()}
    control.reconcile(plan(announced, peers=PEERS[:1]), now=0, wall=0)
    control.sessions["10.0.0.2"].state = "up"
    control.reconcile(plan(announced, peers=PEERS[:1]), now=1, wall=1)
    grown = plan({"10.1.0.0/26": (), "10.1.0.64/26": ()}, peers=PEERS[:2])
    assert not control.needs_restart(grown, now=2)
    process.drop_reloads = True  # ExaBGP has not taken it yet when the next change comes
    control.reconcile(grown, now=2, wall=2)
    assert control.starts == 1 and len(process.reloads) == 1 and "neighbor 10.0.0.9" in process.reloads[0]
    assert process.commands[-1] == "neighbor 10.0.0.2 announce attributes next-hop self nlri 10.1.0.64/26"
    assert control.sent("10.0.0.9") == 0 and control.next_deadline() == pytest.approx(2 + RELOAD_POLL)
    control.sessions["10.0.0.9"].state = "up"  # even up, it gets no End-of-RIB before its routes
    control.reconcile(grown, now=3, wall=3)
    assert not any("10.0.0.9" in c for c in process.commands)
    control.reconcile(grown, now=2 + RELOAD_RESEND, wall=4)
    assert len(process.reloads) == 2  # not taken: sent again
    process.drop_reloads = False
    control.reconcile(grown, now=2 + 2 * RELOAD_RESEND, wall=6)
    assert len(process.reloads) == 3 and not any("10.0.0.9" in c for c in process.commands)
    control.reconcile(grown, now=2 + 2 * RELOAD_RESEND + RELOAD_POLL, wall=6)
    assert process.commands[-2:] == [
        "neighbor 10.0.0.9 announce attributes next-hop self nlri 10.1.0.0/26 10.1.0.64/26",
        "neighbor 10.0.0.9 announce eor ipv4 unicast",
    ]
    assert control.loaded == {"10.0.0.2", "10.0.0.9"} and control.next_deadline() is None
    control.reconcile(plan({"10.1.0.0/26": ()}, peers=PEERS[:2]), now=7, wall=7)
    assert (
        process.commands[-1]
        == "neighbor 10.0.0.2 , neighbor 10.0.0.9 withdraw attributes next-hop self nlri 10.1.0.64/26"
    )
    assert control.starts == 1 and metrics.exabgp_reloads._value.get() == 1 and control.reloads == 1


def test_a_removed_peer_is_a_reload_and_commands_stop_naming_it():
    process = FakeSpeakerProcess()
    control = SpeakerControl(process, 120, 90, BgpMetrics(), {})
    control.reconcile(plan({"10.1.0.0/26": ()}, peers=PEERS[:2]), now=0, wall=0)
    removed = control.reconcile(plan({"10.1.0.0/26": (), "10.1.0.64/26": ()}, peers=PEERS[:1]), now=1, wall=1)
    assert removed == ["10.0.0.9"] and control.starts == 1 and len(process.reloads) == 1
    assert process.commands[-1] == "neighbor 10.0.0.2 announce attributes next-hop self nlri 10.1.0.64/26"
    assert control.next_deadline() is None  # nothing to wait for
    assert control.needs_restart(plan({}, peers=()), now=2)  # no neighbor at all: not a reload


def test_a_reload_exabgp_never_takes_is_given_up_for_a_restart():
    process = FakeSpeakerProcess()
    control = SpeakerControl(process, 120, 90, BgpMetrics(), {})
    control.reconcile(plan({}, peers=PEERS[:1]), now=0, wall=0)
    process.drop_reloads = True
    grown = plan({}, peers=PEERS[:2])
    control.reconcile(grown, now=1, wall=1)
    assert not control.needs_restart(grown, now=1 + RELOAD_GIVE_UP - 0.1)
    assert control.needs_restart(grown, now=1 + RELOAD_GIVE_UP)
    control.lost(now=21, replaced=True)
    control.reconcile(grown, now=21, wall=21)
    assert control.starts == 2 and control.loaded == {"10.0.0.2", "10.0.0.9"}


def test_a_refused_command_is_retried_and_a_dead_exabgp_restarts_with_backoff():
    process, metrics = FakeSpeakerProcess(), BgpMetrics()
    control = SpeakerControl(process, 120, 90, metrics, {})
    process.refuse = "10.1.0.0/26"
    control.reconcile(plan({"10.1.0.0/26": ()}), now=0, wall=0)
    assert control.announced == {} and control.next_deadline() == 2.0
    process.refuse = None
    control.reconcile(plan({"10.1.0.0/26": ()}), now=2, wall=2)
    assert control.announced == {"10.1.0.0/26": ()}
    process.alive = False
    assert control.exited()
    control.lost(now=3)
    control.reconcile(plan({"10.1.0.0/26": ()}), now=3.5, wall=3.5)
    assert not process.alive  # still in backoff
    control.reconcile(plan({"10.1.0.0/26": ()}), now=4, wall=4)
    assert process.alive and control.starts == 2 and process.commands[-1].endswith("nlri 10.1.0.0/26")
    assert metrics.exabgp_restarts._value.get() == 1 and metrics.command_errors._value.get() == 1


def test_end_of_rib_follows_the_announcements_once_per_established_session():
    process = FakeSpeakerProcess()
    control = SpeakerControl(process, 120, 90, BgpMetrics(), {})
    control.reconcile(plan({"10.1.0.0/26": ()}), now=0, wall=0)
    assert not any("eor" in c for c in process.commands)  # no session is up yet
    control.sessions["10.0.0.2"].state = "up"
    control.reconcile(plan({"10.1.0.0/26": (), "10.1.0.64/26": ()}), now=1, wall=1)
    assert process.commands[-2].endswith("nlri 10.1.0.64/26")
    assert process.commands[-1] == "neighbor 10.0.0.2 announce eor ipv4 unicast"
    control.reconcile(plan({"10.1.0.0/26": (), "10.1.0.64/26": ()}), now=2, wall=2)
    assert sum("eor" in c for c in process.commands) == 1
