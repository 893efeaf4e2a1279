"""felix's /livez and /readyz, served with /metrics on port 9099."""

from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from policy.runtime import httpd


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


def serve(host: str, port: int, status: Status, liveness: httpd.Probe, registry: CollectorRegistry):
    def ready():
        ready = status.in_sync and status.programmed_revision > 0 and status.datastore == "ok"
        return ready, status.snapshot()

    return httpd.serve(host, port, {"/livez": liveness, "/readyz": ready}, registry)
