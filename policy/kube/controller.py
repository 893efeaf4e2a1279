"""The controller's loop: Kubernetes reflectors and the etcd watch in, the difference out.

It runs in the shared DaemonLoop (policy/runtime/loop.py): reflectors and the etcd Syncer
only enqueue; this class, on the loop's thread, holds both sides, computes the desired value
of each key a change touched (state.desired, pure) and writes only what differs from what etcd
holds, with compare-and-swap on the revision it read. Nothing is written before every kind
and etcd are listed; every `reconcile_interval` every key is compared again."""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from policy.datastore.keys import parse_key, resources_root
from policy.datastore.kv import ABSENT, KV, Change, Conflict, KVError, Write
from policy.datastore.store import MAX_TXN_OPS
from policy.datastore.watch import Backoff, Resyncing, SyncBatch, Syncer
from policy.kube.client import KINDS, KubeSource
from policy.kube.convert import BadObject, ObjectRef
from policy.kube.events import EventRecorder
from policy.kube.metrics import ControllerMetrics
from policy.kube.nodes import NodeReleaser
from policy.kube.reflector import KubeBatch, Reflector
from policy.kube.state import KEEP, EtcdState, KubeState, desired, held_keys
from policy.runtime.loop import RETRY_INTERVAL, DaemonLoop

log = logging.getLogger(__name__)

RESOURCES = tuple(KINDS)


@dataclass(frozen=True)
class ControllerConfig:
    etcd_prefix: str = "/calyx"
    reconcile_interval: float = 300.0  # every key compared with etcd again
    compaction_interval: float = 600.0  # 0: never compact
    node_release_grace: float = 300.0
    node_recheck_interval: float = 30.0  # a deferred release is looked at again this often
    etcd_backoff_max: float = 2.0


class KubeControllers:
    def __init__(
        self,
        config: ControllerConfig,
        kv: KV,
        source: KubeSource,
        compact: Callable[[int], None] | None = None,
        metrics: ControllerMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.config, self._kv, self._source, self._compact, self._clock = config, kv, source, compact, clock
        self.metrics = metrics or ControllerMetrics()
        self.loop = DaemonLoop(on_error=lambda stage: self.metrics.unexpected_errors.labels(stage).inc())
        self.events = EventRecorder(source, self.metrics.events_posted.inc, self.metrics.events_dropped.inc)
        self.kube = KubeState(config.etcd_prefix, self._report)
        self.etcd = EtcdState(config.etcd_prefix, self._bad_resource)
        self.releaser = NodeReleaser(
            source,
            kv,
            config.etcd_prefix,
            config.node_release_grace,
            config.node_recheck_interval,
            clock,
            self.metrics.released_addresses.inc,
        )
        self._synced: set[str] = set()
        self._versions: dict[str, str] = {}
        self._etcd_synced = False
        self._etcd_revision = self._written_revision = 0
        self._dirty: set[str] = set()
        self._full_at = 0.0  # the first reconcile compares every key
        self._retry_at = 0.0  # after a conflict: when to write again
        self._compact_at = clock() + config.compaction_interval if config.compaction_interval else float("inf")
        self._compact_to = 0
        self._reconciled = False
        self._bad_count = 0
        self.status: dict = {"ready": False}

    # -- running --------------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None) -> None:
        if stop is not None:
            self.loop.stop_event = stop
        stop = self.loop.stop_event
        backoff = Backoff(maximum=self.config.etcd_backoff_max)
        syncer = Syncer(
            self._kv, resources_root(self.config.etcd_prefix), self.loop.put, stop, backoff, on_resync=self._resync
        )
        self.loop.start_worker("etcd-watch", syncer.run)
        for resource in RESOURCES:
            reflector = Reflector(resource, self._source, self.loop.put, stop, backoff, self._relisted)
            self.loop.start_worker(f"watch-{resource}", reflector.run)
        self.loop.start_worker("events", self.events.run, stop)
        try:
            self.loop.run(self)
        finally:
            stop.set()
            self.loop.join()

    def _resync(self, reason: str) -> None:
        self.loop.put(Resyncing(reason))

    def _relisted(self, resource: str, reason: str) -> None:
        self.metrics.relists.labels(resource, reason).inc()

    def liveness(self) -> tuple[bool, dict]:
        return self.loop.liveness()

    def readiness(self) -> tuple[bool, dict]:
        status = self.status
        return bool(status.get("ready")), status

    # -- what the loop calls --------------------------------------------------------------
    def wait_time(self) -> float:
        retry = self._retry_at if self._dirty else float("inf")
        due = min(self._full_at, retry, self._compact_at, self.releaser.next_due())
        return max(0.0, due - self._clock())

    def handle(self, item: object) -> None:
        if isinstance(item, KubeBatch):
            self._take_kube(item)
        elif isinstance(item, SyncBatch):
            for change in item.changes:
                if self.etcd.take(change):
                    self._dirty.add(change.key)
            if item.complete:
                self._etcd_synced = True
                self._etcd_revision = max(self._etcd_revision, item.revision)
        elif isinstance(item, Resyncing):
            log.info("etcd watch re-listing (%s)", item.reason)
        else:
            log.error("unexpected item %r", type(item).__name__)

    def _take_kube(self, batch: KubeBatch) -> None:
        self.metrics.watch_events.labels(batch.resource).inc(len(batch.changes))
        for key, obj in batch.changes:
            touched = self.kube.take(batch.resource, key, obj)
            if batch.resource == "pods":
                touched = list(self.etcd.by_pod.get((key[0] or "", key[1]), ()))
            elif batch.resource == "nodes":
                self.etcd.nodes_changed = True
                touched = [k for k, name in self.etcd.node_names.items() if name == key[1]]
            self._dirty.update(touched)
        self._versions[batch.resource] = batch.resource_version
        if batch.synced:
            self._synced.add(batch.resource)

    def reconcile(self) -> None:
        if not self._etcd_synced or len(self._synced) < len(RESOURCES):
            self._publish()
            return
        now = self._clock()
        if now >= self._full_at:
            self._dirty |= set(self.etcd.values) | held_keys(self.config.etcd_prefix, self.kube)
            self._full_at = now + self.config.reconcile_interval
            self.metrics.full_reconciles.inc()
        if self._dirty and now >= self._retry_at:
            self._write(self._dirty)
        self._reconciled = True
        if self.etcd.nodes_changed:
            self.etcd.nodes_changed = False
            self.releaser.observe(self.etcd.known_nodes() - self.kube.nodes)
            self.metrics.pending_node_releases.set(len(self.releaser.pending))
        if self.releaser.next_due() <= now:
            self.releaser.run_due()
            self.metrics.pending_node_releases.set(len(self.releaser.pending))
        if now >= self._compact_at:
            self._compact_etcd()
        self._publish()

    # -- writing --------------------------------------------------------------------------
    def _write(self, keys: set[str]) -> None:
        writes: list[Write] = []
        for key in sorted(keys):
            want = desired(self.config.etcd_prefix, key, self.kube, self.etcd, self._bad_resource)
            if want is KEEP:
                continue
            have = self.etcd.values.get(key)
            if want is None:
                if have is not None:
                    writes.append(Write(key, None, have[1]))
            elif have is None:
                writes.append(Write(key, want, ABSENT))  # type: ignore[arg-type]
            elif have[0] != want:
                writes.append(Write(key, want, have[1]))  # type: ignore[arg-type]
        keys.clear()
        conflicted = []
        for start in range(0, len(writes), MAX_TXN_OPS):
            chunk = writes[start : start + MAX_TXN_OPS]
            try:
                self._committed(chunk, self._kv.commit(chunk))
            except Conflict:
                conflicted += self._one_by_one(chunk)
        if conflicted:
            self.metrics.conflicts.inc(len(conflicted))
            for key in conflicted:
                self._refresh(key)
            keys.update(conflicted)
            self._retry_at = self._clock() + RETRY_INTERVAL

    def _one_by_one(self, writes: list[Write]) -> list[str]:
        conflicted = []
        for write in writes:
            try:
                self._committed([write], self._kv.commit([write]))
            except Conflict:
                conflicted.append(write.key)
        return conflicted

    def _committed(self, writes: list[Write], revision: int) -> None:
        """What was written is what etcd now holds: record it, so the watch echo is no change."""
        for write in writes:
            model, _, _ = parse_key(self.config.etcd_prefix, write.key)
            op = "delete" if write.value is None else "create" if write.expect == ABSENT else "update"
            self.metrics.writes.labels(model.__name__, op).inc()
            log.info("%s %s", op, write.key)
        for write in writes:
            self.etcd.take(Change(write.key, write.value, revision))
        self._written_revision = max(self._written_revision, revision)

    def _refresh(self, key: str) -> None:
        try:
            item = self._kv.get(key)
        except KVError as exc:
            log.warning("re-reading %s after a conflict failed: %s", key, exc)
            return
        self.etcd.take(Change(key, item.value if item else None, item.mod_revision if item else 0))

    def _compact_etcd(self) -> None:
        self._compact_at = self._clock() + self.config.compaction_interval
        if self._compact and self._compact_to:
            try:
                self._compact(self._compact_to)
                self.metrics.compactions.inc()
                log.info("compacted etcd to revision %d", self._compact_to)
            except KVError as exc:
                log.warning("etcd compaction to %d failed: %s", self._compact_to, exc)
        self._compact_to = max(self._etcd_revision, self._written_revision)  # next time: keep one interval

    # -- reporting ------------------------------------------------------------------------
    def _report(self, ref: ObjectRef, problem: BadObject | None) -> None:
        if problem is None:
            self.events.resolved(ref)
            return
        self._bad_count += 1
        self.metrics.bad_objects.labels(ref.kind).inc()
        self.events.report(ref, problem)

    def _bad_resource(self, kind: str) -> None:
        self.metrics.bad_resources.labels(kind).inc()

    def _publish(self) -> None:
        synced = self._etcd_synced and len(self._synced) == len(RESOURCES)
        self.metrics.synced.set(1 if synced else 0)
        for resource, held in (
            ("namespaces", self.kube.namespaces),
            ("pods", self.kube.pods),
            ("serviceaccounts", self.kube.profiles),
            ("networkpolicies", self.kube.policies),
            ("nodes", self.kube.nodes),
        ):
            self.metrics.objects.labels(resource).set(len(held))
        self.status = {
            "ready": synced and self._reconciled,
            "synced": {r: r in self._synced for r in RESOURCES} | {"etcd": self._etcd_synced},
            "resourceVersions": dict(self._versions),
            "etcdRevision": self._etcd_revision,
            "writtenRevision": max(self._etcd_revision, self._written_revision),
            "pendingWrites": len(self._dirty),
            "pendingNodeReleases": sorted(self.releaser.pending),
            "badObjects": self._bad_count,
        }
