"""The seam at ExaBGP: one ExaBGP process, and the Unix socket its API bridge connects to.

Commands go one at a time and each waits for ExaBGP's acknowledgement ("done" or "error"):
ExaBGP answers a command it cannot parse before one it is still scheduling, so only one in
flight keeps answers and commands paired. Messages from ExaBGP (sessions, OPENs, updates)
go to a callback on the reader thread.

The configuration holds the peers' MD5 passwords: it is written 0600 in a 0700 run directory,
and ExaBGP's own output (which dumps the configuration at debug level) reaches calyx-bgp's log
line by line through the `exabgp` logger with every password redacted."""

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
from typing import IO

from bgp.exabgp_config import config_secrets, redact
from policy.runtime.private_files import private_dir, write_private

log = logging.getLogger(__name__)
output_log = logging.getLogger("exabgp")  # ExaBGP's own lines, redacted

ACKS = {"done", "error", "shutdown"}
MAX_ANSWER_LINES = 10_000  # of one command's text answer; the rest is dropped


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
        self._text: list[str] = []  # the answer's text lines to the command in flight

    def bridge_command(self) -> str:
        return f"{sys.executable} -m bgp.bridge {self.socket_path}"

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None and self._conn is not None

    def start(self, config: str, env: dict[str, str]) -> None:
        """Write the configuration, start ExaBGP and wait until its bridge has connected."""
        self.stop()
        private_dir(self.run_dir)
        write_private(self.config_path, config)
        secrets = config_secrets(config)
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
                env={**env, "PYTHONUNBUFFERED": "1"},  # its lines reach the log as they are written
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=self.run_dir,
            )
            assert self._proc.stdout is not None
            threading.Thread(
                target=relay_output, args=(self._proc.stdout, secrets), name="exabgp-output", daemon=True
            ).start()
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
        self.query(command)

    def query(self, command: str) -> list[str]:
        """Send one command; the text lines ExaBGP wrote before acknowledging it."""
        if not self.running():
            raise ExaBGPError("ExaBGP is not running")
        assert self._conn is not None  # running() implies start() connected
        self._text = []
        try:
            self._conn.sendall(command.encode() + b"\n")
            answer = self._acks.get(timeout=self.ack_timeout)
        except OSError as exc:
            raise ExaBGPError(f"API socket: {exc}") from None
        except queue.Empty:
            raise ExaBGPError(f"no answer from ExaBGP within {self.ack_timeout}s") from None
        if answer != "done":
            raise CommandRefused(command, answer)
        return self._text

    def reload(self, config: str) -> None:
        """Rewrite the configuration and have ExaBGP re-read it: peers added or removed, the
        sessions of the others untouched. ExaBGP applies it at a later turn of its loop."""
        write_private(self.config_path, config)
        self.send("reload")

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
                    elif len(self._text) < MAX_ANSWER_LINES:
                        self._text.append(line)
        except OSError:
            pass
        acks.put("gone")
        if conn is self._conn:
            self._on_gone()


def relay_output(stream: IO[bytes], secrets: frozenset[str] = frozenset()) -> None:
    """Log each line ExaBGP writes, passwords redacted, until it closes its output."""
    try:
        with stream:
            for raw in stream:
                line = raw.decode(errors="replace").rstrip()
                if line:
                    output_log.info("%s", redact(line, secrets))
    except Exception:  # a closed pipe on shutdown; nothing here may take the daemon down
        log.debug("ExaBGP output relay ended", exc_info=True)


class RedactPasswords(logging.Filter):
    """A handler filter: no log record leaves with an md5-password's value in it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True
