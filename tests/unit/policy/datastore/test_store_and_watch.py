import threading
import time

import pytest

from policy.datastore.kv import Conflict
from policy.datastore.store import NotFound, Ref, ResourceStore, WriteMode, decode
from policy.datastore.watch import Backoff, Syncer, WatchGuard
from policy.model.resources import Metadata, Node, WorkloadEndpoint, WorkloadEndpointSpec
from tests.fakes import FakeKV


def wep(name: str, node: str = "n1", ip: str = "198.19.1.1") -> WorkloadEndpoint:
    return WorkloadEndpoint(
        metadata=Metadata(name=name, namespace="default"),
        spec=WorkloadEndpointSpec(node=node, interfaceName="cxa", ipNetworks=[ip]),
    )


def test_store_round_trip_with_revision_as_resource_version():
    store = ResourceStore(FakeKV(), "/t")
    revision = store.write([wep("a"), Node(metadata=Metadata(name="n1"))], WriteMode.CREATE)
    got = store.get(WorkloadEndpoint, "a", "default")
    assert got.spec == wep("a").spec and got.metadata.resourceVersion == str(revision)
    assert store.kv.get("/t/v1/workloadendpoints/default/a") is not None
    assert store.kv.get("/t/v1/nodes/n1") is not None


def test_create_conflict_writes_nothing_of_the_batch():
    store = ResourceStore(FakeKV(), "/t")
    store.write([wep("a")], WriteMode.CREATE)
    with pytest.raises(Conflict, match="already exists"):
        store.write([wep("b"), wep("a")], WriteMode.CREATE)
    with pytest.raises(NotFound):
        store.get(WorkloadEndpoint, "b", "default")


def test_stale_resource_version_is_refused():
    store = ResourceStore(FakeKV(), "/t")
    store.write([wep("a")], WriteMode.CREATE)
    stale = store.get(WorkloadEndpoint, "a", "default")
    store.write([wep("a", ip="198.19.1.2")], WriteMode.APPLY)
    with pytest.raises(Conflict, match="modified"):
        store.write([stale], WriteMode.APPLY)
    with pytest.raises(Conflict):
        store.write([wep("zz")], WriteMode.REPLACE)


def test_delete_missing_is_not_found_and_deletes_nothing():
    store = ResourceStore(FakeKV(), "/t")
    store.write([wep("a")], WriteMode.CREATE)
    with pytest.raises(NotFound):
        store.delete([Ref(WorkloadEndpoint, "a", "default"), Ref(WorkloadEndpoint, "b", "default")])
    assert store.get(WorkloadEndpoint, "a", "default")


def test_decode_rejects_value_that_disagrees_with_key():
    store = ResourceStore(FakeKV(), "/t")
    store.write([wep("a")], WriteMode.CREATE)
    item = store.kv.get("/t/v1/workloadendpoints/default/a")
    with pytest.raises(ValueError, match="disagree"):
        decode("/t", "/t/v1/workloadendpoints/default/b", item.value, 5)


class Collector:
    """Applies batches to a dict, as any consumer would."""

    def __init__(self):
        self.state: dict[str, bytes] = {}
        self.complete_revisions: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, batch):
        with self.lock:
            for change in batch.changes:
                if change.value is None:
                    self.state.pop(change.key, None)
                else:
                    self.state[change.key] = change.value
            if batch.complete:
                self.complete_revisions.append(batch.revision)


def wait_until(predicate, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


@pytest.fixture
def running_syncer():
    kv, sink, stop = FakeKV(), Collector(), threading.Event()
    kv.put("/p/a", b"1")
    kv.put("/p/b", b"2")
    kv.put("/other/x", b"3")
    syncer = Syncer(kv, "/p/", sink, stop, Backoff(initial=0.01, maximum=0.05), page_size=1)
    thread = threading.Thread(target=syncer.run, daemon=True)
    thread.start()
    yield kv, sink
    stop.set()
    thread.join(timeout=2)
    assert not thread.is_alive()


def expected(kv: FakeKV, prefix="/p/"):
    return {k: v.value for k, v in kv.data.items() if k.startswith(prefix)}


def test_syncer_lists_then_follows_the_watch(running_syncer):
    kv, sink = running_syncer
    wait_until(lambda: sink.complete_revisions)
    assert sink.state == {"/p/a": b"1", "/p/b": b"2"}
    revision = kv.put("/p/c", b"4")
    kv.delete("/p/a")
    wait_until(lambda: sink.state == expected(kv))
    wait_until(lambda: sink.complete_revisions[-1] >= revision)


def test_compaction_while_disconnected_relists_and_emits_deletes(running_syncer):
    kv, sink = running_syncer
    wait_until(lambda: sink.complete_revisions)
    kv.set_down(True)  # the connection drops...
    with kv.admin():  # ...and while the syncer is away, keys change and history is compacted
        kv.delete("/p/a")
        kv.put("/p/b", b"changed")
        kv.put("/p/d", b"5")
        kv.compact(kv.revision)
    kv.set_down(False)
    wait_until(lambda: sink.state == expected(kv))
    assert "/p/a" not in sink.state


def test_syncer_backs_off_while_etcd_is_down_and_never_spins(running_syncer):
    kv, sink = running_syncer
    wait_until(lambda: sink.complete_revisions)
    lists_before = kv.list_calls
    kv.set_down(True)
    time.sleep(0.5)
    attempts = kv.list_calls - lists_before
    assert attempts <= 0.5 / 0.01, "the syncer retried without backing off"
    kv.set_down(False)
    kv.put("/p/e", b"6")
    wait_until(lambda: sink.state == expected(kv))


def test_watch_behind_compaction_relists_instead_of_retrying_the_same_revision():
    kv, sink, stop = FakeKV(), Collector(), threading.Event()
    for i in range(5):
        kv.put(f"/p/{i}", b"x")
    kv.compact(kv.revision)
    syncer = Syncer(kv, "/p/", sink, stop, Backoff(initial=0.01, maximum=0.05))
    thread = threading.Thread(target=syncer.run, daemon=True)
    thread.start()
    wait_until(lambda: len(sink.state) == 5)
    lists = kv.list_calls
    kv.writes_before_next_watch = [("/p/9", b"y"), ("/p/0", None)]  # then compacted: the watch's start is gone
    kv.break_watches()
    wait_until(lambda: "/p/9" in sink.state and sink.state == expected(kv))
    stop.set()
    thread.join(timeout=2)
    assert kv.compacted_watches == 1
    assert kv.list_calls > lists
    assert kv.watch_calls <= kv.list_calls  # every watch starts from a fresh list: never the same revision twice


def test_a_watch_that_stops_delivering_is_detected_and_relisted():
    kv, sink, stop = FakeKV(), Collector(), threading.Event()
    kv.put("/p/a", b"1")
    syncer = Syncer(
        kv,
        "/p/",
        sink,
        stop,
        Backoff(initial=0.01, maximum=0.05),
        guard=WatchGuard(first=0.05, interval=0.1, confirm=0.05),
    )
    thread = threading.Thread(target=syncer.run, daemon=True)
    thread.start()
    wait_until(lambda: sink.complete_revisions)
    kv.deaf = True  # the watch stays open but says nothing, as after some etcd restarts
    kv.put("/p/b", b"2")
    kv.delete("/p/a")
    wait_until(lambda: sink.state == expected(kv), timeout=3)
    stop.set()
    thread.join(timeout=2)
    assert not thread.is_alive()


def test_a_watch_that_delivers_behind_a_stream_of_writes_is_slow_not_stalled():
    """Under a steady stream of writes etcd is always ahead of the watch; as long as the watch
    delivers, re-listing would only add load."""
    kv, sink, stop = FakeKV(), Collector(), threading.Event()
    kv.put("/p/a", b"1")
    syncer = Syncer(kv, "/p/", sink, stop, guard=WatchGuard(first=0.05, interval=0.05, confirm=0.1))
    thread = threading.Thread(target=syncer.run, daemon=True)
    thread.start()
    wait_until(lambda: sink.complete_revisions)
    kv.slow = 0.02  # delivers one change per 20 ms while they are written every 10 ms
    for i in range(60):
        kv.put(f"/p/k{i}", b"v")
        time.sleep(0.01)
    kv.slow = 0.0
    wait_until(lambda: sink.state == expected(kv), timeout=5)
    stop.set()
    thread.join(timeout=2)
    assert kv.list_calls == 1
