"""calyx-cni-server: calyx-cni and calyx-ipam kept warm in the calyx-node pod (or beside felix
on bare metal), behind a unix socket the host's tiny C client talks to (felix/cni/wire.py).

Each connection is one plugin invocation: the same `invoke` and `CniPlugin.run` as the Python
executables, with calyx-ipam run in-process when `ipam.type` is calyx-ipam and any other IPAM
plugin executed from CNI_PATH as the spec says. A thread per request, at most --max-requests at
once (more are told to try again later); every request is logged with its outcome and time; a
client gets a CNI error object, never a traceback."""

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

import click

from felix.cni.config import DEFAULT_LOG_FILE, DEFAULT_SOCKET
from felix.cni.delegate import Delegate, plugin_answer, run_delegate
from felix.cni.main import LOG_FORMAT, Handler, _cni_handler, _ipam_handler, invoke
from felix.cni.protocol import INTERNAL, SUPPORTED_VERSIONS, TRY_AGAIN_LATER, CniError
from felix.cni.wire import Read, WireError, encode_answer, encode_request, read_answer, read_request
from policy.runtime.settings import finite, setting

log = logging.getLogger("calyx-cni.server")

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


def exchange(path: str, request: bytes, timeout: float) -> tuple[int, bytes]:
    """Send one request and read its answer. A server that turns the request away answers
    before reading it and closes, so a broken pipe while sending still has an answer to read
    (as the C client does)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(path)
        unsent: OSError | None = None
        try:
            conn.sendall(request)
        except (BrokenPipeError, ConnectionResetError) as exc:
            unsent = exc
        try:
            return read_answer(_read_exactly(conn))
        except (OSError, WireError):
            if unsent is not None:  # no answer either: the failed send is what to report
                raise unsent from None
            raise


def probe(path: str, timeout: float) -> str | None:
    """A VERSION request through the socket (the probe of the calyx-node pod): None when the
    server answered it, else what went wrong."""
    request = encode_request("calyx-cni", {"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "1.0.0"}')
    try:
        code, stdout = exchange(path, request, timeout)
    except (OSError, WireError) as exc:
        return f"no answer on {path}: {exc}"
    if code != 0 or "supportedVersions" not in json.loads(stdout or b"{}"):
        return f"{path} answered VERSION with exit {code}: {stdout[:200]!r}"
    return None


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@setting("--socket", "socket_path", envvar="CALYX_CNI_SOCKET", default=DEFAULT_SOCKET, show_default=True,
         help="The unix socket the host's calyx-cni and calyx-ipam connect to.")  # fmt: skip
@setting("--log-file", envvar="CALYX_CNI_SERVER_LOG_FILE", default=DEFAULT_LOG_FILE, show_default=True,
         help="'-' for stderr.")  # fmt: skip
@setting("--log-level", envvar="CALYX_CNI_SERVER_LOG_LEVEL", default="info", show_default=True,
         type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))  # fmt: skip
@setting("--max-requests", envvar="CALYX_CNI_SERVER_MAX_REQUESTS", default=64, show_default=True,
         type=click.IntRange(1, 4096), help="Requests served at once; more are told to try again later.")  # fmt: skip
@setting("--read-timeout", envvar="CALYX_CNI_SERVER_READ_TIMEOUT", default=10.0, show_default=True,
         type=click.FloatRange(0, 600, min_open=True), callback=finite,
         help="Seconds to read a request or send an answer.")  # fmt: skip
@click.option("--check", is_flag=True, help="Ask the running server for VERSION and exit 0 if it answers (a probe).")
def cli(socket_path: str, log_file: str, log_level: str, max_requests: int, read_timeout: float, check: bool):
    """calyx-cni-server: the CNI plugins kept warm behind a unix socket."""
    if check:
        problem = probe(socket_path, read_timeout)
        if problem:
            raise click.ClickException(problem)
        click.echo(f"calyx-cni-server answers on {socket_path}")
        return
    _log_to(log_file, log_level.upper())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    try:
        serve(CniServer(), socket_path, max_requests, read_timeout, stop)
    except OSError as exc:
        log.error("cannot serve on %s: %s", socket_path, exc)
        raise click.ClickException(f"cannot serve on {socket_path}: {exc}") from None


def main() -> None:
    cli(prog_name="calyx-cni-server")


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
