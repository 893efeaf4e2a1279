"""calyx-bgp's pipeline: etcd watch and ExaBGP messages -> state and learned RIB -> the plan
(pure) -> drivers: ExaBGP's configuration and announcements, and the kernel's routes.

One thread (run) owns all state; the etcd watch and ExaBGP's reader thread only enqueue.
Nothing is announced or written to the kernel before the first complete list from etcd."""

import ipaddress
import json
import logging
import queue
import threading
import time

from bgp.config import BgpConfig
from bgp.messages import apply_message
from bgp.metrics import BgpMetrics
from bgp.plan import BgpState, BlockFacts, Plan, PlanError, compute_plan
from bgp.rib import LearnedRib
from bgp.routes import BgpKernel, RouteDriver
from bgp.speaker import SpeakerControl
from policy.model.bgp import BGPConfiguration, BGPPeer
from policy.model.documents import DocumentError
from policy.datastore.keys import parse_key
from policy.datastore.kv import KV
from policy.runtime.status import StatusWriter, bgp_status_key
from policy.model.pools import IPPool
from policy.model.resources import Node, WorkloadEndpoint
from policy.datastore.store import decode
from policy.datastore.watch import Backoff, SyncBatch, Syncer

log = logging.getLogger(__name__)

TICK = 1.0
STATUS_INTERVAL = 1.0  # at most this often, and at least every STATUS_REFRESH
STATUS_REFRESH = 30.0
ROUTE_RETRY = 2.0


class BgpDaemon:
    def __init__(self, config: BgpConfig, kv: KV, kernel: BgpKernel, speaker: SpeakerControl, metrics: BgpMetrics,
                 clock=time.monotonic, wall=time.time):
        self.config, self._kv, self.metrics = config, kv, metrics
        self._speaker, self._clock, self._wall = speaker, clock, wall
        self._routes = RouteDriver(kernel)
        self._rib = LearnedRib()
        self._state = BgpState()
        self._tables = {Node: self._state.nodes, BGPConfiguration: self._state.configurations,
                        BGPPeer: self._state.peers, IPPool: self._state.pools}
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._prefix = f"{config.etcd_prefix.rstrip('/')}/v1/"
        self._blocks_prefix = f"{self._prefix}ipam/blocks/"
        self._complete = False
        self.plan: Plan | None = None
        self.plan_error: str | None = None
        self.last_tick = clock()
        self._status = StatusWriter(kv, bgp_status_key(config.etcd_prefix, config.node_name))
        self._published_at = 0.0
        self._next_route_retry = 0.0
        self._next_refresh = 0.0

    # -- what other threads call ------------------------------------------------------------
    def on_batch(self, batch: SyncBatch) -> None:
        self._queue.put(("batch", batch))

    def on_exabgp_message(self, message: dict) -> None:
        self._queue.put(("message", message))

    def on_exabgp_gone(self) -> None:
        self._queue.put(("gone", None))

    def ready(self) -> tuple[bool, dict]:
        running = self._speaker.running
        body = {"inSync": self._complete, "exabgpRunning": running, "planError": self.plan_error}
        return self._complete and self.plan is not None and running, body

    # -- the loop ---------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        syncer = Syncer(self._kv, self._prefix, self.on_batch, stop,
                        Backoff(maximum=self.config.etcd_backoff_max),
                        on_resync=lambda reason: self.metrics.resyncs.labels(reason).inc())
        self.start()
        watcher = threading.Thread(target=syncer.run, name="etcd-watch", daemon=True)
        watcher.start()
        try:
            while not stop.is_set():
                self.step(self._wait_time())
        finally:
            self._speaker.stop()
            watcher.join(timeout=5)

    def start(self) -> None:
        """Read the kernel once: routes a previous run installed are kept through graceful restart."""
        self._rib.adopt(self._routes.resync(), self._clock(), self.config.graceful_restart_time)
        self._next_refresh = self._clock() + self.config.route_refresh_interval

    def _wait_time(self) -> float:
        now = self._clock()
        deadlines = [d for d in (self._speaker.next_deadline(), self._rib.expire(now),
                                 self._next_route_retry or None) if d]
        return max(0.0, min([now + TICK, *deadlines]) - now)

    def step(self, timeout: float) -> None:
        """Take what is queued (waiting up to timeout for the first item), then reconcile."""
        self.last_tick = self._clock()
        try:
            item = self._queue.get(timeout=timeout)
            while True:
                self._take(*item)
                item = self._queue.get_nowait()
        except queue.Empty:
            pass
        if self._complete:
            self._reconcile()

    def _take(self, kind: str, payload) -> None:
        if kind == "batch":
            for change in payload.changes:
                self._apply_change(change.key, change.value, change.mod_revision)
            self._complete = self._complete or payload.complete
        elif kind == "message":
            apply_message(payload, self._rib, self._speaker.sessions, self._clock(), self._wall())
        elif kind == "gone":
            self._speaker_lost()

    def _speaker_lost(self, replaced: bool = False) -> None:
        """Every session ends with ExaBGP: peers that offered graceful restart keep their routes."""
        for peer in list(self._speaker.sessions):
            self._rib.session_down(peer, self._clock())
        self._speaker.lost(self._clock(), replaced)

    def _apply_change(self, key: str, value: bytes | None, revision: int) -> None:
        if key.startswith(self._blocks_prefix):
            self._apply_block(key, value)
            return
        try:
            model, namespace, name = parse_key(self.config.etcd_prefix, key)
        except ValueError:
            return  # status and other keys that are not resources
        tables = self._tables
        if model not in tables and model is not WorkloadEndpoint:
            return
        resource = None
        if value is not None:
            try:
                resource = decode(self.config.etcd_prefix, key, value, revision)
            except DocumentError as exc:
                self.metrics.bad_resources.labels(model.__name__).inc()
                log.warning("skipping bad %s in etcd (the last good one stays): %s", model.__name__, exc)
                return
        if model is WorkloadEndpoint:
            local = resource is not None and resource.spec.node == self.config.node_name
            if local:
                self._state.local_addresses[key] = frozenset(resource.spec.ipNetworks)
            else:
                self._state.local_addresses.pop(key, None)
        elif resource is None:
            tables[model].pop(name, None)
        else:
            tables[model][name] = resource

    def _apply_block(self, key: str, value: bytes | None) -> None:
        if value is None:
            self._state.blocks.pop(key, None)
            return
        try:
            data = json.loads(value)
            ipaddress.ip_network(data["cidr"])
            self._state.blocks[key] = BlockFacts(data["cidr"], data["pool"], data.get("affinity"))
        except (ValueError, KeyError, TypeError) as exc:
            self.metrics.bad_resources.labels("IPAMBlock").inc()
            log.warning("skipping bad IPAM block %s: %s", key, exc)

    # -- reconcile --------------------------------------------------------------------------
    def _reconcile(self) -> None:
        now = self._clock()
        try:
            plan = compute_plan(self._state, self.config.node_name)
        except PlanError as exc:
            if self.plan_error != str(exc):
                log.error("cannot speak BGP: %s", exc)
            self.plan_error = str(exc)
            self._publish(now)
            return
        self.plan, self.plan_error = plan, None
        if self._speaker.exited() or self._speaker.outdated(plan):
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
        sessions = [{"peer": s.peer, "name": s.name, "asNumber": s.as_number, "state": s.state, "since": s.since,
                     "received": rib.received(s.peer), "sent": speaker.sent(s.peer)}
                    for s in sorted(speaker.sessions.values(), key=lambda s: s.peer)]
        status = {"node": self.config.node_name, "asNumber": plan.speaker.as_number if plan else None,
                  "routerID": plan.speaker.router_id if plan else None, "error": self.plan_error,
                  "exabgp": {"running": speaker.running, "restarts": max(0, speaker.starts - 1)},
                  "announced": len(speaker.announced), "installed": len(self._routes.learned), "sessions": sessions}
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
