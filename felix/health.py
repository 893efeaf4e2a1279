"""felix's /livez and /readyz, served with /metrics and the flow log (/flows) on port 9099."""

import json
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from felix.flows import FlowLog
from policy.runtime import httpd

FLOWS_LIMIT = 1000  # records per answer, at most


@dataclass
class Status:
    """What the main loop reports; read by HTTP threads, written by the loop only."""

    in_sync: bool = False
    programmed_revision: int = 0
    pending: bool = False
    datastore: str = "ok"  # or why the watch cannot deliver (etcd down, a re-list failing)

    def snapshot(self) -> dict:
        return {
            "inSync": self.in_sync,
            "programmedRevision": self.programmed_revision,
            "pending": self.pending,
            "datastore": self.datastore,
        }


def flows_page(flow_log: FlowLog) -> httpd.Page:
    """/flows?since=SEQ&limit=N: the denied flows recorded after SEQ, oldest first, as JSON."""

    def page(query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        try:
            since = int(query.get("since", ["0"])[-1])
            limit = min(int(query.get("limit", [str(FLOWS_LIMIT)])[-1]), FLOWS_LIMIT)
        except ValueError:
            return 400, "application/json", b'{"error": "since and limit are integers"}'
        return 200, "application/json", json.dumps(flow_log.since(since, max(limit, 0))).encode()

    return page


def serve(
    host: str,
    port: int,
    status: Status,
    liveness: httpd.Probe,
    registry: CollectorRegistry,
    flow_log: FlowLog | None = None,
):
    def ready():
        ready = status.in_sync and status.programmed_revision > 0 and status.datastore == "ok"
        return ready, status.snapshot()

    pages = {"/flows": flows_page(flow_log)} if flow_log else None
    return httpd.serve(host, port, {"/livez": liveness, "/readyz": ready}, registry, pages)
