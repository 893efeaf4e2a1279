"""Garbage collection around bulk work.

The first full sync builds the agent's whole state at once: tens of thousands of objects, none
of them garbage.  Python's collector would scan that growing heap again and again (about 40% of
a cold compile); pausing it for the bulk step and then freezing what was built keeps later
collections proportional to what changes.  Afterwards the C heap's free pages (the bulk
step's transient text, libnftables' parse) are handed back to the kernel with malloc_trim."""

import contextlib
import ctypes
import gc

_LIBC = ctypes.CDLL(None)


class Pause:
    """Collection paused across several steps (felix's first sync: every page of the list, then
    the programming), settled once at the end: one full pass, not one per page."""

    def __init__(self) -> None:
        self._was_enabled: bool | None = None  # None: not paused

    def start(self) -> None:
        if self._was_enabled is None:
            self._was_enabled = gc.isenabled()
            gc.disable()

    def finish(self) -> None:
        if self._was_enabled is None:
            return
        gc.collect()  # one full pass for whatever cycles the bulk step left behind
        gc.freeze()  # what exists now is long-lived state: keep it out of future collections
        if self._was_enabled:
            gc.enable()
        self._was_enabled = None
        if hasattr(_LIBC, "malloc_trim"):  # glibc
            _LIBC.malloc_trim(0)


@contextlib.contextmanager
def bulk_work():
    pause = Pause()
    pause.start()
    try:
        yield
    finally:
        pause.finish()
