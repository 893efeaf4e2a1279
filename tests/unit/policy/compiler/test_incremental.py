"""Properties of the policy compiler: incremental equals from-scratch, whatever the order;
the label index's set algebra equals matching item by item."""

from hypothesis import given, settings
from hypothesis import strategies as st

from policy.compiler.labels import Item, LabelIndex
from policy.compiler.ruleset import build
from policy.model.selector import parse_selector
from tests.policy_model import compile_all, feed
from tests.policy_strategies import SELECTORS, labels, steps


def _identity(resource):
    return (type(resource).__name__, resource.namespace, resource.name)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_incremental_updates_equal_a_fresh_compile_of_the_final_state(sequence):
    from policy.compiler.compiler import PolicyCompiler

    compiler = PolicyCompiler("n1")
    final = {}
    for resource, removed, look in sequence:
        feed(compiler, resource, removed=removed)
        if removed:
            final.pop(_identity(resource), None)
        else:
            final[_identity(resource)] = resource
        if look:
            compiler.ruleset()
    fresh = compile_all(list(final.values()))
    assert build(compiler.ruleset()).commands() == build(fresh.ruleset()).commands()


@settings(max_examples=200, deadline=None)
@given(st.lists(labels, max_size=12), st.sampled_from(SELECTORS + ["!(app == 'a' || has(team))", "team ends with 'd'"]))
def test_index_selection_equals_matching_one_by_one(all_labels, text):
    index = LabelIndex()
    for i, lbls in enumerate(all_labels):
        index.put(f"i{i}", Item(lbls, "ns"))
    selector = parse_selector(text)
    assert index.select(selector) == {f"i{i}" for i, lbls in enumerate(all_labels) if selector.matches(lbls)}
