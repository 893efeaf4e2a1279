"""The compiler's output and the driver's transactions against the real kernel, in scratch
namespaces: the kernel accepts them, and incremental changes end where a fresh load does."""

import json

import nftables
import pytest
from hypothesis import HealthCheck, given, settings

from felix.nft import LibNftables
from felix.policy_driver import PolicyDriver
from policy.compiler.ruleset import build
from policy.compiler.transaction import Transaction
from tests.lab.scratch import ScratchNamespace
from tests.policy_model import GOLDEN, compile_all, docs, feed
from tests.policy_strategies import steps

pytestmark = pytest.mark.integration

MODEL = (GOLDEN / "representative.yaml").read_text()


@pytest.fixture
def scratch():
    spaces = []

    def make() -> ScratchNamespace:
        spaces.append(ScratchNamespace())
        return spaces[-1]

    yield make
    for space in spaces:
        space.close()


def _load(space: ScratchNamespace, transaction: Transaction) -> None:
    space.call(lambda: LibNftables().run(transaction))


def _listing(space: ScratchNamespace) -> list:
    """The table's contents without handles, in a canonical order (rules keep theirs within a chain)."""
    objects = json.loads(space.nft("-j", "list", "table", "inet", "calyx"))["nftables"]
    canonical, rules_seen = [], {}
    for obj in objects:
        ((kind, body),) = obj.items()
        if kind == "metainfo":
            continue
        body = {k: v for k, v in body.items() if k != "handle"}
        if "elem" in body:
            body["elem"] = sorted(body["elem"], key=json.dumps)
        name = body.get("chain", body.get("name"))
        position = rules_seen[name] = rules_seen.get(name, -1) + 1 if kind == "rule" else 0
        canonical.append((kind, name, position, json.dumps(body, sort_keys=True)))
    return sorted(canonical)


def test_the_golden_ruleset_loads_into_the_kernel(scratch):
    space = scratch()
    _load(space, build(compile_all(docs(MODEL)).ruleset()))
    text = space.nft("list", "table", "inet", "calyx")
    assert "iifname vmap @from-wl" in text and "jump pol-in-" in text and "tcp . 8080" in text


def test_text_and_json_forms_of_a_ruleset_load_identically(scratch):
    """The driver sends nft's text syntax; it must mean exactly what the JSON model says."""
    as_text, as_json = scratch(), scratch()
    transaction = build(compile_all(docs(MODEL)).ruleset())
    _load(as_text, transaction)
    as_json.call(lambda: _json_load(transaction.commands()))
    assert _listing(as_text) == _listing(as_json)


def _json_load(commands: list[dict]) -> None:
    rc, _, error = nftables.Nftables().json_cmd({"nftables": commands})
    assert rc == 0, error


def test_restart_rebuild_and_incremental_changes_end_like_a_fresh_load(scratch):
    driven, fresh = scratch(), scratch()
    compiler = compile_all(docs(MODEL))
    driver = driven.call(lambda: PolicyDriver(LibNftables()))
    driven.call(driver.apply, compiler.ruleset())
    for resource in docs(
        MODEL.replace("app: db}", "app: db, quarantine: 'true'}").replace("[192.0.2.0/24", "[192.0.3.0/24")
    ):
        feed(compiler, resource)
    driven.call(driver.apply, compiler.ruleset())
    for resource in docs(MODEL):
        if resource.name in ("web-2", "monitoring"):
            feed(compiler, resource, removed=True)
    result = driven.call(driver.apply, compiler.ruleset())
    assert not result.full
    _load(fresh, build(compiler.ruleset()))
    assert _listing(driven) == _listing(fresh)
    restarted = compile_all(docs(MODEL))  # a new agent, with other state: rebuilds over the old table
    result = driven.call(lambda: PolicyDriver(LibNftables()).apply(restarted.ruleset()))
    assert result.full
    fresh2 = scratch()
    _load(fresh2, build(restarted.ruleset()))
    assert _listing(driven) == _listing(fresh2)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps)
def test_any_generated_model_is_accepted_by_libnftables_and_its_text_means_the_json(scratch, sequence):
    space, reference = scratch(), scratch()
    compiler = compile_all([])
    for resource, removed, _ in sequence:
        feed(compiler, resource, removed=removed)
    transaction = build(compiler.ruleset())
    try:
        _load(space, transaction)
    except Exception as exc:
        raise AssertionError(f"{exc}\n{transaction.text()[:3000]}") from None
    reference.call(lambda: _json_load(transaction.commands()))
    assert _listing(space) == _listing(reference)
