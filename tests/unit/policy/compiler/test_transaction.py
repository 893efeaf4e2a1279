"""The typed nftables transaction: its text is golden, its JSON says the same, and operations
Calyx must never send are refused when they are added."""

import os

import pytest

from policy.compiler.ruleset import build
from policy.compiler.transaction import (
    Chain,
    Hook,
    Map,
    MapElements,
    Rule,
    Set,
    SetElements,
    Table,
    Transaction,
    TransactionError,
)
from tests.policy_model import GOLDEN, compile_all, docs

DROP = ({"drop": None},)


def test_golden_text_of_a_representative_model():
    text = build(compile_all(docs((GOLDEN / "representative.yaml").read_text())).ruleset()).text()
    path = GOLDEN / "representative.nft"
    if os.environ.get("CALYX_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"rendered text differs from {path} (CALYX_UPDATE_GOLDEN=1 rewrites it)"


def test_incremental_operations_render_as_single_commands():
    tx = (
        Transaction()
        .delete(SetElements("sel4-a", "ipv4_addr", ("10.0.0.1", "10.1.0.0/16")))
        .add(SetElements("port4-b", ("ipv4_addr", "inet_proto", "inet_service"), (("10.0.0.2", 6, 80),)))
        .add(SetElements("wl-src4", ("ifname", "ipv4_addr"), (("cxa", "10.0.0.2"),)))
        .add(Set("sel6-c", "ipv6_addr", True, ("fd00::1",)))
        .add(Chain("ep-in-d"))
        .flush(Chain("ep-in-e"))
        .add(Rule("ep-in-e", DROP))
        .delete(MapElements("to-wl", (("cxa", "ep-in-d"),)))
        .add(MapElements("to-wl", (("cxb", "ep-in-e"),)))
        .flush(Map("from-wl"))
        .add(Chain("forward", Hook("forward")))
        .delete(Chain("ep-in-f"))
        .delete(Set("sel4-g", "ipv4_addr"))
    )
    assert tx.text().splitlines() == [
        "delete element inet calyx sel4-a { 10.0.0.1, 10.1.0.0/16 }",
        "add element inet calyx port4-b { 10.0.0.2 . 6 . 80 }",
        'add element inet calyx wl-src4 { "cxa" . 10.0.0.2 }',
        "add set inet calyx sel6-c { type ipv6_addr; flags interval; elements = { fd00::1 }; }",
        "add chain inet calyx ep-in-d",
        "flush chain inet calyx ep-in-e",
        "add rule inet calyx ep-in-e drop",
        'delete element inet calyx to-wl { "cxa" }',
        'add element inet calyx to-wl { "cxb" : jump ep-in-e }',
        "flush map inet calyx from-wl",
        "add chain inet calyx forward { type filter hook forward priority 0; policy accept; }",
        "delete chain inet calyx ep-in-f",
        "delete set inet calyx sel4-g",
    ]
    assert len(tx) == 13
    assert tx.commands()[0] == {
        "delete": {
            "element": {
                "family": "inet",
                "table": "calyx",
                "name": "sel4-a",
                "elem": ["10.0.0.1", {"prefix": {"addr": "10.1.0.0", "len": 16}}],
            }
        }
    }
    assert tx.commands()[7] == {
        "delete": {"element": {"family": "inet", "table": "calyx", "name": "to-wl", "elem": ["cxa"]}}
    }


def test_a_table_followed_by_additions_is_one_block():
    tx = Transaction().add(Table()).add(Chain("forward", Hook("forward"))).add(Rule("forward", DROP))
    tx.add(Set("wl-ifaces", "ifname", False, ("cxa",))).add(Map("to-wl", (("cxa", "forward"),)))
    assert tx.text() == (
        "table inet calyx {\n"
        '\tset wl-ifaces { type ifname; elements = { "cxa" }; }\n'
        '\tmap to-wl { type ifname : verdict; elements = { "cxa" : jump forward }; }\n'
        "\tchain forward {\n\t\ttype filter hook forward priority 0; policy accept;\n\t\tdrop\n\t}\n"
        "}\n"
    )
    flushed_first = Transaction().flush(Chain("forward")).extend(tx)
    assert flushed_first.text().startswith("flush chain inet calyx forward\ntable inet calyx {\n")


@pytest.mark.parametrize(
    ("verb", "obj", "message"),
    [
        ("add", Chain("bad name"), "not an nft identifier"),
        ("add", Chain('x"; flush ruleset'), "not an nft identifier"),
        ("delete", Rule("c", DROP), "cannot delete a rule"),
        ("add", Rule("c", ()), "no statements"),
        ("add", Rule("c", ({"reject": None},)), "unsupported statement"),
        ("add", Set("s", "ether_addr"), "not one Calyx uses"),
        ("add", Set("s", "ipv4_addr", True, ("fd00::1",)), "not an address or prefix of type ipv4_addr"),
        ("add", SetElements("s", ("ifname", "ipv4_addr"), (("cxa",),)), "does not have 2 parts"),
        ("add", SetElements("s", "ifname", ("a-name-longer-than-15",)), "not an interface name"),
        (
            "add",
            SetElements("s", ("ipv4_addr", "inet_proto", "inet_service"), (("10.0.0.1", 6, 70000),)),
            "inet_service",
        ),
        ("add", MapElements("to-wl", (('cx"a', "ep-in-a"),)), "not an interface name"),
        ("add", MapElements("to-wl", (("cxa", "bad chain"),)), "not a chain name"),
    ],
)
def test_what_calyx_must_never_send_is_refused_when_added(verb, obj, message):
    tx = Transaction()
    with pytest.raises(TransactionError, match=message):
        getattr(tx, verb)(obj)
    assert len(tx) == 0
