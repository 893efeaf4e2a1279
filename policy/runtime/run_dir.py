"""One process per run directory: two calyx-bgp (or felix) processes given the same directory
would overwrite each other's files and fight over the kernel, so the second is refused."""

import fcntl
import os
from pathlib import Path
from typing import IO

LOCK_NAME = "lock"


class RunDirBusy(Exception):
    pass


def hold_run_dir(path: Path) -> IO[str]:
    """Create `path` (0700) and lock it for the life of this process; keep the returned file open.

    The lock is the kernel's (flock), so it is released however the process ends: a stale
    lock file left by a crash locks nothing."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    lock = open(path / LOCK_NAME, "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "unknown"
        lock.close()
        raise RunDirBusy(
            f"run directory {path} is in use by another process (pid {holder}): give each instance its own --run-dir"
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock
