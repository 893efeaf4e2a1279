"""Daemons started by the lab: tracked by pid, logged to files, always stopped by pid."""

import subprocess
import time
from pathlib import Path


class Daemon:
    def __init__(self, name: str, cmd: list[str], log_path: Path, env: dict | None = None):
        self.name, self.cmd, self.log_path, self.env = name, cmd, log_path, env
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Daemon":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        if self.running():
            self.proc.kill()
            self.proc.wait(timeout=10)

    def terminate(self) -> None:
        """SIGTERM without waiting: many daemons told at once stop in parallel."""
        if self.running():
            self.proc.terminate()

    def stop(self, grace: float = 5.0) -> None:
        if not self.running():
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill9()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def wait_for(predicate, timeout: float, interval: float = 0.05, what="condition"):
    """Poll predicate until it returns a truthy value or the time is up (then raise).

    what: a description, or a callable giving one (evaluated on failure, to show the state)."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:
            last_error = exc
        time.sleep(interval)
    what = what() if callable(what) else what
    raise TimeoutError(
        f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_error})" if last_error else "")
    )


def rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def with_descendants(pid: int, limit: int = 1000) -> list[int]:
    """pid and every process below it (a daemon's children: calyx-bgp's ExaBGP), from the
    kernel's children lists; a process gone meanwhile is skipped."""
    found, todo = [], [pid]
    while todo and len(found) < limit:
        current = todo.pop()
        found.append(current)
        for children in Path(f"/proc/{current}/task").glob("*/children"):  # each thread's own
            try:
                todo.extend(int(child) for child in children.read_text().split())
            except OSError:
                continue
    return found
