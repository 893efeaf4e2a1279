"""Servers and a parallel prober for reachability matrices, run inside workload namespaces.

python3 probe.py serve PORT...        TCP and UDP echo on each port (IPv4 and IPv6) until killed
python3 probe.py probe TIMEOUT JSON   JSON is [[addr, port, proto], ...]; print a JSON list of
                                      booleans: did the echo come back in time
python3 probe.py flow ADDR PORT SECONDS   a TCP connection every 20 ms for SECONDS; print
                                      "<attempts> <failures>"; an attempt fails as an
                                      application's would: refused, reset, or no answer
                                      within 3 s (one SYN retransmission), so a 2-core
                                      machine busy with the rest of the test does not
                                      count as a hole in the policy."""

import json
import socket
import sys
import threading
import time

FLOW_TIMEOUT = 3.0


def serve(ports: list[int]) -> None:
    for port in ports:
        tcp = socket.create_server(("::", port), family=socket.AF_INET6, dualstack_ipv6=True)
        threading.Thread(target=_tcp_loop, args=(tcp,), daemon=True).start()
        udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        udp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        udp.bind(("::", port))
        threading.Thread(target=_udp_loop, args=(udp,), daemon=True).start()
    threading.Event().wait()


def _tcp_loop(server: socket.socket) -> None:
    while True:
        conn, _ = server.accept()
        threading.Thread(target=_echo, args=(conn,), daemon=True).start()


def _echo(conn: socket.socket) -> None:
    with conn:
        conn.settimeout(5)
        try:
            conn.sendall(conn.recv(64))
        except OSError:
            pass


def _udp_loop(sock: socket.socket) -> None:
    while True:
        data, peer = sock.recvfrom(64)
        sock.sendto(data, peer)


def _probe(address: str, port: int, proto: str, timeout: float) -> bool:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    deadline = time.monotonic() + timeout
    try:
        if proto == "tcp":
            with socket.create_connection((address, port), timeout=timeout) as conn:
                conn.settimeout(max(0.05, deadline - time.monotonic()))
                conn.sendall(b"calyx")
                return conn.recv(64) == b"calyx"
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            while time.monotonic() < deadline:  # a few tries: the first may wait for ARP/ND
                sock.sendto(b"calyx", (address, port))
                sock.settimeout(min(0.3, max(0.01, deadline - time.monotonic())))
                try:
                    if sock.recv(64) == b"calyx":
                        return True
                except TimeoutError:
                    continue
            return False
    except OSError:
        return False


def probe(targets: list, timeout: float) -> list[bool]:
    results = [False] * len(targets)

    def run(i: int, target: list) -> None:
        results[i] = _probe(target[0], int(target[1]), target[2], timeout)

    threads = [threading.Thread(target=run, args=(i, t)) for i, t in enumerate(targets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def flow(address: str, port: int, seconds: float) -> str:
    attempts = failures = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        attempts += 1
        failures += not _probe(address, port, "tcp", FLOW_TIMEOUT)
        time.sleep(0.02)
    return f"{attempts} {failures}"


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve([int(p) for p in sys.argv[2:]])
    elif sys.argv[1] == "flow":
        print(flow(sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
    else:
        print(json.dumps(probe(json.loads(sys.argv[3]), float(sys.argv[2]))))
