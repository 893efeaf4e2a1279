"""A scratch network namespace with a thread living in it, so libnftables can be driven there
directly while this process stays in its own namespace."""

import concurrent.futures
import ctypes
import os
import secrets

from tests.lab import netns

CLONE_NEWNET = 0x40000000


class ScratchNamespace:
    def __init__(self, tag: str = "cxscratch", existing: str | None = None):
        """A new namespace, or with `existing` a thread in a namespace someone else owns."""
        self.name, self._owned = existing or f"{tag}-{secrets.token_hex(3)}", existing is None
        if self._owned:
            netns.add(self.name)
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, initializer=self._enter)

    def _enter(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns failed")
        finally:
            os.close(fd)

    def call(self, function, *args, timeout: float = 120):
        """Run function(*args) on the thread inside the namespace (sockets it opens live there)."""
        return self._executor.submit(function, *args).result(timeout=timeout)

    def nft(self, *args: str) -> str:
        return netns.in_ns(self.name, "nft", *args).stdout

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        if self._owned:
            netns.remove(self.name)
