"""The shared owning loop: stop is immediate, errors are caught and retried, dead workers fail /livez."""

import threading
import time

from policy.runtime.loop import DaemonLoop


class Recorder:
    def __init__(self, fail_on=(), reconcile_failures=0):
        self.items, self.reconciles, self.fail_on, self.reconcile_failures = [], 0, fail_on, reconcile_failures

    def handle(self, item):
        if item in self.fail_on:
            raise KeyError(item)
        self.items.append(item)

    def reconcile(self):
        self.reconciles += 1
        if self.reconcile_failures:
            self.reconcile_failures -= 1
            raise RuntimeError("kernel surprise")

    def wait_time(self):
        return 60.0


def test_stop_wakes_a_waiting_loop_at_once():
    loop, daemon = DaemonLoop(), Recorder()
    thread = threading.Thread(target=loop.run, args=(daemon,))
    thread.start()
    time.sleep(0.1)
    started = time.monotonic()
    loop.stop()
    thread.join(timeout=5)
    assert not thread.is_alive() and time.monotonic() - started < 0.5


def test_a_failing_item_is_skipped_and_the_rest_are_handled():
    errors = []
    loop, daemon = DaemonLoop(on_error=errors.append), Recorder(fail_on=("bad",))
    for item in ("a", "bad", "b"):
        loop.put(item)
    assert loop.turn(daemon, 0)
    assert daemon.items == ["a", "b"] and daemon.reconciles == 1 and errors == ["handle"]


def test_a_failing_reconcile_is_retried_after_the_retry_interval():
    now = [0.0]
    errors = []
    loop, daemon = DaemonLoop(on_error=errors.append, clock=lambda: now[0]), Recorder(reconcile_failures=1)
    loop.turn(daemon, 0)
    loop.turn(daemon, 0)  # too soon: not retried yet
    assert daemon.reconciles == 1 and errors == ["reconcile"]
    now[0] += 1.0
    loop.turn(daemon, 0)
    assert daemon.reconciles == 2 and errors == ["reconcile"]


def test_a_dead_worker_fails_liveness_and_a_stalled_loop_too():
    now = [0.0]
    loop = DaemonLoop(clock=lambda: now[0])
    assert loop.liveness() == (True, {"alive": True, "deadWorkers": []})
    loop.start_worker("etcd-watch", lambda: 1 / 0).join(timeout=5)
    loop.start_worker("link-watch", lambda: None).join(timeout=5)  # returned while the daemon runs
    assert loop.liveness() == (False, {"alive": False, "deadWorkers": ["etcd-watch", "link-watch"]})
    stalled = DaemonLoop(clock=lambda: now[0])
    now[0] += 31
    assert not stalled.liveness()[0]


def test_a_worker_that_ends_because_of_stop_is_not_dead():
    loop = DaemonLoop()
    loop.stop()
    loop.start_worker("etcd-watch", lambda: None).join(timeout=5)
    assert loop.liveness()[0]
