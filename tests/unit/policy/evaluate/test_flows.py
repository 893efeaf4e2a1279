"""Port classes, the reachability matrix and the flows a change opens and closes."""

from policy.evaluate import flows
from policy.evaluate.evaluator import Evaluator
from tests.policy_model import docs
from tests.unit.policy.evaluate.test_evaluator import BASE, policy


def test_services_cut_each_protocol_where_some_rule_or_named_port_does():
    evaluator = Evaluator(
        docs(
            BASE
            + "---\n"
            + policy("p", "{ingress: [{action: Allow, protocol: TCP, destination: {ports: [80, '100:200']}}]}")
        )
    )
    tcp = [str(s) for s in flows.services([evaluator], 4) if s.protocol == 6]
    assert tcp == [
        "TCP 1-79",
        "TCP 80",
        "TCP 81-99",
        "TCP 100-200",
        "TCP 201-8079",
        "TCP 8080",  # x/a's named port web
        "TCP 8081-9089",
        "TCP 9090",  # y/c's
        "TCP 9091-65535",
    ]
    assert [str(s) for s in flows.restrict(flows.services([evaluator], 4), 6, 150)] == ["TCP 150"]


def test_icmp_classes_follow_the_types_and_codes_rules_name():
    evaluator = Evaluator(
        docs(BASE + "---\n" + policy("p", "{ingress: [{action: Allow, protocol: ICMP, icmp: {type: 3, code: 4}}]}"))
    )
    icmp = [str(s) for s in flows.services([evaluator], 4) if s.protocol == 1]
    assert icmp == ["ICMP type 3 code 4", "ICMP (other types)", "ICMP (other types)"]  # type 3 code 0, type 0
    assert all(s.protocol != 1 for s in flows.services([evaluator], 6))


def _closed_tcp(changes, source: str) -> list[tuple[int, int]]:
    """The TCP port ranges closed from `source` to x/a, adjacent classes merged."""
    ranges: list[tuple[int, int]] = []
    for change in sorted(changes, key=lambda c: c.service):
        if change.source != source or change.service.protocol != 6 or change.opened:
            continue
        low, high = change.service.low, change.service.high
        assert low is not None and high is not None
        if ranges and ranges[-1][1] + 1 == low:
            ranges[-1] = (ranges[-1][0], high)
        else:
            ranges.append((low, high))
    return ranges


def test_matrix_and_flow_changes_name_what_decides_afterwards():
    before = Evaluator(docs(BASE))
    after = Evaluator(
        docs(
            BASE
            + "---\n"
            + policy(
                "web",
                "{selector: app == 'a', ingress: [{action: Allow, protocol: TCP, source: {selector: app == 'b'}, destination: {ports: [80]}}]}",
            )
        )
    )
    ends = flows.peers(before, 4)
    cells = flows.pairs(ends, ends)
    assert len(ends) == 4 and len(cells) == 12  # 3 endpoints and the network set, never one with itself
    found = flows.services([before, after], 4)
    changes = flows.flow_changes(before, after, flows.changed_pairs(before, after, cells), found)
    assert {c.destination for c in changes} == {"WorkloadEndpoint x/a"}
    assert _closed_tcp(changes, "WorkloadEndpoint x/b") == [(1, 79), (81, 65535)]
    assert _closed_tcp(changes, "WorkloadEndpoint y/c") == [(1, 65535)]
    assert _closed_tcp(changes, "GlobalNetworkSet partners") == [(1, 65535)]
    assert {c.decided_by for c in changes} == {"the end of tier default (Deny), Ingress at x/a"}
    after_ends = flows.peers(after, 4)
    matrix = flows.matrix(after, flows.pairs(after_ends, after_ends), flows.restrict(found, 6, 80))
    assert matrix[("WorkloadEndpoint x/b", "WorkloadEndpoint x/a")] == (True,)
    assert matrix[("WorkloadEndpoint y/c", "WorkloadEndpoint x/a")] == (False,)


def test_unchanged_endpoints_are_not_evaluated_again():
    extra = policy("other", "{selector: app == 'c', ingress: [{action: Deny}]}", "y")
    before = Evaluator(docs(BASE))
    after = Evaluator(docs(BASE + "---\n" + extra))
    ends = flows.peers(before, 4)
    calls = []
    original = after.flow
    after.flow = lambda *args: calls.append(args[1].description) or original(*args)  # type: ignore[method-assign]
    cells = flows.changed_pairs(before, after, flows.pairs(ends, ends))
    assert {destination.description for _, destination, _, _ in cells} == {"WorkloadEndpoint y/c"}
    changes = flows.flow_changes(before, after, cells, flows.services([before, after], 4))
    assert set(calls) == {"WorkloadEndpoint y/c"}  # only flows into the endpoint whose ingress changed
    assert changes and all(c.destination == "WorkloadEndpoint y/c" and not c.opened for c in changes)
