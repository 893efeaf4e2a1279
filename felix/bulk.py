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


@contextlib.contextmanager
def bulk_work():
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.collect()  # one full pass for whatever cycles the bulk step left behind
        gc.freeze()  # what exists now is long-lived state: keep it out of future collections
        if enabled:
            gc.enable()
        if hasattr(_LIBC, "malloc_trim"):  # glibc
            _LIBC.malloc_trim(0)
