"""/livez, /readyz and /metrics on one small HTTP server (port 9099)."""

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

LIVENESS_TIMEOUT = 30.0


@dataclass
class Status:
    """What the main loop reports; read by HTTP threads, written by the loop only."""

    in_sync: bool = False
    programmed_revision: int = 0
    pending: bool = False
    last_tick: float = field(default_factory=time.monotonic)

    def snapshot(self) -> dict:
        return {"inSync": self.in_sync, "programmedRevision": self.programmed_revision, "pending": self.pending}


def serve(host: str, port: int, status: Status, registry: CollectorRegistry) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            if self.path == "/livez":
                alive = time.monotonic() - status.last_tick < LIVENESS_TIMEOUT
                self._reply(200 if alive else 503, "application/json", json.dumps({"alive": alive}).encode())
            elif self.path == "/readyz":
                ready = status.in_sync and status.programmed_revision > 0
                self._reply(200 if ready else 503, "application/json", json.dumps(status.snapshot()).encode())
            elif self.path == "/metrics":
                self._reply(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            else:
                self._reply(404, "text/plain", b"not found\n")

        def _reply(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # probes every few seconds would drown the log
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
