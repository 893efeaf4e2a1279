"""The reflector against the test API server (127.0.0.1): list, watch, bookmarks, 410, breaks."""

import queue
import threading

import pytest

from policy.kube.client import KubeClient, api_client
from policy.kube.reflector import Reflector
from tests.lab.kube_api import KubeAPIServer
from tests.lab.processes import wait_for


class Running:
    def __init__(self, api: KubeAPIServer, kubeconfig: str, resource: str = "pods"):
        self.batches: queue.Queue = queue.Queue()
        self.relists: list[str] = []
        self.stop = threading.Event()
        self.reflector = Reflector(
            resource,
            KubeClient(api_client(kubeconfig)),
            self.batches.put,
            self.stop,
            on_relist=lambda r, reason: self.relists.append(reason),
        )
        self.thread = threading.Thread(target=self.reflector.run, daemon=True)
        self.thread.start()

    def next(self, timeout: float = 5.0):
        return self.batches.get(timeout=timeout)

    def changes(self, until_version: str, timeout: float = 5.0) -> list:
        """Every (name, present) change until the reflector has taken `until_version`."""
        found = []
        while True:
            batch = self.next(timeout)
            found += [(key[1], obj is not None) for key, obj in batch.changes]
            if int(batch.resource_version) >= int(until_version):
                return found

    def close(self):
        self.stop.set()
        self.thread.join(5)


@pytest.fixture
def api(tmp_path):
    server = KubeAPIServer(bookmark_interval=0.2).start()
    server.kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    yield server
    server.stop()


def add(api, name, labels=None):
    return api.store.create("pods", {"metadata": {"name": name, "namespace": "x", "labels": labels or {}}})


def test_list_then_watch(api):
    add(api, "a")
    add(api, "b")
    running = Running(api, api.kubeconfig)
    try:
        first = running.next()
        assert first.synced and sorted(k[1] for k, _ in first.changes) == ["a", "b"]
        changed = api.store.patch("pods", "x", "a", {"metadata": {"labels": {"v": "2"}}})
        api.store.delete("pods", "x", "b")
        c = add(api, "c")
        assert running.changes(c["metadata"]["resourceVersion"]) == [("a", True), ("b", False), ("c", True)]
        assert int(changed["metadata"]["resourceVersion"]) < int(running.reflector.resource_version)
    finally:
        running.close()


def test_bookmarks_move_the_version_without_changes(api):
    add(api, "a")
    running = Running(api, api.kubeconfig)
    try:
        running.next()
        api.store.create("namespaces", {"metadata": {"name": "other-kind"}})  # moves the shared version
        version = api.store.version
        batch = running.next()
        assert batch.changes == [] and int(batch.resource_version) == version
    finally:
        running.close()


def test_an_expired_watch_lists_again_and_emits_only_the_difference(api):
    for name in ("keep", "change", "drop"):
        add(api, name)
    running = Running(api, api.kubeconfig)
    try:
        running.next()
        assert running.next().changes == []  # a bookmark: the watch is open
        api.store.paused = True  # the watch hears nothing while the history it would need goes away
        api.store.patch("pods", "x", "change", {"metadata": {"labels": {"v": "2"}}})
        api.store.delete("pods", "x", "drop")
        lists_before = len([c for c in api.calls if c.verb == "list"])
        api.store.expire()
        api.store.paused = False
        batch = running.next()
        assert running.relists == ["expired"]
        assert sorted((k[1], o is not None) for k, o in batch.changes) == [("change", True), ("drop", False)]
        assert len([c for c in api.calls if c.verb == "list"]) == lists_before + 1
    finally:
        running.close()


def test_a_watch_the_server_ends_resumes_where_it_was_without_a_list(api):
    add(api, "a")
    running = Running(api, api.kubeconfig)
    try:
        running.next()
        assert running.next().changes == []  # a bookmark: the watch is open
        api.store.end_watches()
        wait_for(lambda: len([c for c in api.calls if c.verb == "watch"]) >= 2, 5, what="a second watch")
        b = add(api, "b")
        assert running.changes(b["metadata"]["resourceVersion"]) == [("b", True)]
        assert [c.verb for c in api.calls].count("list") == 1 and running.relists == []
    finally:
        running.close()


def test_an_unreachable_api_server_is_retried_with_backoff(api, tmp_path):
    add(api, "a")
    dead = KubeAPIServer()  # bound, never started: connections are refused after the backlog
    dead.httpd.server_close()
    running = Running(dead, dead.write_kubeconfig(tmp_path / "dead"))
    try:
        wait_for(lambda: len(running.relists) >= 2, 5, what="retries")
        assert set(running.relists) == {"error"} and running.batches.empty() and running.thread.is_alive()
    finally:
        running.close()
