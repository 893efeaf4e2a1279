"""Claims: one key per name is stored as the key itself, more as a tuple, and back."""

from policy.compiler.claims import Claims, claim, claimants, release


def test_a_lone_claimant_is_the_key_itself_and_a_second_makes_a_tuple_in_order():
    table: Claims = {}
    assert claim(table, "10.0.0.1/32", "a") == 1
    assert table == {"10.0.0.1/32": "a"}
    assert claim(table, "10.0.0.1/32", "b") == 2
    assert table["10.0.0.1/32"] == ("a", "b")
    assert claimants(table, "10.0.0.1/32") == ("a", "b") and claimants(table, "other") == ()


def test_releasing_goes_back_to_the_lone_key_then_drops_the_name():
    table: Claims = {}
    for key in ("a", "b", "c"):
        claim(table, "cx1", key)
    assert release(table, "cx1", "b") == 2 and table["cx1"] == ("a", "c")
    assert release(table, "cx1", "a") == 1 and table["cx1"] == "c"
    assert claimants(table, "cx1") == ("c",)  # a key of several characters is one claimant
    assert release(table, "cx1", "c") == 0 and "cx1" not in table
    assert release(table, "cx1", "c") == 0  # releasing what is not there is harmless
