"""The shortcuts of validation that felix's start leans on give exactly what the slow paths
give: a canonical IPv4 /32 what the ipaddress round trip gives, a plain name what the name
regex says (the same text for every accepted value, an error for every other)."""

import ipaddress
import random

import pytest

from policy.model.fields import _DNS_SUBDOMAIN, _ip_network, _resource_name


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


def by_regex(value: str) -> str | None:
    return value if len(value) <= 253 and _DNS_SUBDOMAIN.match(value) else None


def name_ours(value: str) -> str | None:
    try:
        return _resource_name(value)
    except ValueError:
        return None


def test_resource_names_agree_with_the_regex():
    rng = random.Random(15)
    alphabet = "abz09-.AZ_\n \u00e9\u0663"
    values = ["a" * 253, "a" * 254, "1" * 254, "abc", "123", "a1", "A1", "abc\n", "", "-a", "a-", "a.b"]
    values += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8))) for _ in range(5000)]
    for value in values:
        assert name_ours(value) == by_regex(value), repr(value)
