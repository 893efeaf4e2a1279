"""Supervision of ExaBGP: keep it running with the rendered configuration (restarting it with
backoff), and keep what it announces equal to the plan, every command acknowledged.

After a start nothing is assumed announced: everything is sent again."""

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


class SpeakerProcess(Protocol):
    def bridge_command(self) -> str: ...

    def running(self) -> bool: ...

    def start(self, config: str, env: dict[str, str]) -> None: ...

    def send(self, command: str) -> None: ...

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
        self.announced: dict[str, tuple[str, ...]] = {}  # acknowledged by the running ExaBGP
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
        self.announced = {}
        for session in self.sessions.values():
            session.state = "down"

    def _next_backoff(self, now: float) -> float:
        healthy = now - self._started_at >= HEALTHY_AFTER
        self._backoff = BACKOFF_INITIAL if healthy or not self._backoff else min(BACKOFF_MAX, self._backoff * 2)
        self._next_start = now + self._backoff
        return self._backoff

    def next_deadline(self) -> float | None:
        waits = [t for t in (self._next_start if self.config is None else 0, self._retry_at) if t]
        return min(waits, default=None)

    def _render(self, plan: Plan) -> str:
        return exabgp_config.render_config(
            plan.speaker, self._process.bridge_command(), self._graceful_restart, self._hold_time
        )

    def outdated(self, plan: Plan) -> bool:
        """The running ExaBGP has other peers or settings than the plan: it must be replaced.

        Not reloaded: ExaBGP 4.2 applies a reload at some later turn of its loop, so commands
        sent meanwhile reach the old set of neighbors and are lost for the new ones."""
        return self.config is not None and self._render(plan) != self.config

    def reconcile(self, plan: Plan, now: float, wall: float) -> list[str]:
        """Bring ExaBGP to the plan; returns peers whose sessions were removed (forget their routes)."""
        config = self._render(plan)
        removed = self._sync_sessions(plan, wall)
        if self.config is None:
            if now < self._next_start:
                return removed
            try:
                self._process.start(config, exabgp_config.environment(plan.speaker, self._base_env))
            except (ExaBGPError, OSError) as exc:
                log.error("could not start ExaBGP: %s; retrying in %.0fs", exc, self._next_backoff(now))
                return removed
            if self.starts:
                self._metrics.exabgp_restarts.inc()
            self.starts += 1
            self._started_at = now
            self.config, self.announced = config, {}
        if now >= self._retry_at:
            self._announce(plan.announcements, [p.address for p in plan.speaker.peers], now)
        if self.config is not None and not self._retry_at:
            self._end_of_rib(now)
        return removed

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
            if session.state == "up" and not session.eor_sent:
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
        if session is None or session.state != "up":
            return 0
        v6 = ":" in peer
        return sum(1 for prefix in self.announced if (":" in prefix) == v6)

    def stop(self) -> None:
        self._process.stop()
