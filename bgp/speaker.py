"""Supervision of ExaBGP: keep it running with the rendered configuration (restarting it with
backoff), and keep what it announces equal to the plan, every command acknowledged.

After a start nothing is assumed announced: everything is sent again. Peers added or removed
(a node joining or leaving the mesh) are a reload, which leaves every other session up; a
changed peer or changed settings are a restart, which graceful restart hides from forwarding.

A reload takes effect at a later turn of ExaBGP's loop, and ExaBGP 4.2 drops one that comes
before its first announcements have drained. So an added peer is asked for (`show neighbor`)
until ExaBGP has it, and only then given everything announced, alone; until then commands go to
the peers ExaBGP is known to have, which a command naming a peer it lacks would silently skip.
A reload not taken within RELOAD_GIVE_UP is sent again every RELOAD_RESEND, then given up for a
restart."""

import ipaddress
import logging
from typing import Protocol

from bgp import exabgp_config
from bgp.exabgp import CommandRefused, ExaBGPError
from bgp.messages import Session
from bgp.metrics import BgpMetrics
from bgp.plan import Plan

log = logging.getLogger(__name__)

BACKOFF_INITIAL, BACKOFF_MAX = 1.0, 30.0
HEALTHY_AFTER = 60.0  # a run this long resets the backoff
COMMAND_RETRY = 2.0
RELOAD_POLL, RELOAD_RESEND, RELOAD_GIVE_UP = 0.05, 2.0, 20.0


class SpeakerProcess(Protocol):
    def bridge_command(self) -> str: ...

    def running(self) -> bool: ...

    def start(self, config: str, env: dict[str, str]) -> None: ...

    def send(self, command: str) -> None: ...

    def query(self, command: str) -> list[str]: ...

    def reload(self, config: str) -> None: ...

    def stop(self) -> None: ...


class SpeakerControl:
    def __init__(
        self,
        process: SpeakerProcess,
        graceful_restart: int,
        hold_time: int,
        metrics: BgpMetrics,
        base_env: dict[str, str],
    ):
        self._process, self._metrics, self._base_env = process, metrics, base_env
        self._graceful_restart, self._hold_time = graceful_restart, hold_time
        self.config: str | None = None  # what the running ExaBGP was given
        self._env: dict[str, str] = {}
        self._blocks: dict[str, str] = {}  # each configured peer's neighbor block
        self.loaded: set[str] = set()  # peers the running ExaBGP is known to have
        self._awaited: set[str] = set()  # peers added by a reload ExaBGP may not have applied yet
        self._reload_sent = self._reload_first = self._poll_at = 0.0
        self.reloads = 0
        self.announced: dict[str, tuple[str, ...]] = {}  # acknowledged for every loaded peer
        self.sessions: dict[str, Session] = {}
        self.starts = 0
        self._started_at = 0.0
        self._backoff = 0.0
        self._next_start = 0.0
        self._retry_at = 0.0

    @property
    def running(self) -> bool:
        return self._process.running()

    def exited(self) -> bool:
        """ExaBGP was started and is gone (its API socket may not have said so yet)."""
        return self.config is not None and not self._process.running()

    def lost(self, now: float, replaced: bool = False) -> None:
        """ExaBGP ended (or is being replaced): start again, after the backoff unless replaced;
        its sessions are gone."""
        if self.config is None:
            return
        if replaced:
            log.info("BGP peers or settings changed: restarting ExaBGP (graceful restart keeps forwarding)")
            self._next_start = now
        else:
            log.warning("ExaBGP exited; starting it again in %.0fs", self._next_backoff(now))
        self._process.stop()
        self.config = None
        self.announced, self.loaded, self._awaited = {}, set(), set()
        for session in self.sessions.values():
            session.state = "down"

    def _next_backoff(self, now: float) -> float:
        healthy = now - self._started_at >= HEALTHY_AFTER
        self._backoff = BACKOFF_INITIAL if healthy or not self._backoff else min(BACKOFF_MAX, self._backoff * 2)
        self._next_start = now + self._backoff
        return self._backoff

    def next_deadline(self) -> float | None:
        waits = [t for t in (self._next_start if self.config is None else 0, self._retry_at) if t]
        if self._awaited:
            waits.append(self._poll_at)
        return min(waits, default=None)

    def _render(self, plan: Plan) -> str:
        return exabgp_config.render_config(
            plan.speaker, self._process.bridge_command(), self._graceful_restart, self._hold_time
        )

    def needs_restart(self, plan: Plan, now: float) -> bool:
        """The running ExaBGP cannot become the plan by a reload: its settings or one of its kept
        peers changed, or a reload was not taken within RELOAD_GIVE_UP."""
        if self.config is None:
            return False
        env = exabgp_config.environment(plan.speaker, self._base_env)
        blocks = self._neighbor_blocks(plan)
        changed = [a for a, block in blocks.items() if a in self._blocks and self._blocks[a] != block]
        overdue = bool(self._awaited) and now - self._reload_first >= RELOAD_GIVE_UP
        if overdue:
            log.warning("ExaBGP did not take a reload within %.0fs: restarting it", RELOAD_GIVE_UP)
        emptied = not blocks and bool(self._blocks)  # no session left to keep: a restart costs nothing
        return env != self._env or bool(changed) or overdue or emptied

    def reconcile(self, plan: Plan, now: float, wall: float) -> list[str]:
        """Bring ExaBGP to the plan; returns peers whose sessions were removed (forget their routes)."""
        config = self._render(plan)
        removed = self._sync_sessions(plan, wall)
        if self.config is None:
            if now < self._next_start:
                return removed
            env = exabgp_config.environment(plan.speaker, self._base_env)
            try:
                self._process.start(config, env)
            except (ExaBGPError, OSError) as exc:
                log.error("could not start ExaBGP: %s; retrying in %.0fs", exc, self._next_backoff(now))
                return removed
            if self.starts:
                self._metrics.exabgp_restarts.inc()
            self.starts += 1
            self._started_at = now
            self.config, self._env, self.announced = config, env, {}
            self._blocks = self._neighbor_blocks(plan)
            self.loaded = set(self._blocks)
        elif config != self.config:
            self._reload(plan, config, now)
        if self._awaited and now >= self._poll_at:
            self._take_awaited(now)
        if self.config is not None and now >= self._retry_at:
            self._announce(plan.announcements, sorted(self.loaded), now)
        if self.config is not None and not self._retry_at:
            self._end_of_rib(now)
        return removed

    def _neighbor_blocks(self, plan: Plan) -> dict[str, str]:
        return exabgp_config.neighbor_blocks(plan.speaker, self._graceful_restart, self._hold_time)

    def _reload(self, plan: Plan, config: str, now: float) -> None:
        """Peers were added or removed: ExaBGP re-reads its configuration, the others' sessions stay."""
        blocks = self._neighbor_blocks(plan)
        added = set(blocks) - set(self._blocks)
        gone = set(self._blocks) - set(blocks)
        try:
            self._process.reload(config)
        except ExaBGPError as exc:
            self._metrics.command_errors.inc()
            log.error("ExaBGP API: reload: %s", exc)
            self.lost(now)
            return
        log.info("BGP peers changed (%d added, %d removed): ExaBGP reloads its configuration", len(added), len(gone))
        self.reloads += 1
        self._metrics.exabgp_reloads.inc()
        self.config, self._blocks = config, blocks
        self.loaded -= gone
        self._awaited = (self._awaited - gone) | added
        if added and not self._reload_first:
            self._reload_first = now
        self._reload_sent = self._poll_at = now
        if not self._awaited:
            self._reload_first = 0.0

    def _take_awaited(self, now: float) -> None:
        """Give each added peer ExaBGP now has everything announced, alone; send the reload again
        while ExaBGP has not taken it."""
        try:
            for peer in sorted(self._awaited):
                if not self._has_peer(peer):
                    if now - self._reload_sent >= RELOAD_RESEND:
                        log.info("ExaBGP has not taken the reload yet (no peer %s): sending it again", peer)
                        assert self.config is not None
                        self._process.reload(self.config)
                        self._reload_sent = now
                    self._poll_at = now + RELOAD_POLL
                    return
                for command in exabgp_config.announce_commands(self.announced, [peer]):
                    self._process.send(command)
                self._awaited.discard(peer)
                self.loaded.add(peer)
        except ExaBGPError as exc:  # refused or unanswered: ExaBGP is not the one we think
            self._metrics.command_errors.inc()
            log.error("ExaBGP API: %s", exc)
            self.lost(now)
            return
        self._reload_first = 0.0

    def _has_peer(self, peer: str) -> bool:
        wanted = ipaddress.ip_address(peer)
        for line in self._process.query(f"show neighbor {peer} extensive"):
            words = line.split()
            if len(words) == 2 and words[0] == "Neighbor" and _same_address(words[1], wanted):
                return True
        return False

    def _sync_sessions(self, plan: Plan, wall: float) -> list[str]:
        wanted = {peer.address: peer for peer in plan.speaker.peers}
        removed = [address for address in self.sessions if address not in wanted]
        for address in removed:
            del self.sessions[address]
        for address, peer in wanted.items():
            session = self.sessions.get(address)
            if session is None:
                self.sessions[address] = Session(address, peer.name, peer.as_number, "idle", wall)
            else:
                session.name, session.as_number = peer.name, peer.as_number
        return removed

    def _announce(self, wanted: dict[str, tuple[str, ...]], peers: list[str], now: float) -> None:
        gone = [p for p in self.announced if p not in wanted]
        changed = {p: c for p, c in wanted.items() if self.announced.get(p) != c}
        if not self._send(exabgp_config.withdraw_commands(gone, peers), now):
            return
        for prefix in gone:
            del self.announced[prefix]
        if self._send(exabgp_config.announce_commands(changed, peers), now):
            self.announced.update(changed)
            self._retry_at = 0.0

    def _end_of_rib(self, now: float) -> None:
        """Tell each newly established peer that it has everything: a restarting ExaBGP would
        otherwise send End-of-RIB before calyx-bgp announced, and the peer would flush our
        routes it kept through graceful restart."""
        for session in self.sessions.values():
            if session.state == "up" and not session.eor_sent and session.peer in self.loaded:
                if not self._send([exabgp_config.end_of_rib_command(session.peer)], now):
                    return
                session.eor_sent = True

    def _send(self, commands: list[str], now: float) -> bool:
        """Send in order, each acknowledged; on a refusal retry later, on silence replace ExaBGP."""
        try:
            for command in commands:
                self._process.send(command)
            return True
        except CommandRefused as exc:
            self._metrics.command_errors.inc()
            log.error("%s; retrying in %.0fs", exc, COMMAND_RETRY)
            self._retry_at = now + COMMAND_RETRY
        except ExaBGPError as exc:
            self._metrics.command_errors.inc()
            log.error("ExaBGP API: %s", exc)
            self.lost(now)
        return False

    def sent(self, peer: str) -> int:
        """Prefixes of the peer's family announced, while its session is up."""
        session = self.sessions.get(peer)
        if session is None or session.state != "up" or peer not in self.loaded:
            return 0
        v6 = ":" in peer
        return sum(1 for prefix in self.announced if (":" in prefix) == v6)

    def stop(self) -> None:
        self._process.stop()


def _same_address(text: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    try:
        return ipaddress.ip_address(text) == address
    except ValueError:
        return False
