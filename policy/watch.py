"""List-then-watch of one etcd prefix that survives compaction, lost connections and restarts.

After any break it re-lists and emits only the difference from what it already emitted
(deletes included), so a consumer's state always converges to etcd's."""

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from threading import Event

from policy.kv import KV, Change, Compacted, KVError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SyncBatch:
    """Changes to apply in order. complete: the consumer now holds etcd's state at `revision`."""

    changes: list[Change]
    revision: int
    complete: bool


@dataclass(frozen=True)
class Backoff:
    initial: float = 0.1
    maximum: float = 2.0

    def next(self, delay: float) -> float:
        return min(self.maximum, max(self.initial, delay * 2))

    @staticmethod
    def jittered(delay: float) -> float:
        return delay * random.uniform(0.8, 1.2)


class Syncer:
    def __init__(
        self,
        kv: KV,
        prefix: str,
        emit: Callable[[SyncBatch], None],
        stop: Event,
        backoff: Backoff = Backoff(),
        page_size: int = 1000,
        on_resync: Callable[[str], None] = lambda reason: None,
    ):
        self._kv, self._prefix, self._emit, self._stop = kv, prefix, emit, stop
        self._backoff, self._page_size, self._on_resync = backoff, page_size, on_resync
        self._held: dict[str, tuple[int, int]] = {}

    def run(self) -> None:
        """Loop until stop is set; never raises, never retries the same revision twice in a row."""
        delay = 0.0
        while not self._stop.is_set():
            try:
                revision = self._relist()
                for changes, revision in self._kv.watch(self._prefix, revision + 1, self._stop):
                    delay = 0.0  # the watch works again: the next failure starts a fresh backoff
                    self._emit(SyncBatch(self._remember(changes), revision, complete=True))
            except Compacted as exc:
                log.info("watch of %s fell behind compaction (%s); re-listing", self._prefix, exc)
                self._on_resync("compacted")
                # The first re-list is immediate: it is at a new revision.  Repeats back off.
                self._stop.wait(Backoff.jittered(delay))
                delay = self._backoff.next(delay)
            except KVError as exc:
                delay = self._backoff.next(delay)
                log.warning("etcd unavailable for %s (%s); re-listing in %.1fs", self._prefix, exc, delay)
                self._on_resync("unavailable")
                self._stop.wait(Backoff.jittered(delay))
            except Exception:  # a bug must not end the watch: log it loudly and start over
                delay = self._backoff.next(delay)
                log.exception("unexpected error watching %s; re-listing in %.1fs", self._prefix, delay)
                self._on_resync("error")
                self._stop.wait(Backoff.jittered(delay))

    def _remember(self, changes: list[Change]) -> list[Change]:
        for change in changes:
            if change.value is None:
                self._held.pop(change.key, None)
            else:
                self._held[change.key] = (change.mod_revision, hash(change.value))
        return changes

    def _relist(self) -> int:
        seen: set[str] = set()
        revision = 0
        for page, revision in self._kv.pages(self._prefix, self._page_size):
            changed = []
            for item in page:
                seen.add(item.key)
                if self._held.get(item.key) != (item.mod_revision, hash(item.value)):
                    changed.append(Change(item.key, item.value, item.mod_revision))
            if changed:
                self._emit(SyncBatch(self._remember(changed), revision, complete=False))
        gone = [Change(key, None, revision) for key in self._held.keys() - seen]
        self._emit(SyncBatch(self._remember(sorted(gone, key=lambda c: c.key)), revision, complete=True))
        return revision
