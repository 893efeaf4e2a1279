"""The seam at ExaBGP: one ExaBGP process, and the Unix socket its API bridge connects to.

Commands go one at a time and each waits for ExaBGP's acknowledgement ("done" or "error"):
ExaBGP answers a command it cannot parse before one it is still scheduling, so only one in
flight keeps answers and commands paired. Messages from ExaBGP (sessions, OPENs, updates)
go to a callback on the reader thread."""

import json
import logging
import queue
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

ACKS = {"done", "error", "shutdown"}


class ExaBGPError(Exception):
    pass


class CommandRefused(ExaBGPError):
    def __init__(self, command: str, answer: str):
        self.command, self.answer = command, answer
        super().__init__(f"ExaBGP answered {answer!r} to: {command[:120]}")


class ExaBGPProcess:
    def __init__(
        self,
        run_dir: Path,
        executable: str,
        on_message: Callable[[dict], None],
        on_gone: Callable[[], None],
        connect_timeout: float = 20.0,
        ack_timeout: float = 30.0,
    ):
        self.run_dir, self.executable = run_dir, executable
        self._on_message, self._on_gone = on_message, on_gone
        self.connect_timeout, self.ack_timeout = connect_timeout, ack_timeout
        self.config_path = run_dir / "exabgp.conf"
        self.socket_path = run_dir / "api.sock"
        self._proc: subprocess.Popen | None = None
        self._conn: socket.socket | None = None
        self._acks: queue.SimpleQueue = queue.SimpleQueue()

    def bridge_command(self) -> str:
        return f"{sys.executable} -m bgp.bridge {self.socket_path}"

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None and self._conn is not None

    def start(self, config: str, env: dict[str, str]) -> None:
        """Write the configuration, start ExaBGP and wait until its bridge has connected."""
        self.stop()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(config)
        self.socket_path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.socket_path))
            listener.listen(1)
            listener.settimeout(self.connect_timeout)
            executable = shutil.which(self.executable) or self.executable
            # ExaBGP must not outlive calyx-bgp (a new one could not bind port 179). setpriv sets
            # the parent-death signal: a preexec_fn would fork a process that has gRPC threads.
            self._proc = subprocess.Popen(
                ["setpriv", "--pdeathsig", "KILL", executable, str(self.config_path)],
                env=env,
                stdin=subprocess.DEVNULL,
                cwd=self.run_dir,
            )
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                self.stop()
                raise ExaBGPError(f"ExaBGP's API process did not connect within {self.connect_timeout}s") from None
        finally:
            listener.close()
        self._acks = queue.SimpleQueue()
        self._conn = conn
        threading.Thread(target=self._read, args=(conn, self._acks), name="exabgp-api", daemon=True).start()
        log.info("ExaBGP started (pid %d) with %s", self._proc.pid, self.config_path)

    def send(self, command: str) -> None:
        if not self.running():
            raise ExaBGPError("ExaBGP is not running")
        assert self._conn is not None  # running() implies start() connected
        try:
            self._conn.sendall(command.encode() + b"\n")
            answer = self._acks.get(timeout=self.ack_timeout)
        except OSError as exc:
            raise ExaBGPError(f"API socket: {exc}") from None
        except queue.Empty:
            raise ExaBGPError(f"no answer from ExaBGP within {self.ack_timeout}s") from None
        if answer != "done":
            raise CommandRefused(command, answer)

    def stop(self) -> None:
        """Kill ExaBGP without a NOTIFICATION, so peers keep our routes for the graceful-restart time."""
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait(timeout=10)
            self._proc = None

    def _read(self, conn: socket.socket, acks: queue.SimpleQueue) -> None:
        try:
            with conn.makefile("rb") as stream:
                for raw in stream:
                    line = raw.decode(errors="replace").strip()
                    if line in ACKS:
                        acks.put(line)
                    elif line.startswith("{"):
                        try:
                            self._on_message(json.loads(line))
                        except ValueError:
                            log.warning("unreadable message from ExaBGP: %.200s", line)
        except OSError:
            pass
        acks.put("gone")
        if conn is self._conn:
            self._on_gone()
