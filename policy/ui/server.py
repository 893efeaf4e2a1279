"""calyx-ui's HTTP server (the standard library's): the page, its script and style, and the JSON
the script reads. Every answer forbids what the page does not need (no inline script, nothing
from elsewhere, no framing), and a Host that is a name other than localhost is refused, so a web
page elsewhere cannot read the matrix through DNS rebinding."""

import ipaddress
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from policy.ui.assets import PAGE, SCRIPT, STYLE
from policy.ui.board import FLOWS_LIMIT, Board

HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
STATIC = {
    "/": ("text/html; charset=utf-8", PAGE.encode()),
    "/ui.js": ("text/javascript; charset=utf-8", SCRIPT.encode()),
    "/ui.css": ("text/css; charset=utf-8", STYLE.encode()),
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


def host_allowed(host_header: str | None) -> bool:
    """An IP address or localhost (with any port); HTTP/1.0 without Host too."""
    if not host_header:
        return True
    name = urlsplit(f"//{host_header}").hostname or ""
    if name == "localhost":
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def answer(board: Board, path: str, host: str | None) -> tuple[int, str, bytes]:
    """(status, content type, body) for one GET: the whole routing, without sockets."""
    if not host_allowed(host):
        return 403, "text/plain; charset=utf-8", b"calyx-ui answers to its address or localhost only\n"
    url = urlsplit(path)
    if url.path in STATIC:
        return 200, *STATIC[url.path]
    if url.path == "/livez":
        return 200, "application/json", b'{"live": true}'
    if url.path == "/api/reachability":
        return 200, "application/json", json.dumps(board.reachability()).encode()
    if url.path == "/api/flows":
        query = parse_qs(url.query)
        try:
            since = int(query.get("since", ["0"])[-1])
            limit = int(query.get("limit", [str(FLOWS_LIMIT)])[-1])
        except ValueError:
            return 400, "application/json", b'{"error": "since and limit are integers"}'
        return 200, "application/json", json.dumps(board.flows(since, limit)).encode()
    return 404, "text/plain; charset=utf-8", b"not found\n"


def serve(board: Board, host: str, port: int) -> ThreadingHTTPServer:
    """Serve from a daemon thread; OSError when it cannot listen."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            code, content_type, body = answer(board, self.path, self.headers.get("Host"))
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in HEADERS.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # the page asks every second
            pass

    server = (_Server6 if ipaddress.ip_address(host).version == 6 else _Server)((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="calyx-ui", daemon=True).start()
    return server
