"""The agent's one-way pipeline: etcd watch and link events -> route index and policy compiler ->
the nftables driver, then the route driver (policy first, so a new route never carries traffic
its policy has not seen).

It runs in the shared DaemonLoop (policy/runtime/loop.py): the watch and link threads only
enqueue; the loop's thread owns all state. Nothing is written to the kernel before the first
complete list; after it, strays of ours are swept."""

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass

from felix.bulk import Pause
from felix.calc import RouteIndex, endpoint_routes
from felix.config import AgentConfig
from felix.flows import FlowLog
from felix.health import Status
from felix.kernel import Kernel
from felix.metrics import AgentMetrics
from felix.nflog import read_group
from felix.nft import Nft, NftError
from felix.policy_driver import PolicyDriver
from felix.routes import WorkloadRouteDriver
from policy.compiler.compiler import EndpointFacts, PolicyCompiler
from policy.datastore.keys import resources_root
from policy.datastore.kv import KV
from policy.datastore.watch import Backoff, Resyncing, SyncBatch, Syncer
from policy.model.policies import GlobalNetworkPolicy, GlobalNetworkSet, NetworkPolicy, NetworkSet, Profile, Tier
from policy.model.pools import IPPool
from policy.model.resources import Namespace, WorkloadEndpoint
from policy.runtime.intake import Intake, Update
from policy.runtime.loop import RETRY_INTERVAL, DaemonLoop
from policy.runtime.status import StatusWriter, policy_status_key

log = logging.getLogger(__name__)

LINK_SUBSCRIBE_TIMEOUT = 10.0
_LINKS_LOST = object()  # the link subscription ended: re-read every interface


@dataclass(frozen=True)
class LinkEvent:
    name: str
    ifindex: int | None  # None: the interface is gone


# What felix calculates from; a bad value keeps the last good version (policy/runtime/intake.py).
INTAKE_KINDS = (
    WorkloadEndpoint,
    NetworkPolicy,
    GlobalNetworkPolicy,
    NetworkSet,
    GlobalNetworkSet,
    Namespace,
    Tier,
    Profile,
    IPPool,  # outgoing NAT (natOutgoing) and the destinations it never applies to
)


class Agent:
    def __init__(self, config: AgentConfig, kv: KV, kernel: Kernel, nft: Nft, metrics: AgentMetrics | None = None):
        self.config, self._kv, self._kernel = config, kv, kernel
        self.metrics = metrics or AgentMetrics()
        self.status = Status()
        self.loop = DaemonLoop(on_error=lambda stage: self.metrics.unexpected_errors.labels(stage).inc())
        self._intake = Intake(
            config.etcd_prefix, INTAKE_KINDS, lambda kind: self.metrics.bad_resources.labels(kind).inc()
        )
        self._index = RouteIndex()
        self._local: dict[str, EndpointFacts] = {}  # this node's endpoints, as etcd has them
        self._driver = WorkloadRouteDriver(kernel)
        self._compiler = PolicyCompiler(config.node_name, config.host_access, config.observe)
        group = config.observe.deny_log_group
        self.flow_log = None if group is None else FlowLog(config.node_name, self.metrics.registry, config.flow_log)
        self._policy_driver = PolicyDriver(nft)
        self._policy_status = StatusWriter(kv, policy_status_key(config.etcd_prefix, config.node_name))
        self._policy_pending = False
        self._changed_policies: set[str] = set()  # since the last successful nftables transaction
        self._revision = 0
        self._consistent = False  # the held state equals etcd's at self._revision
        self._complete = False  # a first full list has arrived
        self._links_lost = False
        self._first_sync = Pause()  # no garbage collection from the first page to the first programming
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
            on_resync=self._on_resync,
        )
        subscribed = threading.Event()
        self.loop.start_worker("link-watch", self._kernel.watch_links, self._on_link, stop, subscribed)
        self.loop.start_worker("etcd-watch", syncer.run)  # the first list overlaps the subscription
        if not subscribed.wait(LINK_SUBSCRIBE_TIMEOUT):  # links are read (resync) only after it
            stop.set()
            self.loop.join()
            raise RuntimeError("could not subscribe to link events")
        if self.flow_log is not None:
            log_ = self.flow_log
            group = self.config.observe.deny_log_group
            self.loop.start_worker("flow-log", read_group, group, log_.packet, log_.lost, stop, log_.pace)
        try:
            self.loop.run(self)
        finally:
            stop.set()
            self.loop.join()

    def _on_resync(self, reason: str) -> None:
        self.metrics.resyncs.labels(reason).inc()
        self.loop.put(Resyncing(reason))

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
            if not self.status.in_sync:
                self._first_sync.start()  # the first sync builds the whole state at once
            self._apply_batch(item)
        elif isinstance(item, Resyncing):
            self._first_sync.finish()  # etcd may stay away: collect meanwhile
            self.status.datastore = f"re-listing after {item.reason}"
        elif isinstance(item, LinkEvent):
            self._driver.link_changed(item.name, item.ifindex)

    def reconcile(self) -> None:
        if not self._complete:
            return  # nothing is written to the kernel before the first complete list
        first = not self.status.in_sync
        if first or self._links_lost or time.monotonic() >= self._next_refresh:
            try:
                self._start_resync()
            finally:
                self._first_sync.finish()
            self._links_lost = False
            self._next_refresh = time.monotonic() + self.config.route_refresh_interval
        now = time.monotonic()
        if self._pending and (now >= self._next_retry or self._next_retry == float("inf")):
            self._program()
            self._next_retry = now + RETRY_INTERVAL if self._pending else float("inf")
        self._report()

    def _apply_batch(self, batch: SyncBatch) -> None:
        self.metrics.etcd_changes.inc(len(batch.changes))
        for update in self._intake.updates(batch.changes):
            self._dispatch(update)
        self._revision = batch.revision
        self._consistent = batch.complete
        self._complete = self._complete or batch.complete
        if batch.complete:
            self.status.datastore = "ok"

    def _dispatch(self, update: Update) -> None:
        kind, key, resource = update.kind, update.key, update.value
        if kind is WorkloadEndpoint:
            self._set_endpoint(key, resource, update.created)
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
        elif kind is IPPool:
            self._compiler.set_pool(update.name, resource)
        self._policy_pending = True  # remote endpoints matter too: they are members of selector sets

    def _set_endpoint(self, key: str, endpoint: WorkloadEndpoint | None, created: int) -> None:
        """Routes, and the policy view of every local endpoint whose addresses this may move: a
        local endpoint carries into policy (anti-spoofing, selector sets) only what it holds.
        Only the projection is kept (the compiler holds the same object), never the resource."""
        facts = EndpointFacts.of(endpoint, self.config.node_name) if endpoint is not None else None
        routes = endpoint_routes(facts, self.config.node_name, created) if facts is not None else None
        old = self._local.pop(key, None)
        networks = set(old.networks if old else ()) | set(routes.networks if routes else ())
        before = self._index.claimants(networks)
        for interface in self._index.update(key, routes):
            self._driver.set_desired(interface, self._index.desired(interface))
        if routes is None or facts is None:
            self._compiler.set_facts(key, facts)  # deleted, or another node's
        else:
            self._local[key] = facts
        for claimant in (before | self._index.claimants(networks)) & self._local.keys():
            local = self._local[claimant]
            owned = self._index.owned(claimant)
            if len(owned) < len(set(local.networks)):
                log.warning("endpoint %s: %s", claimant, self._index.refused().get(claimant, "address conflict"))
                local = dataclasses.replace(local, networks=owned)
            self._compiler.set_facts(claimant, local)

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
            "kernel read back in %.2fs, nftables and %d routes programmed in %.2fs",
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
        # no key at all when every policy compiles and every endpoint has its addresses
        failed = {**self._compiler.errors, **self._index.refused()} or None
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
            elapsed = time.perf_counter() - started
            self.metrics.policy_apply_seconds.observe(elapsed)
            if result.full:
                log.info("nftables table rebuilt: %d commands in %.2fs", result.commands, elapsed)
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
