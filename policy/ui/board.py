"""What calyx-ui shows, kept current by one thread and read by the HTTP threads: the reachability
matrix of etcd's state (the same `compute` as `policyctl reachability`, recomputed only when the
resource tree changed) and the denied flows polled from every node's felix (`policyctl flows`'
poll), named by endpoint and merged into a bounded ring.

A failure (etcd down, a felix not answering) is shown, not hidden: the last good matrix stays
with the error and the time it was computed; a node that does not answer is listed as failing."""

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import click

from policy.ctl import flows as flow_log
from policy.ctl.errors import run_datastore
from policy.ctl.explain import read_state
from policy.ctl.reachability import COLOURS, MEANING, Matrix, chosen_peers, compute, short
from policy.datastore.keys import resources_root
from policy.datastore.store import ResourceStore
from policy.evaluate.evaluator import Evaluator
from policy.model.resources import Node, WorkloadEndpoint

FLOWS_KEPT = 1000  # merged flow records held for the page
FLOWS_LIMIT = 500  # records per /api/flows answer


@dataclass(frozen=True)
class Question:
    """The matrix asked for: `policyctl reachability`'s options."""

    namespace: str | None = None
    selector: str | None = None
    port: int | None = None
    protocol: str | None = None
    network_sets: bool = False
    ipv6: bool = False
    max_checks: int = 2_000_000

    def matrix(self, model: Evaluator) -> Matrix:
        return compute(
            model,
            self.namespace,
            self.selector,
            self.port,
            self.protocol,
            self.network_sets,
            self.ipv6,
            self.max_checks,
        )

    def endpoints(self, model: Evaluator) -> set[str] | None:
        """With -n or -l, the endpoints (namespace/name) the matrix holds; None: every one."""
        if not self.namespace and not self.selector:
            return None
        peers = chosen_peers(model, 6 if self.ipv6 else 4, self.namespace, self.selector, False)
        return {short(peer.description) for peer in peers}


class Board:
    def __init__(
        self,
        store: ResourceStore,
        question: Question,
        fetch: flow_log.FetchJson = flow_log.fetch_json,
        felix: tuple[str, ...] = (),
        felix_port: int = flow_log.FELIX_PORT,
        clock: Callable[[], float] = time.time,
    ):
        """felix: felix URLs to poll instead of the Node resources' addresses."""
        self.store, self.question, self.fetch, self.clock = store, question, fetch, clock
        self.felix_port = felix_port
        self.fixed = [flow_log.Source(url.split("://", 1)[-1], url.rstrip("/")) for url in felix]
        self.sources: list[flow_log.Source] = list(self.fixed)
        self.names: dict[str, str] = {}  # address -> namespace/name
        self.shown: set[str] | None = None  # with -n or -l: the endpoints of the matrix
        self.errors: dict[str, str] = {}  # node -> why its felix could not be read, while it fails
        self._why: dict[str, str] = {}  # node -> the last failure poll reported
        self._seen: tuple[int, int] | None = None  # (keys, newest revision) of the tree last read
        self._matrix: dict = {"error": "not read yet", "names": [], "cells": []}
        self._ring: deque[dict] = deque(maxlen=FLOWS_KEPT)
        self._id = 0
        self._lock = threading.Lock()

    # -- the thread ----------------------------------------------------------------------
    def run(self, stop: threading.Event, interval: float, refresh: float) -> None:
        """Poll the felixes every `interval` s and look for a changed tree every `refresh` s."""
        next_refresh = 0.0
        while not stop.is_set():
            if time.monotonic() >= next_refresh:
                self.refresh()
                next_refresh = time.monotonic() + refresh
            self.poll()
            stop.wait(interval)

    def refresh(self) -> None:
        """Re-read etcd's state when the resource tree changed: the names and nodes the flows
        need, then the matrix (whose failure leaves the flows going)."""
        try:
            seen = run_datastore(lambda: self.store.kv.prefix_state(resources_root(self.store.prefix)))
            if seen == self._seen:
                return
            state = read_state(self.store)
        except click.ClickException as exc:
            return self._not_current(exc)
        model = state.evaluator()
        with self._lock:
            self._seen = seen
            self.names = flow_log.endpoint_names(r for r in state.resources if isinstance(r, WorkloadEndpoint))
            self.shown = self.question.endpoints(model)
            if not self.fixed:
                self.sources = self._node_sources([r for r in state.resources if isinstance(r, Node)])
        try:
            matrix = self.question.matrix(model)
        except click.ClickException as exc:
            return self._not_current(exc)
        answer = {
            "what": matrix.what,
            "names": [short(name) for name in matrix.names],
            "cells": matrix.grid,
            "legend": [{"mark": mark, "meaning": MEANING[mark], "colour": COLOURS[mark]} for mark in MEANING],
            "computed": round(self.clock(), 3),
            "error": None,
        }
        with self._lock:
            self._matrix = answer

    def _not_current(self, exc: click.ClickException) -> None:
        error = exc.format_message()
        if error != self._matrix["error"]:
            click.echo(f"warning: the matrix is not current: {error}", err=True)
        with self._lock:
            self._matrix = {**self._matrix, "error": error}

    def _node_sources(self, nodes: list[Node]) -> list[flow_log.Source]:
        """A Source per Node with an address; a node already polled keeps its place in the log."""
        held = {(s.node, s.url): s for s in self.sources}
        found = []
        for node in sorted(nodes, key=lambda n: n.name):
            url = flow_log.node_url(node, self.felix_port)
            if url:
                found.append(held.get((node.name, url)) or flow_log.Source(node.name, url))
        return found

    def poll(self) -> None:
        records = flow_log.poll(self.sources, self.fetch, self._warn) if self.sources else []
        with self._lock:
            self.errors = {s.node: self._why.get(s.node, "") for s in self.sources if s.failing}
            for record in records:
                record = flow_log.annotate(record, self.names)
                ends = {record.get("sourceEndpoint"), record.get("destinationEndpoint")}
                if self.shown is not None and not ends & self.shown:
                    continue
                self._id += 1
                record["id"] = self._id
                record["decidedBy"] = flow_log.origin_text(
                    str(record.get("policy", "")), record.get("rule"), str(record.get("direction", ""))
                )
                self._ring.append(record)

    def _warn(self, message: str) -> None:
        """What poll reports (a node failing, answering again, restarted): logged, and kept per
        node for the page while that node fails."""
        click.echo(f"warning: {message}", err=True)
        for source in self.sources:
            if message.startswith(f"node {source.node}: "):
                self._why[source.node] = message.removeprefix(f"node {source.node}: ")

    # -- what the HTTP threads read ------------------------------------------------------
    def reachability(self) -> dict:
        with self._lock:
            return self._matrix

    def flows(self, since: int, limit: int = FLOWS_LIMIT) -> dict:
        """The records after `since` (oldest first, at most limit), the newest id, the nodes."""
        with self._lock:
            records = [r for r in self._ring if r["id"] > since][: max(0, min(limit, FLOWS_LIMIT))]
            nodes = [
                {"node": s.node, "url": s.url, "ok": s.node not in self.errors, "error": self.errors.get(s.node)}
                for s in self.sources
            ]
            return {"last": self._id, "flows": records, "nodes": nodes}
