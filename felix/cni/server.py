"""calyx-cni-server: calyx-cni and calyx-ipam kept warm in the calyx-node pod (or beside felix
on bare metal), behind a unix socket the host's tiny C client talks to (felix/cni/wire.py).

Each connection is one plugin invocation: the same `invoke` and `CniPlugin.run` as the Python
executables, with calyx-ipam run in-process when `ipam.type` is calyx-ipam and any other IPAM
plugin executed from CNI_PATH as the spec says. A thread per request, at most --max-requests at
once (more are told to try again later); every request is logged with its outcome and time; a
client gets a CNI error object, never a traceback."""

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from felix.cni.config import DEFAULT_LOG_FILE
from felix.cni.delegate import Delegate, plugin_answer, run_delegate
from felix.cni.main import LOG_FORMAT, Handler, _cni_handler, _ipam_handler, invoke
from felix.cni.protocol import INTERNAL, SUPPORTED_VERSIONS, TRY_AGAIN_LATER, CniError
from felix.cni.wire import Read, WireError, encode_answer, read_request

log = logging.getLogger("calyx-cni.server")

DEFAULT_SOCKET = "/run/calyx/cni.sock"
IN_PROCESS_IPAM = "calyx-ipam"


class CniServer:
    """Answers wire requests with the plugins' logic; knows nothing of sockets (tests call `answer`)."""

    def __init__(self, cni: Callable[[Delegate], Handler] = _cni_handler, ipam: Handler | None = None) -> None:
        """`cni` builds calyx-cni's handler around a delegate; tests pass fakes for both."""
        self.handlers: dict[str, Handler] = {"calyx-ipam": ipam or _ipam_handler(), "calyx-cni": cni(self.delegate)}

    def delegate(self, plugin_type: str, command: str, environ: Mapping[str, str], stdin: bytes) -> dict | None:
        """calyx-ipam in this process (the point of the server); anything else executed."""
        if plugin_type != IN_PROCESS_IPAM:
            return run_delegate(plugin_type, command, environ, stdin)
        output, code = self.run("calyx-ipam", {**environ, "CNI_COMMAND": command}, stdin)
        return plugin_answer(plugin_type, command, code, json.dumps(output).encode() if output else b"")

    def run(self, program: str, environ: Mapping[str, str], stdin: bytes) -> tuple[dict | None, int]:
        handler = self.handlers[program]
        return invoke(program, lambda: handler, environ, stdin, configure_logging=False)

    def answer(self, data: bytes) -> tuple[int, bytes]:
        """One request's bytes to (exit code, stdout): what `serve` sends back."""
        offset = 0

        def read(n: int) -> bytes:
            nonlocal offset
            offset += n
            return data[offset - n : offset]

        return self.answer_stream(read)

    def answer_stream(self, read: Read) -> tuple[int, bytes]:
        started = time.perf_counter()
        try:
            request = read_request(read)
        except WireError as exc:
            log.warning("bad request: %s", exc)
            return 1, _error(CniError(INTERNAL, f"calyx-cni-server: bad request: {exc}"))
        except OSError as exc:
            log.warning("cannot read a request: %s", exc)
            return 1, _error(CniError(TRY_AGAIN_LATER, f"calyx-cni-server: cannot read the request: {exc}"))
        env = request.environ
        output, code = self.run(request.program, env, request.stdin)
        log.info(
            "%s %s %s %s: exit %d in %.0f ms%s",
            request.program,
            env.get("CNI_COMMAND", "?"),
            env.get("CNI_CONTAINERID", ""),
            env.get("CNI_IFNAME", ""),
            code,
            (time.perf_counter() - started) * 1000,
            f" ({output.get('msg')})" if code and output else "",
        )
        return code, (json.dumps(output) + "\n").encode() if output is not None else b""


def _error(exc: CniError) -> bytes:
    return (json.dumps(exc.to_json(SUPPORTED_VERSIONS[-1])) + "\n").encode()


def _read_exactly(conn: socket.socket) -> Read:
    def read(n: int) -> bytes:
        chunks, left = [], n
        while left:
            chunk = conn.recv(min(left, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    return read


def serve(server: CniServer, path: str, max_requests: int, read_timeout: float, stop: threading.Event) -> None:
    """Accept until `stop`: a thread per connection, at most max_requests at once."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o600)  # root's runtime is the only client
    listener.listen(128)
    listener.settimeout(0.5)
    slots = threading.BoundedSemaphore(max_requests)
    log.info("listening on %s (at most %d requests at once)", path, max_requests)

    def handle(conn: socket.socket) -> None:
        try:
            conn.settimeout(read_timeout)
            code, stdout = server.answer_stream(_read_exactly(conn))
            conn.settimeout(read_timeout)
            conn.sendall(encode_answer(code, stdout))
        except OSError as exc:
            log.warning("client went away: %s", exc)
        finally:
            conn.close()
            slots.release()

    try:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            if not slots.acquire(blocking=False):
                log.warning("busy: %d requests running, one turned away", max_requests)
                busy = CniError(TRY_AGAIN_LATER, f"calyx-cni-server is busy ({max_requests} requests running)")
                try:
                    conn.settimeout(1.0)
                    conn.sendall(encode_answer(1, _error(busy)))
                except OSError:
                    pass
                conn.close()
                continue
            threading.Thread(target=handle, args=(conn,), daemon=True, name="cni-request").start()
    finally:
        listener.close()
        Path(path).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="calyx-cni-server", description=__doc__.splitlines()[0])
    parser.add_argument("--socket", default=DEFAULT_SOCKET, help="unix socket path (default %(default)s)")
    parser.add_argument("--log-file", default=DEFAULT_LOG_FILE, help="default %(default)s; '-' for stderr")
    parser.add_argument("--log-level", default="INFO", type=str.upper, choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--max-requests", type=int, default=64, help="requests served at once (default %(default)s)")
    parser.add_argument("--read-timeout", type=float, default=10.0, help="seconds to read a request or send an answer")
    args = parser.parse_args(argv)
    if args.max_requests < 1 or args.read_timeout <= 0:
        parser.error("--max-requests and --read-timeout must be positive")
    _log_to(args.log_file, args.log_level)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    try:
        serve(CniServer(), args.socket, args.max_requests, args.read_timeout, stop)
    except OSError as exc:
        log.error("cannot serve on %s: %s", args.socket, exc)
        sys.exit(f"calyx-cni-server: cannot serve on {args.socket}: {exc}")


def _log_to(path: str, level: str) -> None:
    if path == "-":
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(LOG_FORMAT.replace("%(name)s", "calyx-cni-server")))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel("WARNING")  # libraries (pyroute2, grpc) say only what is wrong
    for ours in ("calyx-cni", "felix", "policy"):
        logging.getLogger(ours).setLevel(level)
