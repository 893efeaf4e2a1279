"""The converge lab's kernel check: a learned prefix covers an endpoint's address, or it is missing."""

import ipaddress

import pytest

from tests.lab.converge import _covered

LEARNED = {ipaddress.ip_network(p) for p in ("10.0.0.0/27", "fd00::/123", "10.1.0.5/32")}
LENGTHS = {(p.version, p.prefixlen) for p in LEARNED}


@pytest.mark.parametrize(
    "network, covered",
    [
        ("10.0.0.7/32", True),  # in a learned block
        ("10.0.0.40/32", False),  # next to it
        ("fd00::1f/128", True),
        ("fd00::20/128", False),
        ("10.1.0.5/32", True),  # a borrowed address's own route
        ("10.1.0.6/32", False),
        ("10.0.0.0/26", False),  # wider than every learned prefix
    ],
)
def test_an_address_is_covered_only_by_a_learned_prefix_holding_it(network, covered):
    assert _covered(ipaddress.ip_network(network), LEARNED, LENGTHS) is covered
