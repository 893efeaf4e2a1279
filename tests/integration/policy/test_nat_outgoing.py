"""IPPool natOutgoing with real packets (issue 9, item 10): a host on the fabric, outside every
pool, sees the node's address as the source of a natOutgoing pool's workload, and the
workload's own address once natOutgoing is off."""

import pytest

from policy.datastore.store import Ref, WriteMode
from policy.model.pools import IPPool
from tests.lab import netns
from tests.lab.processes import wait_for

pytestmark = pytest.mark.integration

HOST_LINK = 152  # the fabric host 198.18.152.2
PORT = 7000
# Answers each connection with the address it came from, then closes it.
WHO_AM_I = (
    "import socket\n"
    f"server = socket.create_server(('0.0.0.0', {PORT}))\n"
    "while True:\n"
    "    conn, peer = server.accept()\n"
    "    conn.sendall(peer[0].encode())\n"
    "    conn.close()\n"
)
ASK = f"import socket, sys; s = socket.create_connection((sys.argv[1], {PORT}), timeout=3); print(s.recv(64).decode())"


@pytest.fixture(scope="module")
def fabric_host(policy_model):
    lab = policy_model.lab
    host = lab.add_fabric_host(HOST_LINK)
    lab._daemon("who-am-i", ["ip", "netns", "exec", host, "python3", "-c", WHO_AM_I])
    wait_for(lambda: netns.in_ns(host, "ss", "-Hltn", f"sport = :{PORT}").stdout.strip(), timeout=10, what="who-am-i")
    return f"198.18.{HOST_LINK}.2"


def _pool(nat: bool) -> IPPool:
    return IPPool.model_validate(
        {"metadata": {"name": "lab-workloads"}, "spec": {"cidr": "198.19.0.0/16", "natOutgoing": nat}}
    )


def _source_seen(netpol, pod: str, address: str) -> str:
    out = netns.in_ns(netpol.pods[pod].netns, "python3", "-c", ASK, address, timeout=10)
    return out.stdout.strip()


def test_a_nat_outgoing_pool_leaves_with_the_nodes_address_and_without_it_with_its_own(netpol, fabric_host):
    pod = netpol.pods["x/a"]
    node_address = netpol.lab.nodes[pod.node].address
    store = netpol.lab.store
    try:
        netpol.wait(store.write([_pool(True)], WriteMode.APPLY))
        assert _source_seen(netpol, "x/a", fabric_host) == node_address
        assert netpol.matrix(80, "tcp")[("x/a", "y/b")]  # inside the pools: not masqueraded, still reached
        netpol.wait(store.write([_pool(False)], WriteMode.APPLY))
        assert _source_seen(netpol, "x/a", fabric_host) == pod.ip
    finally:
        netpol.wait(store.delete([Ref(IPPool, "lab-workloads")]))
    assert _source_seen(netpol, "x/a", fabric_host) == pod.ip
