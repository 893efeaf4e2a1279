"""Files that hold secrets: written 0600 in a 0700 directory, and key files checked for modes
that let others read them."""

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def private_dir(path: Path) -> None:
    """Create `path` (and missing parents) and make `path` itself 0700, also when it existed."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, PRIVATE_DIR_MODE)


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` with mode 0600, atomically (see write_atomic)."""
    write_atomic(path, text.encode(), PRIVATE_FILE_MODE)


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to `path` with `mode` by temp file and rename in the same directory: a reader
    sees the old file or the new one, and the content never has a wider mode, not even for an
    instant (the mode is set on the temp file whatever the umask)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb", closefd=False) as stream:
            stream.write(data)
            stream.flush()
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def exposed_mode(path: str | Path) -> int | None:
    """The permission bits of `path` when group or others may read or write it, else None
    (also when it cannot be read: opening it reports that)."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None
    return mode if mode & 0o077 else None


def warn_if_exposed(path: str | Path | None, what: str) -> bool:
    """Log a warning naming the file and its mode when group or others may read it; True if so."""
    if not path:
        return False
    mode = exposed_mode(path)
    if mode is None:
        return False
    log.warning(
        "%s %s has mode %04o: group or others have access to it; make it 0600 (chmod 600 %s)",
        what,
        path,
        mode,
        path,
    )
    return True
