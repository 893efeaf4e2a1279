"""The agent's one-way pipeline: etcd watch and link events -> route index and policy compiler ->
the nftables driver, then the route driver (policy first, so a new route never carries traffic
its policy has not seen).

One thread (run) owns all state; the watch and link threads only enqueue.  Nothing is written
to the kernel before the first complete list; after it, strays of ours are swept."""

import logging
import queue
import threading
import time

from felix.bulk import bulk_work
from felix.calc import RouteIndex, endpoint_routes
from felix.config import AgentConfig
from felix.health import Status
from felix.kernel import Kernel
from felix.metrics import AgentMetrics
from felix.nft import Nft, NftError
from felix.policy_driver import PolicyDriver
from felix.routes import RouteDriver
from policy.compiler.compiler import PolicyCompiler
from policy.model.documents import DocumentError
from policy.datastore.keys import parse_key
from policy.datastore.kv import KV
from policy.model.policies import GlobalNetworkPolicy, GlobalNetworkSet, NetworkPolicy, NetworkSet, Profile, Tier
from policy.model.resources import Namespace, WorkloadEndpoint
from policy.datastore.store import decode
from policy.runtime.status import StatusWriter, policy_status_key
from policy.datastore.watch import Backoff, SyncBatch, Syncer

log = logging.getLogger(__name__)

RETRY_INTERVAL = 1.0
LINK_SUBSCRIBE_TIMEOUT = 10.0
_LINKS_LOST = object()


class Agent:
    def __init__(self, config: AgentConfig, kv: KV, kernel: Kernel, nft: Nft, metrics: AgentMetrics | None = None):
        self.config, self._kv, self._kernel = config, kv, kernel
        self.metrics = metrics or AgentMetrics()
        self.status = Status()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._index = RouteIndex()
        self._driver = RouteDriver(kernel)
        self._compiler = PolicyCompiler(config.node_name)
        self._policy_driver = PolicyDriver(nft)
        self._policy_status = StatusWriter(kv, policy_status_key(config.etcd_prefix, config.node_name))
        self._policy_pending = False
        self._changed_policies: set[str] = set()  # since the last successful nftables transaction
        self._prefix = f"{config.etcd_prefix.rstrip('/')}/v1/"
        self._revision = 0
        self._consistent = False  # the held state equals etcd's at self._revision
        self._complete = False  # a first full list has arrived

    def run(self, stop: threading.Event) -> None:
        syncer = Syncer(self._kv, self._prefix, lambda batch: self._queue.put(batch), stop,
                        Backoff(maximum=self.config.etcd_backoff_max),
                        on_resync=lambda reason: self.metrics.resyncs.labels(reason).inc())
        subscribed = threading.Event()
        threads = [
            threading.Thread(target=self._kernel.watch_links, args=(self._on_link, stop, subscribed), name="link-watch", daemon=True),
            threading.Thread(target=syncer.run, name="etcd-watch", daemon=True),
        ]
        threads[0].start()
        if not subscribed.wait(LINK_SUBSCRIBE_TIMEOUT):
            raise RuntimeError("could not subscribe to link events")
        threads[1].start()
        next_refresh = next_retry = float("inf")
        while not stop.is_set():
            self.status.last_tick = time.monotonic()
            timeout = max(0.0, min(next_refresh, next_retry, time.monotonic() + 1.0) - time.monotonic())
            if not self.status.in_sync:
                with bulk_work():  # the first sync builds the whole state at once
                    self._drain(timeout)
                    if not self._complete:
                        continue
                    self._start_resync()
                next_refresh = time.monotonic() + self.config.route_refresh_interval
            elif self._drain(timeout) or time.monotonic() >= next_refresh:
                self._start_resync()
                next_refresh = time.monotonic() + self.config.route_refresh_interval
            now = time.monotonic()
            if self._pending and (now >= next_retry or next_retry == float("inf")):
                self._program()
                next_retry = now + RETRY_INTERVAL if self._pending else float("inf")
            self._report()
        for thread in threads:
            thread.join(timeout=5)

    def _on_link(self, name: str | None, ifindex: int | None) -> None:
        log.debug("link event: %s -> %s", name, ifindex)
        self._queue.put(_LINKS_LOST if name is None else (name, ifindex))

    def _drain(self, timeout: float) -> bool:
        """Take everything queued (waiting up to timeout for the first item); True if links were lost."""
        links_lost = False
        try:
            item = self._queue.get(timeout=timeout)
            while True:
                if item is _LINKS_LOST:
                    links_lost = True
                elif isinstance(item, SyncBatch):
                    self._apply_batch(item)
                else:
                    self._driver.link_changed(*item)
                item = self._queue.get_nowait()
        except queue.Empty:
            return links_lost

    def _apply_batch(self, batch: SyncBatch) -> None:
        for change in batch.changes:
            try:
                model, _, name = parse_key(self.config.etcd_prefix, change.key)
            except ValueError:
                continue  # IPAM, status and other keys that are not resources
            resource = None
            if change.value is not None:
                try:
                    resource = decode(self.config.etcd_prefix, change.key, change.value, change.mod_revision)
                except DocumentError as exc:
                    log.warning("skipping invalid entry in etcd: %s", exc)
                    self.metrics.bad_resources.labels(model.__name__).inc()
                    if model is not WorkloadEndpoint:
                        continue  # keep the last good version: dropping a policy would open traffic
            self._dispatch(model, change.key, name, resource)
        self._revision = batch.revision
        self._consistent = batch.complete
        self._complete = self._complete or batch.complete

    def _dispatch(self, model, key: str, name: str, resource) -> None:
        if model is WorkloadEndpoint:
            routes = endpoint_routes(resource, self.config.node_name) if resource else None
            for interface in self._index.update(key, routes):
                self._driver.set_desired(interface, self._index.desired(interface))
            self._compiler.set_endpoint(key, resource)
        elif model in (NetworkPolicy, GlobalNetworkPolicy):
            self._compiler.set_policy(key, resource)
            self._changed_policies.add(key)
        elif model in (NetworkSet, GlobalNetworkSet):
            self._compiler.set_network_set(key, resource)
        elif model is Namespace:
            self._compiler.set_namespace(name, resource)
        elif model is Tier:
            self._compiler.set_tier(name, resource)
        elif model is Profile:
            self._compiler.set_profile(name, resource)
        else:
            return
        self._policy_pending = True  # remote endpoints matter too: they are members of selector sets

    def _start_resync(self) -> None:
        first = not self.status.in_sync
        if first:
            log.info("in sync with etcd at revision %d: %d local endpoints; programming", self._revision, len(self._index))
            self._kernel.enable_forwarding()
        started = time.perf_counter()
        self._driver.resync()
        read = time.perf_counter()
        self._program()
        log.log(logging.INFO if first else logging.DEBUG, "kernel read back in %.2fs, %d routes programmed in %.2fs",
                read - started, self._driver.route_count, time.perf_counter() - read)
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
