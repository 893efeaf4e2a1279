"""The agent's one-way pipeline: etcd watch and link events -> route index and policy compiler ->
the nftables driver, then the route driver (policy first, so a new route never carries traffic
its policy has not seen).

It runs in the shared DaemonLoop (policy/runtime/loop.py): the watch and link threads only
enqueue; the loop's thread owns all state. Nothing is written to the kernel before the first
complete list; after it, strays of ours are swept."""

import contextlib
import logging
import threading
import time
from dataclasses import dataclass

from felix.bulk import bulk_work
from felix.calc import RouteIndex, endpoint_routes
from felix.config import AgentConfig
from felix.health import Status
from felix.kernel import Kernel
from felix.metrics import AgentMetrics
from felix.nft import Nft, NftError
from felix.policy_driver import PolicyDriver
from felix.routes import WorkloadRouteDriver
from policy.compiler.compiler import PolicyCompiler
from policy.datastore.keys import resources_root
from policy.datastore.kv import KV
from policy.datastore.watch import Backoff, SyncBatch, Syncer
from policy.model.policies import GlobalNetworkPolicy, GlobalNetworkSet, NetworkPolicy, NetworkSet, Profile, Tier
from policy.model.resources import Namespace, WorkloadEndpoint
from policy.runtime.intake import BadData, Intake, Update
from policy.runtime.loop import RETRY_INTERVAL, DaemonLoop
from policy.runtime.status import StatusWriter, policy_status_key

log = logging.getLogger(__name__)

LINK_SUBSCRIBE_TIMEOUT = 10.0
_LINKS_LOST = object()  # the link subscription ended: re-read every interface


@dataclass(frozen=True)
class LinkEvent:
    name: str
    ifindex: int | None  # None: the interface is gone


# A bad WorkloadEndpoint carries nothing; a bad policy, set, namespace, tier or profile keeps
# its last good version (dropping it would open traffic).
INTAKE_RULES: dict[type, BadData] = {
    WorkloadEndpoint: BadData.ABSENT,
    NetworkPolicy: BadData.KEEP_LAST,
    GlobalNetworkPolicy: BadData.KEEP_LAST,
    NetworkSet: BadData.KEEP_LAST,
    GlobalNetworkSet: BadData.KEEP_LAST,
    Namespace: BadData.KEEP_LAST,
    Tier: BadData.KEEP_LAST,
    Profile: BadData.KEEP_LAST,
}


class Agent:
    def __init__(self, config: AgentConfig, kv: KV, kernel: Kernel, nft: Nft, metrics: AgentMetrics | None = None):
        self.config, self._kv, self._kernel = config, kv, kernel
        self.metrics = metrics or AgentMetrics()
        self.status = Status()
        self.loop = DaemonLoop(on_error=lambda stage: self.metrics.unexpected_errors.labels(stage).inc())
        self._intake = Intake(
            config.etcd_prefix, INTAKE_RULES, lambda kind: self.metrics.bad_resources.labels(kind).inc()
        )
        self._index = RouteIndex()
        self._driver = WorkloadRouteDriver(kernel)
        self._compiler = PolicyCompiler(config.node_name)
        self._policy_driver = PolicyDriver(nft)
        self._policy_status = StatusWriter(kv, policy_status_key(config.etcd_prefix, config.node_name))
        self._policy_pending = False
        self._changed_policies: set[str] = set()  # since the last successful nftables transaction
        self._revision = 0
        self._consistent = False  # the held state equals etcd's at self._revision
        self._complete = False  # a first full list has arrived
        self._links_lost = False
        self._next_refresh = self._next_retry = float("inf")

    def run(self, stop: threading.Event | None = None) -> None:
        """Run until stop is set (or loop.stop() is called): the workers enqueue, this thread programs."""
        if stop is not None:
            self.loop.stop_event = stop
        stop = self.loop.stop_event
        syncer = Syncer(
            self._kv,
            resources_root(self.config.etcd_prefix),
            self.loop.put,
            stop,
            Backoff(maximum=self.config.etcd_backoff_max),
            on_resync=lambda reason: self.metrics.resyncs.labels(reason).inc(),
        )
        subscribed = threading.Event()
        self.loop.start_worker("link-watch", self._kernel.watch_links, self._on_link, stop, subscribed)
        if not subscribed.wait(LINK_SUBSCRIBE_TIMEOUT):
            raise RuntimeError("could not subscribe to link events")
        self.loop.start_worker("etcd-watch", syncer.run)
        try:
            self.loop.run(self)
        finally:
            stop.set()
            self.loop.join()

    def _on_link(self, name: str | None, ifindex: int | None) -> None:
        log.debug("link event: %s -> %s", name, ifindex)
        self.loop.put(_LINKS_LOST if name is None else LinkEvent(name, ifindex))

    # -- what the loop calls ----------------------------------------------------------------
    def wait_time(self) -> float:
        return max(0.0, min(self._next_refresh, self._next_retry) - time.monotonic())

    def handle(self, item: object) -> None:
        if item is _LINKS_LOST:
            self._links_lost = True
        elif isinstance(item, SyncBatch):
            with bulk_work() if not self.status.in_sync else contextlib.nullcontext():
                self._apply_batch(item)  # the first sync builds the whole state at once
        elif isinstance(item, LinkEvent):
            self._driver.link_changed(item.name, item.ifindex)

    def reconcile(self) -> None:
        if not self._complete:
            return  # nothing is written to the kernel before the first complete list
        first = not self.status.in_sync
        if first or self._links_lost or time.monotonic() >= self._next_refresh:
            with bulk_work() if first else contextlib.nullcontext():
                self._start_resync()
            self._links_lost = False
            self._next_refresh = time.monotonic() + self.config.route_refresh_interval
        now = time.monotonic()
        if self._pending and (now >= self._next_retry or self._next_retry == float("inf")):
            self._program()
            self._next_retry = now + RETRY_INTERVAL if self._pending else float("inf")
        self._report()

    def _apply_batch(self, batch: SyncBatch) -> None:
        for update in self._intake.updates(batch.changes):
            self._dispatch(update)
        self._revision = batch.revision
        self._consistent = batch.complete
        self._complete = self._complete or batch.complete

    def _dispatch(self, update: Update) -> None:
        kind, key, resource = update.kind, update.key, update.value
        if kind is WorkloadEndpoint:
            routes = endpoint_routes(resource, self.config.node_name) if resource else None
            for interface in self._index.update(key, routes):
                self._driver.set_desired(interface, self._index.desired(interface))
            self._compiler.set_endpoint(key, resource)
        elif kind in (NetworkPolicy, GlobalNetworkPolicy):
            self._compiler.set_policy(key, resource)
            self._changed_policies.add(key)
        elif kind in (NetworkSet, GlobalNetworkSet):
            self._compiler.set_network_set(key, resource)
        elif kind is Namespace:
            self._compiler.set_namespace(update.name, resource)
        elif kind is Tier:
            self._compiler.set_tier(update.name, resource)
        elif kind is Profile:
            self._compiler.set_profile(update.name, resource)
        self._policy_pending = True  # remote endpoints matter too: they are members of selector sets

    def _start_resync(self) -> None:
        first = not self.status.in_sync
        if first:
            log.info(
                "in sync with etcd at revision %d: %d local endpoints; programming", self._revision, len(self._index)
            )
            self._kernel.enable_forwarding()
        started = time.perf_counter()
        self._driver.resync()
        read = time.perf_counter()
        self._program()
        log.log(
            logging.INFO if first else logging.DEBUG,
            "kernel read back in %.2fs, %d routes programmed in %.2fs",
            read - started,
            self._driver.route_count,
            time.perf_counter() - read,
        )
        if first:
            self.status.in_sync = True
            self.metrics.in_sync.set(1)

    @property
    def _pending(self) -> bool:
        return self._driver.pending or self._policy_pending

    def _program(self) -> None:
        if self._policy_pending:
            self._program_policy()
        failed = dict(self._compiler.errors) or None  # no key at all when every policy compiles
        if self._policy_status.due(failed):
            self._policy_status.write(failed)
        started = time.perf_counter()
        try:
            result = self._driver.apply()
        except Exception:  # a kernel surprise must not kill the agent: what is programmed stays
            log.exception("programming routes failed; retrying")
            self.metrics.route_errors.inc()
            self._driver.resync_pending()
            return
        self.metrics.apply_seconds.observe(time.perf_counter() - started)
        self.metrics.route_writes.labels("add").inc(result.added)
        self.metrics.route_writes.labels("delete").inc(result.deleted)
        self.metrics.route_errors.inc(len(result.errors))
        self.metrics.routes.set(self._driver.route_count)
        self.metrics.endpoints.set(len(self._index))
        self.metrics.ip_conflicts.set(self._index.conflict_count)

    def _program_policy(self) -> None:
        """One nftables transaction; if the kernel refuses it, the policies changed since the last
        good one are compiled as drop-all (their endpoints fail closed) and it is tried again."""
        for attempt in (1, 2):
            started = time.perf_counter()
            try:
                result = self._policy_driver.apply(self._compiler.ruleset())
            except NftError as exc:
                log.error("nftables refused the ruleset (attempt %d): %s", attempt, exc)
                self.metrics.policy_errors.inc()
                for key in sorted(self._changed_policies):
                    self._compiler.quarantine(key, f"the kernel refused it: {exc}")
                self._changed_policies.clear()
                continue
            except Exception:  # an unexpected failure must not kill the agent: what is programmed stays
                log.exception("programming nftables failed; retrying")
                self.metrics.policy_errors.inc()
                self._policy_driver.forget()
                return
            self.metrics.policy_apply_seconds.observe(time.perf_counter() - started)
            self.metrics.policy_commands.inc(result.commands)
            self.metrics.broken_policies.set(len(self._compiler.errors))
            self._policy_pending = False
            self._changed_policies.clear()
            return

    def _report(self) -> None:
        """Publish the revision whose whole state is in the kernel (failed writes hold it back)."""
        self.status.pending = self._pending
        if self.status.in_sync and self._consistent and not self._pending:
            self.status.programmed_revision = self._revision
            self.metrics.programmed_revision.set(self._revision)
