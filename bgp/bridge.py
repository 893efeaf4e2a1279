"""The helper ExaBGP runs as its API process: it joins ExaBGP's stdin/stdout to calyx-bgp's
Unix socket, byte for byte, and exits when either side closes (ExaBGP then exits too, and
calyx-bgp starts a fresh one)."""

import os
import socket
import sys
import threading


def _pump(read, write) -> None:
    try:
        while chunk := read():
            write(chunk)
    except OSError:
        pass


def main(path: str) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    stdout = sys.stdout.fileno()

    def to_stdout(chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            view = view[os.write(stdout, view) :]

    def from_exabgp() -> None:
        _pump(lambda: os.read(0, 65536), sock.sendall)
        os._exit(0)  # ExaBGP gone: closing the socket tells calyx-bgp at once

    threading.Thread(target=from_exabgp, daemon=True).start()
    _pump(lambda: sock.recv(65536), to_stdout)  # calyx-bgp gone: end, and ExaBGP follows


if __name__ == "__main__":
    main(sys.argv[1])
