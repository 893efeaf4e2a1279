"""A tiny TCP echo server and client, run inside workload namespaces with any python3.

    python3 echo.py serve PORT          serve until killed (IPv4 and IPv6)
    python3 echo.py connect ADDR PORT   exit 0 if the echo came back within 2 s"""

import socket
import sys
import threading


def serve(port: int) -> None:
    server = socket.create_server(("::", port), family=socket.AF_INET6, dualstack_ipv6=True)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=_echo, args=(conn,), daemon=True).start()


def _echo(conn: socket.socket) -> None:
    with conn:
        conn.settimeout(5)
        data = conn.recv(64)
        conn.sendall(data)


def connect(address: str, port: int) -> int:
    try:
        with socket.create_connection((address, port), timeout=2) as conn:
            conn.sendall(b"calyx")
            return 0 if conn.recv(64) == b"calyx" else 1
    except OSError:
        return 1


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    else:
        sys.exit(connect(sys.argv[2], int(sys.argv[3])))
