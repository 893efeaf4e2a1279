"""List-then-watch of one etcd prefix that survives compaction, lost connections and restarts.

After any break it re-lists and emits only the difference from what it already emitted
(deletes included), so a consumer's state always converges to etcd's.  A guard checks that
an open watch keeps up: etcd can accept a watch while it is still restoring after a restart
and then never deliver its events, so a watch found behind twice in a row is re-listed."""

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from threading import Event

from policy.datastore.kv import KV, LIST_PAGE_SIZE, Change, Compacted, KVError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SyncBatch:
    """Changes to apply in order. complete: the consumer now holds etcd's state at `revision`."""

    changes: list[Change]
    revision: int
    complete: bool


@dataclass(frozen=True, slots=True)
class Resyncing:
    """What a daemon enqueues when on_resync says the watch broke: until the next complete list
    it cannot make progress, and /readyz says so."""

    reason: str  # compacted, stalled, unavailable, error


@dataclass(frozen=True)
class Backoff:
    initial: float = 0.1
    maximum: float = 2.0

    def next(self, delay: float) -> float:
        return min(self.maximum, max(self.initial, delay * 2))

    @staticmethod
    def jittered(delay: float) -> float:
        return delay * random.uniform(0.8, 1.2)


@dataclass(frozen=True)
class WatchGuard:
    """When to check that a watch keeps up: soon after it opens, then every `interval` seconds;
    `confirm` seconds after a check finds it behind, a second check decides: stalled if it
    delivered nothing in between."""

    first: float = 1.0
    interval: float = 10.0
    confirm: float = 2.0


class WatchStalled(KVError):
    pass


def _version(mod_revision: int, value: bytes | None) -> int:
    """One int per held key (a pair cost ~80 bytes more at 100,000 keys): the revision alone
    would miss a restored etcd whose revisions repeat with other values."""
    return hash((mod_revision, value))


class Syncer:
    def __init__(
        self,
        kv: KV,
        prefix: str,
        emit: Callable[[SyncBatch], None],
        stop: Event,
        backoff: Backoff = Backoff(),
        page_size: int = LIST_PAGE_SIZE,
        on_resync: Callable[[str], None] = lambda reason: None,
        guard: WatchGuard = WatchGuard(),
    ):
        self._kv, self._prefix, self._emit, self._stop = kv, prefix, emit, stop
        self._backoff, self._page_size, self._on_resync, self._guard = backoff, page_size, on_resync, guard
        self._held: dict[str, int] = {}  # key -> _version of what was emitted for it
        self._seen_revision = 0
        self._delivered = False

    def run(self) -> None:
        """Loop until stop is set; never raises, never retries the same revision twice in a row."""
        delay = 0.0
        error: Exception
        while not self._stop.is_set():
            self._delivered = False
            try:
                self._list_and_watch()
                continue  # returns only once stopped
            except Compacted as exc:
                reason, error = "compacted", exc
            except WatchStalled as exc:
                reason, error = "stalled", exc
            except KVError as exc:
                reason, error = "unavailable", exc
            except Exception as exc:  # a bug must not end the watch: log it loudly and start over
                reason, error = "error", exc
            if self._delivered:
                delay = 0.0  # the watch worked for a while: start a fresh backoff
            # After compaction or a stall the first re-list is immediate (it is at a new revision).
            immediate = reason in ("compacted", "stalled") and delay == 0.0
            delay = self._backoff.next(delay)
            wait = 0.0 if immediate else Backoff.jittered(delay)
            log.log(
                logging.ERROR if reason == "error" else logging.WARNING,
                "watch of %s: %s (%s); re-listing in %.1fs",
                self._prefix,
                reason,
                error,
                wait,
                exc_info=reason == "error",
            )
            self._on_resync(reason)
            self._stop.wait(wait)

    def _list_and_watch(self) -> None:
        listed = self._relist()
        watch_stop, stalled = Event(), Event()
        guard = threading.Thread(target=self._guard_watch, args=(watch_stop, stalled), name="watch-guard", daemon=True)
        guard.start()
        try:
            for changes, revision in self._kv.watch(self._prefix, listed + 1, watch_stop):
                self._emit(SyncBatch(self._remember(changes), revision, complete=True))
                self._seen_revision = revision
                self._delivered = True
        finally:
            watch_stop.set()
            guard.join()
        if stalled.is_set():
            raise WatchStalled(f"watch of {self._prefix} stopped delivering events")

    def _guard_watch(self, watch_stop: Event, stalled: Event) -> None:
        """Stop the watch (marking it stalled) if etcd holds changes it has not delivered and it
        delivers nothing at all for `confirm` seconds. A watch that delivers, however far behind
        (a burst of writes on a busy machine), is slow, not stalled: a re-list would only add to
        the load that made it slow (seen as a re-list storm in a 20-node cluster on 2 cores)."""
        due = time.monotonic() + self._guard.first
        behind_at: int | None = None  # where the watch was when a check found it behind
        while not watch_stop.is_set():
            if self._stop.is_set():
                watch_stop.set()
                return
            if time.monotonic() < due:
                watch_stop.wait(0.1)
                continue
            try:
                count, newest = self._kv.prefix_state(self._prefix)
            except KVError:
                due = time.monotonic() + self._guard.interval  # the watch itself will notice
                continue
            behind = newest > self._seen_revision or count != len(self._held)
            if behind and behind_at == self._seen_revision:
                stalled.set()
                watch_stop.set()
                return
            progressing = behind and behind_at is not None  # behind twice, but it delivered: slow
            behind_at = self._seen_revision if behind and not progressing else None
            due = time.monotonic() + (self._guard.confirm if behind_at is not None else self._guard.interval)

    def _remember(self, changes: list[Change]) -> list[Change]:
        for change in changes:
            if change.value is None:
                self._held.pop(change.key, None)
            else:
                self._held[change.key] = _version(change.mod_revision, change.value)
        return changes

    def _relist(self) -> int:
        started = time.perf_counter()
        seen: set[str] = set()
        revision = 0
        for page, revision in self._kv.pages(self._prefix, self._page_size):
            changed = []
            for item in page:
                seen.add(item.key)
                if self._held.get(item.key) != _version(item.mod_revision, item.value):
                    changed.append(Change(item.key, item.value, item.mod_revision, item.create_revision))
            if changed:
                self._emit(SyncBatch(self._remember(changed), revision, complete=False))
        gone = [Change(key, None, revision) for key in self._held.keys() - seen]
        self._emit(SyncBatch(self._remember(sorted(gone, key=lambda c: c.key)), revision, complete=True))
        self._seen_revision = revision
        log.info(
            "listed %s: %d keys at revision %d (%d removed) in %.2fs",
            self._prefix,
            len(seen),
            revision,
            len(gone),
            time.perf_counter() - started,
        )
        return revision
