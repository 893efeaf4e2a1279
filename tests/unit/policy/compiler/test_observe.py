"""Deny logging and rule counters (policy/compiler/observe.py): off, the ruleset is today's (the
golden files hold that); on, every drop policy decides is logged to the nflog group with a
prefix that names the policy and rule, and every policy rule counts."""

import json

from policy.compiler.compiler import PolicyCompiler
from policy.compiler.observe import PREFIX_MAX, Observe, Origin, origin_text, parse_origin
from policy.compiler.ruleset import build
from tests.policy_model import GOLDEN, docs, feed


def _compiled(observe: Observe) -> PolicyCompiler:
    compiler = PolicyCompiler("n1", observe=observe)
    for resource in docs((GOLDEN / "representative.yaml").read_text()):
        feed(compiler, resource)
    return compiler


def _statements(observe: Observe) -> list[list[dict]]:
    return [list(rule) for rules in _compiled(observe).ruleset().chains.values() for rule in rules]


def test_observe_off_gives_the_golden_output():
    text = json.dumps({"nftables": build(_compiled(Observe()).ruleset()).commands()}, indent=1, sort_keys=True)
    assert text + "\n" == (GOLDEN / "representative.json").read_text()


def test_every_policy_drop_is_logged_to_the_group_with_what_decided():
    origins = set()
    for rule in _statements(Observe(deny_log_group=7)):
        if rule[-1] == {"drop": None} and "invalid" not in json.dumps(rule):  # ct invalid: not policy
            log = rule[-2]["log"]
            assert log["group"] == 7
            origins.add(parse_origin(log["prefix"]))
    assert origins == {
        Origin("ingress", 0, "globalnetworkpolicies/security.quarantine"),
        Origin("egress", 0, "globalnetworkpolicies/security.quarantine"),
        Origin("ingress", 2, "networkpolicies/shop/db"),
        Origin("ingress", None, "tier/default"),
        Origin("egress", None, "tier/default"),
        Origin("ingress", None, "profiles"),
        Origin("egress", None, "profiles"),
    }


def test_logging_changes_only_the_drops():
    plain = [r for r in _statements(Observe()) if r[-1] != {"drop": None}]
    logged = [r for r in _statements(Observe(deny_log_group=7)) if r[-1] != {"drop": None}]
    assert sorted(map(json.dumps, plain)) == sorted(map(json.dumps, logged))


def test_counters_count_every_policy_rule_before_its_verdict_and_name_it():
    ruleset = _compiled(Observe(counters=True)).ruleset()
    db = next(rules for name, rules in ruleset.chains.items() if name.startswith("pol-in-") and "shop/db" in str(rules))
    comments = [rule[-1]["comment"] for rule in db]
    assert [parse_origin(c).rule for c in comments] == sorted(parse_origin(c).rule for c in comments)
    for rule in db:
        position = rule.index({"counter": None})
        assert "match" in rule[position - 1] and "match" not in json.dumps(rule[position + 1 :])
    # the comment is the rule's own field in libnftables JSON, the last words in nft text
    commands = build(ruleset).commands()
    with_comments = [c["add"]["rule"] for c in commands if "comment" in c["add"].get("rule", {})]
    assert with_comments and all("comment" not in json.dumps(r["expr"]) for r in with_comments)
    assert 'counter drop comment "calyx-rule ingress 2 networkpolicies/shop/db"' in build(ruleset).text()


def test_a_cut_prefix_keeps_direction_and_rule():
    text = origin_text("Egress", 12, "networkpolicies/" + "n" * 63 + "/" + "p" * 200)
    assert len(text) == PREFIX_MAX
    found = parse_origin(text)
    assert found is not None and (found.direction, found.rule) == ("egress", 12)


def test_prefixes_that_are_not_ours_are_none():
    for text in ("", "calyx /calyx/v1/x ingress[1]: ", "calyx-rule sideways 1 x", "calyx-rule ingress one x"):
        assert parse_origin(text) is None
    assert parse_origin("calyx-rule ingress - tier/default\0") == Origin("ingress", None, "tier/default")
    assert Origin("ingress", None, "tier/default").reason == "tier-default"
    assert Origin("egress", 1, "profiles/kns.shop").reason == "profile-rule"
