"""Small in-memory stand-ins for the two seams (etcd and the kernel), for tests without root."""

import contextlib
import threading
from collections.abc import Iterable

from felix.kernel import KernelRoute, RouteError
from policy.kv import ABSENT, ANY, PRESENT, Change, Compacted, Conflict, KeyValue, Unavailable, Write


class FakeKV:
    """etcd's semantics that matter to Calyx: global revisions, CAS, watch history, compaction."""

    def __init__(self) -> None:
        self.data: dict[str, KeyValue] = {}
        self.revision = 1
        self.history: list[Change] = []
        self.compacted = 0
        self.down = False
        self.watch_calls = 0
        self.list_calls = 0
        self._cond = threading.Condition()
        self._generation = 0  # bumped to break every open watch, as a lost connection does
        self.writes_before_next_watch: list[tuple[str, bytes | None]] = []
        self.compacted_watches = 0
        self.deaf = False  # a watch that stays open but delivers nothing (seen after etcd restarts)

    @contextlib.contextmanager
    def admin(self):
        """Hold the store (as another etcd client would), writing even while 'down' for the agent."""
        with self._cond:
            was_down, self.down = self.down, False
            try:
                yield
            finally:
                self.down = was_down

    def _check_up(self) -> None:
        if self.down:
            raise Unavailable("fake etcd is down")

    def get(self, key: str) -> KeyValue | None:
        with self._cond:
            self._check_up()
            return self.data.get(key)

    def pages(self, prefix: str, page_size: int = 1000):
        with self._cond:
            self._check_up()
            self.list_calls += 1
            items = sorted((kv for k, kv in self.data.items() if k.startswith(prefix)), key=lambda kv: kv.key)
            revision = self.revision
        for start in range(0, max(len(items), 1), page_size):
            yield items[start:start + page_size], revision

    def prefix_state(self, prefix: str) -> tuple[int, int]:
        with self._cond:
            self._check_up()
            items = [kv for k, kv in self.data.items() if k.startswith(prefix)]
            return len(items), max((kv.mod_revision for kv in items), default=0)

    def commit(self, writes: list[Write]) -> int:
        with self._cond:
            self._check_up()
            failures = []
            for w in writes:
                current = self.data.get(w.key)
                if w.expect == ABSENT and current is not None:
                    failures.append(f"{w.key} already exists")
                elif w.expect == PRESENT and current is None:
                    failures.append(f"{w.key} does not exist")
                elif w.expect not in (ANY, ABSENT, PRESENT) and (current is None or current.mod_revision != w.expect):
                    failures.append(f"{w.key} was modified")
            if failures:
                raise Conflict(failures)
            self.revision += 1
            for w in writes:
                if w.value is None:
                    if self.data.pop(w.key, None) is not None:
                        self.history.append(Change(w.key, None, self.revision))
                else:
                    self.data[w.key] = KeyValue(w.key, w.value, self.revision)
                    self.history.append(Change(w.key, w.value, self.revision))
            self._cond.notify_all()
            return self.revision

    def put(self, key: str, value: bytes) -> int:
        return self.commit([Write(key, value)])

    def delete(self, key: str) -> int:
        return self.commit([Write(key, None)])

    def compact(self, revision: int) -> None:
        with self._cond:
            self.compacted = revision
            self.history = [c for c in self.history if c.mod_revision > revision]
            self._cond.notify_all()

    def break_watches(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def set_down(self, down: bool) -> None:
        with self._cond:
            self.down = down
            self._generation += 1
            self._cond.notify_all()

    def watch(self, prefix: str, start_revision: int, stop: threading.Event):
        with self._cond:
            self._check_up()
            self.watch_calls += 1
            generation = self._generation
            if self.writes_before_next_watch:
                self.commit([Write(key, value) for key, value in self.writes_before_next_watch])
                self.writes_before_next_watch = []
                self.compact(self.revision)
            if start_revision <= self.compacted:
                self.compacted_watches += 1
        position = start_revision
        while not stop.is_set():
            with self._cond:
                if self._generation != generation:
                    raise Unavailable("fake watch broken")
                if position <= self.compacted:
                    raise Compacted(self.compacted)
                changes = [c for c in self.history if c.mod_revision >= position and c.key.startswith(prefix)]
                if not changes or self.deaf:
                    self._cond.wait(0.05)
                    continue
                position = self.revision + 1
                revision = self.revision
            yield changes, revision

    def close(self) -> None:
        pass


class FakeKernel:
    """Links and our routes, with a log of every write so tests can count them."""

    def __init__(self, links: dict[str, int] | None = None) -> None:
        self.link_table: dict[str, int] = dict(links or {})
        self.route_table: set[KernelRoute] = set()
        self.writes: list[tuple[str, KernelRoute]] = []
        self.configured: list[tuple[str, bool, bool]] = []
        self.forwarding = False
        self.refuse: set[str] = set()  # destinations whose add fails (a foreign route holds them)
        self._lock = threading.Lock()

    def add_link(self, name: str, ifindex: int) -> None:
        with self._lock:
            self.link_table[name] = ifindex

    def remove_link(self, name: str) -> None:
        with self._lock:
            ifindex = self.link_table.pop(name)
            self.route_table = {r for r in self.route_table if r.ifindex != ifindex}

    def links(self, names=None) -> dict[str, int]:
        with self._lock:
            return {n: i for n, i in self.link_table.items() if names is None or n in names}

    def workload_routes(self) -> set[KernelRoute]:
        with self._lock:
            return set(self.route_table)

    def add_routes(self, routes: Iterable[KernelRoute]) -> list[RouteError]:
        errors = []
        with self._lock:
            for route in routes:
                self.writes.append(("add", route))
                if route.dst in self.refuse or route.ifindex not in self.link_table.values():
                    errors.append(RouteError(route, "refused"))
                else:
                    self.route_table.add(route)
        return errors

    def delete_routes(self, routes: Iterable[KernelRoute]) -> list[RouteError]:
        with self._lock:
            for route in routes:
                self.writes.append(("del", route))
                self.route_table.discard(route)
        return []

    def configure_interface(self, name: str, ifindex: int, ipv4: bool, ipv6: bool) -> None:
        self.configured.append((name, ipv4, ipv6))

    def enable_forwarding(self) -> None:
        self.forwarding = True

    def watch_links(self, emit, stop: threading.Event, subscribed: threading.Event) -> None:
        subscribed.set()
        stop.wait()

    def routes_by_name(self) -> set[tuple[str, str]]:
        names = {index: name for name, index in self.links().items()}
        return {(r.dst, names.get(r.ifindex, "?")) for r in self.workload_routes()}
