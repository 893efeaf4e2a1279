"""The canonical-IPv4-/32 shortcut of endpoint address validation gives exactly what the
ipaddress round trip gives: the same text for every accepted value, an error for every other."""

import ipaddress
import random

import pytest

from policy.model.fields import _ip_network


def by_ipaddress(value: str) -> str | None:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError:
        return None


def ours(value: str) -> str | None:
    try:
        return _ip_network(value)
    except ValueError:
        return None


EDGES = [
    "0.0.0.0/32", "255.255.255.255/32", "10.0.0.1/32", "10.0.0.1", "010.0.0.1/32", "10.0.0.01/32",
    "256.0.0.1/32", "10.0.0.1/032", "10.0.0.1/33", "10.0.0.0/24", "10.0.0.1/24", "10.0.0.1/32 ",
    " 10.0.0.1/32", "10.0.0/32", "10.0.0.1.1/32", "1\u0663.0.0.1/32", "10.0.0.1/3\u0662", "fd00::1/128",
    "fd00:0::1/128", "::ffff:10.0.0.1/128", "10.0.0.1/+32", "10.0.0.1//32", "", "/32", "10.0.0.1\n/32",
    "10.0.0.1/32\n", "199.250.249.200/32", "1.2.3.4/3",
]  # fmt: skip


@pytest.mark.parametrize("value", EDGES)
def test_edge_cases_agree_with_ipaddress(value):
    assert ours(value) == by_ipaddress(value)


def test_random_addresses_agree_with_ipaddress():
    rng = random.Random(15)
    pieces = ["0", "1", "9", "10", "00", "01", "99", "100", "199", "249", "250", "255", "256", "300", "1000"]
    for _ in range(5000):
        octets = ".".join(rng.choice(pieces) for _ in range(rng.choice((3, 4, 4, 4, 5))))
        value = octets + rng.choice(["/32", "/32", "/31", "/0", "/032", "", "/3"])
        assert ours(value) == by_ipaddress(value), value
