"""Kubernetes Events for objects Calyx could not take, where `kubectl describe` shows them.

The loop only enqueues (bounded, never blocking); a worker posts. The same problem of the same
object is reported once, not at every resync."""

import datetime
import logging
import queue
import threading
from collections.abc import Callable

from policy.kube.client import KubeError, KubeSource
from policy.kube.convert import BadObject, ObjectRef

log = logging.getLogger(__name__)

QUEUE_SIZE = 1000
REASON = "CalyxConversionFailed"
COMPONENT = "calyx-kube-controllers"
_API_VERSIONS = {"NetworkPolicy": "networking.k8s.io/v1"}


def event_body(ref: ObjectRef, message: str, now: datetime.datetime) -> dict:
    """A core/v1 Event (Warning) on the object; cluster-scoped objects' events go to `default`."""
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    namespace = ref.namespace or "default"
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{ref.name}.", "namespace": namespace},
        "involvedObject": {
            "apiVersion": _API_VERSIONS.get(ref.kind, "v1"),
            "kind": ref.kind,
            "name": ref.name,
            **({"namespace": ref.namespace} if ref.namespace else {}),
            **({"uid": ref.uid} if ref.uid else {}),
        },
        "reason": REASON,
        "message": message[:1024],
        "type": "Warning",
        "source": {"component": COMPONENT},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


class EventRecorder:
    def __init__(
        self,
        source: KubeSource,
        on_posted: Callable[[], None] = lambda: None,
        on_dropped: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ):
        self._source, self._on_posted, self._on_dropped, self._clock = source, on_posted, on_dropped, clock
        self._queue: queue.Queue = queue.Queue(QUEUE_SIZE)
        self._reported: dict[tuple[str, str | None, str], str] = {}  # object -> the problem reported

    def report(self, ref: ObjectRef, problem: BadObject) -> None:
        """From the loop: enqueue unless this object's problem was reported already."""
        key = (ref.kind, ref.namespace, ref.name)
        if self._reported.get(key) == problem.problem:
            return
        self._reported[key] = problem.problem
        try:
            self._queue.put_nowait(event_body(ref, f"not enforced as written: {problem.problem}", self._clock()))
        except queue.Full:
            self._on_dropped()

    def resolved(self, ref: ObjectRef) -> None:
        """The object converts now (or is gone): a new problem with it is reported again."""
        self._reported.pop((ref.kind, ref.namespace, ref.name), None)

    def run(self, stop: threading.Event) -> None:
        """The worker: post until stop is set."""
        while not stop.is_set():
            try:
                body = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self._source.create_event(body["metadata"]["namespace"], body)
                self._on_posted()
            except KubeError as exc:
                log.warning("could not report an Event for %s: %s", body["involvedObject"]["name"], exc)
                self._on_dropped()
