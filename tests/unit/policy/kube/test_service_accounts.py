"""serviceAccounts.selector end to end: a ServiceAccount becomes Profile ksa.<ns>.<name> with its
labels as pcsa.<key> (convert), the endpoint names the profile (endpoint_for_pod), and the
compiler and the evaluator match the selector over those labels."""

from policy.compiler.compiler import PolicyCompiler
from policy.datastore.keys import key_of
from policy.evaluate.evaluator import Evaluator
from policy.evaluate.rules import Packet
from policy.kube.convert import endpoint_for_pod, pod_facts, service_account_profile
from policy.model.documents import parse_resource
from policy.model.selector import parse_selector, with_key_prefix
from tests.policy_model import PREFIX, compile_all
from tests.unit.policy.kube.conftest import endpoint, pod

POLICY = {
    "apiVersion": "calyx.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "from-builders", "namespace": "x"},
    "spec": {
        "selector": "app == 'db'",
        "ingress": [{"action": "Allow", "source": {"serviceAccounts": {"selector": "role == 'builder'"}}}],
    },
}


def model(builder_role: str = "builder"):
    accounts = [
        service_account_profile({"metadata": {"name": "ci", "namespace": "x", "labels": {"role": builder_role}}}),
        service_account_profile({"metadata": {"name": "web", "namespace": "x", "labels": {"role": "frontend"}}}),
    ]
    endpoints = [
        endpoint_for_pod(endpoint(name, "x", ip=ip), "x", pod_facts(pod(name, "x", labels, ip=ip, sa=sa)))
        for name, labels, ip, sa in (
            ("db", {"app": "db"}, "10.0.0.1", "web"),
            ("builder", {"app": "ci"}, "10.0.0.2", "ci"),
            ("frontend", {"app": "web"}, "10.0.0.3", "web"),
        )
    ]
    return [*accounts, *endpoints, parse_resource(POLICY)]


def source_members(compiler: PolicyCompiler, policy) -> set[str]:
    ruleset = compiler.ruleset()
    compiled = compiler._policies[key_of(PREFIX, policy)]
    specs = [spec for spec in compiled.specs if spec.selection and "pcsa." in spec.selection.selector]
    return {str(e) for spec in specs for e in ruleset.sets[spec.name].elements}


def test_keys_are_prefixed_everywhere_in_the_selector():
    selector = parse_selector("role == 'a' && !(has(team) || tier in {'1'})")
    assert str(with_key_prefix(selector, "pcsa.")) == "pcsa.role == 'a' && !(has(pcsa.team) || pcsa.tier in {'1'})"


def test_the_selector_picks_the_endpoints_of_matching_service_accounts():
    resources = model()
    compiler = compile_all(resources)
    assert source_members(compiler, resources[-1]) == {"10.0.0.2"}


def test_a_service_account_label_change_moves_its_endpoints():
    resources = model()
    compiler = compile_all(resources)
    relabelled = model(builder_role="retired")[0]
    compiler.set_profile(relabelled.name, relabelled)
    assert source_members(compiler, resources[-1]) == set()


def test_the_evaluator_agrees():
    resources = model()
    evaluator = Evaluator(resources)
    by_name = {m.name: m for m in evaluator.universe.endpoints}
    db = by_name["x/node1-k8s-db-eth0"]
    assert evaluator.decide(db, "Ingress", Packet("10.0.0.2", "10.0.0.1", 6, 80)).allowed
    assert not evaluator.decide(db, "Ingress", Packet("10.0.0.3", "10.0.0.1", 6, 80)).allowed


def test_policyctl_accepts_it():
    assert parse_resource(POLICY).spec.ingress[0].source.serviceAccounts.selector == "role == 'builder'"
