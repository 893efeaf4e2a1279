"""List, then watch, one Kubernetes kind; after a 410 or a broken watch, list again and emit
only the difference from what was emitted before (deletes included).

A watch the server ends on its own (its timeout) is re-opened from the last resourceVersion,
bookmarks included, without a list. The reflector holds only each object's resourceVersion;
the objects go to the daemon's queue as KubeBatch items."""

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from policy.datastore.watch import Backoff
from policy.kube.client import Expired, KubeError, KubeSource
from policy.kube.convert import BadObject, object_ref, resource_version

log = logging.getLogger(__name__)

Key = tuple[str | None, str]  # (namespace, name)


@dataclass(frozen=True, slots=True)
class KubeBatch:
    """Changes of one kind, in order: object None means deleted. synced: after this batch the
    consumer holds the kind as the API server had it at resource_version."""

    resource: str
    changes: list[tuple[Key, dict | None]]
    resource_version: str
    synced: bool


class Reflector:
    def __init__(
        self,
        resource: str,
        source: KubeSource,
        emit: Callable[[KubeBatch], None],
        stop: threading.Event,
        backoff: Backoff | None = None,
        on_relist: Callable[[str, str], None] = lambda resource, reason: None,
    ):
        self.resource, self._source, self._emit, self._stop = resource, source, emit, stop
        self._backoff, self._on_relist = backoff or Backoff(), on_relist
        self._held: dict[Key, str] = {}  # what was emitted: key -> resourceVersion
        self.resource_version = ""

    def run(self) -> None:
        """Until stop is set; never raises."""
        delay, listed = 0.0, False
        while not self._stop.is_set():
            try:
                if not listed:
                    self._list()
                    listed, delay = True, 0.0
                self._watch()  # returns when the server ends the watch: re-open it where it was
                continue
            except Expired as exc:
                reason, wait = "expired", 0.0  # a list at the current version, at once
                log.info("watch of %s expired (%s): listing again", self.resource, exc)
            except KubeError as exc:
                reason = "error"
                delay = self._backoff.next(delay)
                wait = Backoff.jittered(delay)
                log.warning("watch of %s: %s; listing again in %.1fs", self.resource, exc, wait)
            except Exception:  # a bug must not end the reflector: log it loudly and start over
                reason = "error"
                delay = self._backoff.next(delay)
                wait = Backoff.jittered(delay)
                log.exception("watch of %s failed; listing again in %.1fs", self.resource, wait)
            listed = False
            self._on_relist(self.resource, reason)
            self._stop.wait(wait)

    def _list(self) -> None:
        items, version = self._source.list(self.resource)
        seen: set[Key] = set()
        changes: list[tuple[Key, dict | None]] = []
        for item in items:
            key = _key(self.resource, item)
            if key is None:
                continue
            seen.add(key)
            if self._held.get(key) != resource_version(item):
                changes.append((key, item))
        changes += [(key, None) for key in sorted(self._held.keys() - seen, key=str)]
        self._remember(changes)
        self.resource_version = version
        log.info("listed %s: %d objects at %s, %d changed or gone", self.resource, len(seen), version, len(changes))
        self._emit(KubeBatch(self.resource, changes, version, synced=True))

    def _watch(self) -> None:
        for event in self._source.watch(self.resource, self.resource_version, self._stop):
            version = resource_version(event.object) or self.resource_version
            if event.type == "BOOKMARK":
                self.resource_version = version
                self._emit(KubeBatch(self.resource, [], version, synced=True))
                continue
            key = _key(self.resource, event.object)
            if key is None or event.type not in ("ADDED", "MODIFIED", "DELETED"):
                log.warning("watch of %s: skipping a %s event without a usable object", self.resource, event.type)
                continue
            self.resource_version = version
            if event.type == "DELETED":
                if key not in self._held:
                    continue
                change: tuple[Key, dict | None] = (key, None)
            elif self._held.get(key) == version:
                continue  # seen already (a list and a watch overlap by one version)
            else:
                change = (key, event.object)
            self._remember([change])
            self._emit(KubeBatch(self.resource, [change], version, synced=True))

    def _remember(self, changes: list[tuple[Key, dict | None]]) -> None:
        for key, item in changes:
            if item is None:
                self._held.pop(key, None)
            else:
                self._held[key] = resource_version(item)


def _key(resource: str, item: dict) -> Key | None:
    try:
        return object_ref(resource, item).key
    except BadObject:
        return None
