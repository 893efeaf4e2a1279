"""calyx-bgp's pipeline: etcd watch and ExaBGP messages -> state and learned RIB -> the plan
(pure) -> drivers: ExaBGP's configuration and announcements, and the kernel's routes.

It runs in the shared DaemonLoop (policy/runtime/loop.py): the etcd watch and ExaBGP's reader
thread only enqueue; the loop's thread owns all state, and no message can end it.
Nothing is announced or written to the kernel before the first complete list from etcd."""

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from bgp.config import BgpConfig
from bgp.messages import apply_message
from bgp.metrics import BgpMetrics
from bgp.plan import BgpState, BlockFacts, Plan, PlanError, compute_plan, secret_refs
from bgp.rib import LearnedRib
from bgp.routes import BgpKernel, LearnedRouteDriver
from bgp.secrets import read_secrets
from bgp.speaker import SpeakerControl
from policy.datastore.ipam import Block
from policy.datastore.keys import resources_root
from policy.datastore.kv import KV
from policy.datastore.watch import Backoff, Resyncing, SyncBatch, Syncer
from policy.model.bgp import BGPConfiguration, BGPPeer
from policy.model.pools import IPPool
from policy.model.resources import Node, WorkloadEndpoint
from policy.runtime.intake import Intake, Update
from policy.runtime.loop import DaemonLoop
from policy.runtime.status import StatusWriter, bgp_status_key

log = logging.getLogger(__name__)

TICK = 1.0
STATUS_INTERVAL = 1.0  # at most this often, and at least every STATUS_REFRESH
STATUS_REFRESH = 30.0
ROUTE_RETRY = 2.0


# What calyx-bgp plans from; a bad value keeps the last good version, so a typo in etcd neither
# ends a session nor withdraws a prefix.
INTAKE_KINDS = (Node, BGPConfiguration, BGPPeer, IPPool, WorkloadEndpoint, Block)
SPEAKER_GONE = object()  # the ExaBGP process ended


@dataclass(frozen=True)
class ExaBGPMessage:
    message: dict  # one decoded JSON line from ExaBGP's API


class BgpDaemon:
    def __init__(
        self,
        config: BgpConfig,
        kv: KV,
        kernel: BgpKernel,
        speaker: SpeakerControl,
        metrics: BgpMetrics,
        clock=time.monotonic,
        wall=time.time,
    ):
        self.config, self._kv, self.metrics = config, kv, metrics
        self._speaker, self._clock, self._wall = speaker, clock, wall
        self._routes = LearnedRouteDriver(kernel)
        self._rib = LearnedRib()
        self._state = BgpState()
        self._tables: dict[type, dict[str, Any]] = {  # kind -> name -> resource, as the plan reads them
            Node: self._state.nodes,
            BGPConfiguration: self._state.configurations,
            BGPPeer: self._state.peers,
            IPPool: self._state.pools,
        }
        self.loop = DaemonLoop(on_error=lambda stage: metrics.unexpected_errors.labels(stage).inc(), clock=clock)
        self._intake = Intake(config.etcd_prefix, INTAKE_KINDS, lambda kind: metrics.bad_resources.labels(kind).inc())
        self._complete = False
        self._datastore = "ok"  # or why the watch cannot deliver
        self.plan: Plan | None = None
        self.plan_error: str | None = None
        self._plan_problems: tuple[str, ...] = ()
        self._status = StatusWriter(kv, bgp_status_key(config.etcd_prefix, config.node_name))
        self._published_at = 0.0
        self._next_route_retry = 0.0
        self._next_refresh = 0.0

    # -- what other threads call ------------------------------------------------------------
    def on_batch(self, batch: SyncBatch) -> None:
        self.loop.put(batch)

    def _on_resync(self, reason: str) -> None:
        self.metrics.resyncs.labels(reason).inc()
        self.loop.put(Resyncing(reason))

    def on_exabgp_message(self, message: dict) -> None:
        self.loop.put(ExaBGPMessage(message))

    def on_exabgp_gone(self) -> None:
        self.loop.put(SPEAKER_GONE)

    def ready(self) -> tuple[bool, dict]:
        running = self._speaker.running
        body = {
            "inSync": self._complete,
            "exabgpRunning": running,
            "planError": self.plan_error,
            "datastore": self._datastore,
        }
        return self._complete and self.plan is not None and running and self._datastore == "ok", body

    # -- the loop ---------------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None) -> None:
        """Run until stop is set (or loop.stop() is called); ExaBGP is stopped on the way out."""
        if stop is not None:
            self.loop.stop_event = stop
        syncer = Syncer(
            self._kv,
            resources_root(self.config.etcd_prefix),
            self.on_batch,
            self.loop.stop_event,
            Backoff(maximum=self.config.etcd_backoff_max),
            on_resync=self._on_resync,
        )
        self.start()
        self.loop.start_worker("etcd-watch", syncer.run)
        try:
            self.loop.run(self)
        finally:
            self.loop.stop_event.set()
            self._speaker.stop()
            self.loop.join()

    def start(self) -> None:
        """Read the kernel once: routes a previous run installed are kept through graceful restart."""
        self._rib.adopt(self._routes.resync(), self._clock(), self.config.graceful_restart_time)
        self._next_refresh = self._clock() + self.config.route_refresh_interval

    def wait_time(self) -> float:
        now = self._clock()
        deadlines = [
            d for d in (self._speaker.next_deadline(), self._rib.expire(now), self._next_route_retry or None) if d
        ]
        return max(0.0, min([now + TICK, *deadlines]) - now)

    def handle(self, item: object) -> None:
        if isinstance(item, SyncBatch):
            for update in self._intake.updates(item.changes):
                self._apply(update)
            self._complete = self._complete or item.complete
            if item.complete:
                self._datastore = "ok"
        elif isinstance(item, Resyncing):
            self._datastore = f"re-listing after {item.reason}"
        elif isinstance(item, ExaBGPMessage):
            apply_message(item.message, self._rib, self._speaker.sessions, self._clock(), self._wall())
        elif item is SPEAKER_GONE:
            self._speaker_lost()

    def reconcile(self) -> None:
        if self._complete:
            self._reconcile()

    def _speaker_lost(self, replaced: bool = False) -> None:
        """Every session ends with ExaBGP: peers that offered graceful restart keep their routes."""
        for peer in list(self._speaker.sessions):
            self._rib.session_down(peer, self._clock())
        self._speaker.lost(self._clock(), replaced)

    def _apply(self, update: Update) -> None:
        kind, value = update.kind, update.value
        if kind is Block:
            if value is None:
                self._state.blocks.pop(update.key, None)
            else:
                self._state.blocks[update.key] = BlockFacts(value.cidr, value.pool, value.affinity)
        elif kind is WorkloadEndpoint:
            if value is not None and value.spec.node == self.config.node_name:
                self._state.local_addresses[update.key] = frozenset(value.spec.ipNetworks)
            else:
                self._state.local_addresses.pop(update.key, None)
        elif value is None:
            self._tables[kind].pop(update.name, None)
        else:
            self._tables[kind][update.name] = value

    # -- reconcile --------------------------------------------------------------------------
    def _reconcile(self) -> None:
        now = self._clock()
        secrets, unreadable = read_secrets(self.config.secrets_dir, secret_refs(self._state))
        try:
            plan = compute_plan(self._state, self.config.node_name, secrets)
        except PlanError as exc:
            if self.plan_error != str(exc):
                log.error("cannot speak BGP: %s", exc)
            self.plan_error = str(exc)
            self._publish(now)
            return
        self.plan, self.plan_error = plan, None
        if plan.problems != self._plan_problems:
            for problem in plan.problems:
                log.error("%s", problem)
            for (name, key), why in unreadable.items():
                log.error("password secret %s/%s: %s", name, key, why)
            self._plan_problems = plan.problems
        if self._speaker.exited() or self._speaker.needs_restart(plan, now):
            self._speaker_lost(replaced=not self._speaker.exited())
        for peer in self._speaker.reconcile(plan, now, self._wall()):
            self._rib.forget(peer)
        self._rib.expire(now)
        if now >= self._next_refresh:
            self._routes.resync()
            self._next_refresh = now + self.config.route_refresh_interval
        result = self._routes.apply(self._learned(plan), plan.blackholes)
        if result.errors:
            self.metrics.route_errors.inc(len(result.errors))
        self._next_route_retry = now if result.more else now + ROUTE_RETRY if self._routes.failed else 0.0
        self._publish(now)

    def _learned(self, plan: Plan) -> dict[str, frozenset[str]]:
        """The RIB's routes, minus our own prefixes and next hops that are ourselves."""
        own_addresses = set(plan.speaker.addresses)
        learned = {}
        for prefix, hops in self._rib.desired().items():
            if prefix in plan.announcements or prefix in plan.blackholes:
                continue
            hops = hops - own_addresses
            if hops:
                learned[prefix] = hops
        return learned

    # -- status -----------------------------------------------------------------------------
    def _publish(self, now: float) -> None:
        """At most once a second (building it counts every prefix), and only when it changed or
        every STATUS_REFRESH seconds, so `policyctl node status` can tell a dead daemon."""
        if now - self._published_at < STATUS_INTERVAL:
            return
        plan, speaker, rib = self.plan, self._speaker, self._rib
        sessions = [
            {
                "peer": s.peer,
                "name": s.name,
                "asNumber": s.as_number,
                "state": s.state,
                "since": s.since,
                "received": rib.received(s.peer),
                "sent": speaker.sent(s.peer),
            }
            for s in sorted(speaker.sessions.values(), key=lambda s: s.peer)
        ]
        status = {
            "node": self.config.node_name,
            "asNumber": plan.speaker.as_number if plan else None,
            "routerID": plan.speaker.router_id if plan else None,
            "error": self.plan_error,
            "problems": list(self.plan.problems) if self.plan else [],
            "exabgp": {"running": speaker.running, "restarts": max(0, speaker.starts - 1), "reloads": speaker.reloads},
            "announced": len(speaker.announced),
            "installed": len(self._routes.learned),
            "sessions": sessions,
        }
        self._update_metrics(status)
        if not self._status.due(status) and now - self._published_at < STATUS_REFRESH:
            return
        value = json.dumps(dict(status, updated=self._wall()), sort_keys=True).encode()
        if self._status.write(status, value):
            self._published_at = now

    def _update_metrics(self, status: dict) -> None:
        m = self.metrics
        m.session_up.clear()
        m.prefixes_received.clear()
        for s in status["sessions"]:
            m.session_up.labels(s["peer"], s["name"]).set(1 if s["state"] == "up" else 0)
            m.prefixes_received.labels(s["peer"]).set(s["received"])
        m.prefixes_announced.set(status["announced"])
        m.routes_installed.set(status["installed"])
        m.stale_routes.set(self._rib.stale_count())
        m.blackholes.set(len(self._routes.blackholes))
        m.exabgp_running.set(1 if status["exabgp"]["running"] else 0)
