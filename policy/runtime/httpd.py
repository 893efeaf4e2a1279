"""The small HTTP server every Calyx daemon runs: probes as JSON, and /metrics."""

import errno
import ipaddress
import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

Probe = Callable[[], tuple[bool, dict]]  # -> (healthy, body); unhealthy answers 503
Page = Callable[[dict[str, list[str]]], tuple[int, str, bytes]]  # query -> (status, content type, body)


_HINTS = {
    errno.EADDRINUSE: " (another process listens on that port: stop it or choose another --health-port)",
    errno.EADDRNOTAVAIL: " (no interface of this host has that address: check --health-host)",
}


class ServeError(Exception):
    """The server cannot listen (the port is taken, the address is not this host's, ...)."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog is 5: 20 CNI ADDs polling /readyz at once overflowed it, and
    # each dropped SYN cost its ADD a 1 s retransmit (tests/bench/bench_cni.py).
    request_queue_size = 128


class _Server6(_Server):
    address_family = socket.AF_INET6


def serve(
    host: str, port: int, probes: dict[str, Probe], registry: CollectorRegistry, pages: dict[str, Page] | None = None
) -> ThreadingHTTPServer:
    """Serve the probes, /metrics and pages (paths with a query string) on host:port from a daemon
    thread; ServeError if it cannot listen."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            url = urlsplit(self.path)
            if pages and url.path in pages:
                self._reply(*pages[url.path](parse_qs(url.query)))
            elif self.path in probes:
                healthy, body = probes[self.path]()
                self._reply(200 if healthy else 503, "application/json", json.dumps(body).encode())
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

    try:
        ipv6 = ipaddress.ip_address(host).version == 6
    except ValueError:
        ipv6 = False  # a name: left to the resolver
    try:
        server = (_Server6 if ipv6 else _Server)((host, port), Handler)
    except OSError as exc:  # EADDRINUSE, EADDRNOTAVAIL, EACCES, a name that does not resolve
        where = f"[{host}]:{port}" if ipv6 else f"{host}:{port}"
        hint = _HINTS.get(exc.errno or 0, "")
        raise ServeError(f"cannot serve /livez, /readyz and /metrics on {where}: {exc.strerror or exc}{hint}") from None
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
