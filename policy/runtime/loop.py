"""The owning loop both daemons run.

Worker threads (the etcd watch, link events, ExaBGP's reader) only enqueue; one thread takes
what is queued and hands it to the daemon, then lets it reconcile. Each item and each
reconcile runs inside a catch boundary: an unexpected error is logged, counted and retried at
the next turn, so no input can end the loop. A worker that dies is logged and fails /livez.
Stopping puts a sentinel on the queue, so shutdown does not wait for a timeout."""

import logging
import threading
import time
from collections.abc import Callable
from queue import Empty, SimpleQueue
from typing import Protocol

log = logging.getLogger(__name__)

TICK = 1.0  # the loop turns at least this often, so /livez sees it alive
RETRY_INTERVAL = 1.0  # after an unexpected error, the next reconcile waits at most this long
LIVENESS_TIMEOUT = 30.0
_STOP = object()


class Reconciler(Protocol):
    """What a daemon gives the loop."""

    def handle(self, item: object) -> None:
        """Take one queued item into the held state."""

    def reconcile(self) -> None:
        """Bring the world in line with the held state."""

    def wait_time(self) -> float:
        """Seconds until the daemon has something to do without new input."""


class DaemonLoop:
    def __init__(
        self, on_error: Callable[[str], None] = lambda stage: None, clock: Callable[[], float] = time.monotonic
    ):
        self.stop_event = threading.Event()
        self._queue: SimpleQueue = SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._dead: list[str] = []
        self._on_error, self._clock = on_error, clock
        self._retry_at: float | None = None
        self.last_tick = clock()

    def put(self, item: object) -> None:
        self._queue.put(item)

    def stop(self) -> None:
        """Safe from a signal handler: the loop wakes at once."""
        self.stop_event.set()
        self._queue.put(_STOP)

    def start_worker(self, name: str, target: Callable[..., None], *args: object) -> threading.Thread:
        thread = threading.Thread(target=self._supervised, args=(name, target, args), name=name, daemon=True)
        self._workers.append(thread)
        thread.start()
        return thread

    def _supervised(self, name: str, target: Callable[..., None], args: tuple) -> None:
        try:
            target(*args)
        except BaseException:  # logged here, with its traceback, and seen by /livez
            log.exception("worker %s died", name)
            self._dead.append(name)
            return
        if not self.stop_event.is_set():
            log.error("worker %s ended while the daemon runs", name)
            self._dead.append(name)

    def liveness(self) -> tuple[bool, dict]:
        """/livez: the loop turned recently and no worker has died."""
        turning = self._clock() - self.last_tick < LIVENESS_TIMEOUT
        dead = list(self._dead)
        return turning and not dead, {"alive": turning and not dead, "deadWorkers": dead}

    def run(self, daemon: Reconciler) -> None:
        while self.turn(daemon, daemon.wait_time()):
            pass

    def turn(self, daemon: Reconciler, timeout: float) -> bool:
        """Take what is queued (waiting up to timeout for the first item), then reconcile;
        False once stopped."""
        self.last_tick = self._clock()
        if self._retry_at is not None:
            timeout = min(timeout, self._retry_at - self.last_tick)
        for item in self._take(max(0.0, min(timeout, TICK))):
            if item is _STOP or self.stop_event.is_set():
                return False
            try:
                daemon.handle(item)
            except Exception:  # one bad input must not end the daemon
                log.exception("handling %s failed; skipped", type(item).__name__)
                self._on_error("handle")
        if self.stop_event.is_set():
            return False
        if self._retry_at is not None and self._clock() < self._retry_at:
            return True
        self._retry_at = None
        try:
            daemon.reconcile()
        except Exception:  # what is programmed stays; the next turn tries again
            log.exception("reconciling failed; retrying in %.0fs", RETRY_INTERVAL)
            self._on_error("reconcile")
            self._retry_at = self._clock() + RETRY_INTERVAL
        return True

    def _take(self, timeout: float) -> list:
        try:
            items = [self._queue.get(timeout=timeout)]
        except Empty:
            return []
        try:
            while items[-1] is not _STOP:
                items.append(self._queue.get_nowait())
        except Empty:
            pass
        return items

    def join(self, timeout: float = 5.0) -> None:
        for thread in self._workers:
            thread.join(timeout)
