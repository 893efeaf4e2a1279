"""`policyctl explain`, and the flow summary `diff --flows` and `apply --dry-run` print: the
state read from etcd, handed to the pure evaluator (policy/evaluate), its answers rendered."""

import ipaddress
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence

import click
import yaml

from policy.ctl.errors import run_datastore
from policy.datastore.keys import kind_prefix
from policy.datastore.store import ResourceStore, decode
from policy.evaluate import flows
from policy.evaluate.evaluator import Decision, Evaluator, FlowVerdict, Peer, Step
from policy.evaluate.rules import Packet
from policy.model.documents import DocumentError
from policy.model.kinds import DEFAULT_NAMESPACE
from policy.model.policies import GlobalNetworkPolicy, GlobalNetworkSet, NetworkPolicy, NetworkSet, Profile, Tier
from policy.model.resources import Namespace, Node, Resource, WorkloadEndpoint
from policy.model.rules import PROTOCOL_NUMBERS, Rule

STATE_KINDS = (
    WorkloadEndpoint,
    NetworkSet,
    GlobalNetworkSet,
    NetworkPolicy,
    GlobalNetworkPolicy,
    Tier,
    Profile,
    Namespace,
    Node,
)
MAX_CHECKS = 2_000_000  # flow evaluations (pairs x services) a command does before it refuses
ECHO_REQUEST = {4: 8, 6: 128}


class State:
    """What policy verdicts depend on, as etcd holds it, with each endpoint's create revision."""

    def __init__(self, resources: list[Resource], created: dict[tuple[str | None, str], int]):
        self.resources, self.created = resources, created

    @classmethod
    def read(cls, store: ResourceStore) -> "State":
        resources: list[Resource] = []
        created: dict[tuple[str | None, str], int] = {}
        for model in STATE_KINDS:
            for page, _ in store.kv.pages(kind_prefix(store.prefix, model)):
                for item in page:
                    try:
                        resource = decode(store.prefix, item.key, item.value, item.mod_revision)
                    except DocumentError as exc:
                        click.echo(
                            f"warning: skipped unreadable entry (felix keeps its last good version): {exc}", err=True
                        )
                        continue
                    resources.append(resource)
                    created[(resource.namespace, resource.name)] = item.create_revision
        return cls(resources, created)

    def evaluator(self) -> Evaluator:
        return Evaluator(self.resources, self.created)

    def with_changes(self, changes: Iterable[Resource]) -> "State":
        """This state with `changes` applied (created or replaced by kind, namespace and name)."""
        replaced = {_identity(r): r for r in changes}
        kept = [r for r in self.resources if _identity(r) not in replaced]
        return State(kept + [r for r in replaced.values() if isinstance(r, STATE_KINDS)], self.created)


def _identity(resource: Resource) -> tuple[str, str | None, str]:
    return (resource.kind, resource.namespace, resource.name)


def read_state(store: ResourceStore) -> State:
    return run_datastore(lambda: State.read(store))


# -- naming the ends ------------------------------------------------------------------------


def _address_of(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def resolve(model: Evaluator, text: str, version: int | None) -> Peer:
    """An end as people name it: an address, `namespace/name` (an endpoint, else a network set)
    or `name` (an endpoint of the default namespace, else a global network set)."""
    ip = _address_of(text)
    if ip is not None:
        return model.locate(ip)
    namespace, _, name = text.rpartition("/")
    wanted = [(namespace or DEFAULT_NAMESPACE, name, True), (namespace or None, name, False)]
    for ns, member_name, endpoint in wanted:
        for member in model.universe.members:
            if member.is_endpoint == endpoint and member.namespace == ns and member.resource.name == member_name:
                peer = _member_peer(model, member, version)
                if peer is None:
                    raise click.ClickException(f"{member.resource.kind} {member.name} has no IPv{version} address")
                return peer
    raise click.ClickException(
        f"no workload endpoint or network set named {text!r} (name one as namespace/name, or give an address)"
    )


def _member_peer(model: Evaluator, member, version: int | None) -> Peer | None:
    for candidate in (version,) if version else (4, 6):
        found = flows.peers(model, candidate, [member])
        if found:
            return found[0]
    return None


def packet_for(source: Peer, destination: Peer, protocol: str, port: int | None, icmp: tuple) -> Packet:
    number = PROTOCOL_NUMBERS[protocol]
    version = ipaddress.ip_address(source.address).version
    if protocol == "ICMP" and version == 6:
        number = PROTOCOL_NUMBERS["ICMPv6"]
    if number in (1, 58):
        icmp_type, icmp_code = icmp
        return Packet(
            source.address,
            destination.address,
            number,
            None,
            ECHO_REQUEST[version] if icmp_type is None else icmp_type,
            icmp_code or 0,
        )
    if port is None:
        raise click.UsageError(f"--port is needed for {protocol}")
    return Packet(source.address, destination.address, number, port)


# -- rendering --------------------------------------------------------------------------------


def rule_text(rule: Rule) -> str:
    document = rule.model_dump(mode="json", exclude_defaults=True, exclude_none=True)
    return yaml.safe_dump(document, default_flow_style=True, sort_keys=False, width=1_000_000).strip()


def _where(tier: str | None, policy: str | None, direction: str, index: int | None) -> str:
    return f"{policy} {direction.lower()} rule {index}" + (f" (tier {tier})" if tier else "")


def decision_lines(decision: Decision) -> list[str]:
    lines = [f"{decision.direction.lower()} at {decision.endpoint}: {'allowed' if decision.allowed else 'denied'}"]
    for step in decision.trail:
        lines.append("  " + _step_text(step, decision.direction))
    if decision.rule is not None:
        lines.append(f"  by {_where(decision.tier, decision.policy, decision.direction, decision.index)}:")
        lines.append(f"    {rule_text(decision.rule)}")
    else:
        lines.append(f"  {decision.detail}")
    return lines


def _step_text(step: Step, direction: str) -> str:
    if step.rule is None:
        return f"tier {step.tier}: no rule decided, its defaultAction Pass goes on"
    return f"{step.action}, goes on: {_where(step.tier, step.policy, direction, step.index)}: {rule_text(step.rule)}"


def _service_text(packet: Packet) -> str:
    if packet.port is not None:
        return f"{flows.PROTOCOL_NAMES.get(packet.protocol, packet.protocol)} port {packet.port}"
    return f"{flows.PROTOCOL_NAMES[packet.protocol]} type {packet.icmp_type} code {packet.icmp_code}"


def verdict_text(verdict: FlowVerdict) -> str:
    head = (
        f"{verdict.source.description} ({verdict.source.address}) -> "
        f"{verdict.destination.description} ({verdict.destination.address}), {_service_text(verdict.packet)}: "
        f"{'allowed' if verdict.allowed else 'denied'}"
    )
    lines = [head]
    if not verdict.decisions:
        lines.append("  no Calyx policy is on this path (neither end is a workload endpoint)")
    for decision in verdict.decisions:
        lines += ["  " + line for line in decision_lines(decision)]
    return "\n".join(lines)


def verdict_json(verdict: FlowVerdict) -> dict:
    def peer(p: Peer) -> dict:
        return {"address": p.address, "what": p.description, **({"node": p.node} if p.node else {})}

    def decision(d: Decision) -> dict:
        return {
            "direction": d.direction,
            "endpoint": d.endpoint,
            "allowed": d.allowed,
            "reason": d.reason,
            "tier": d.tier,
            "policy": d.policy,
            "ruleIndex": d.index,
            "rule": d.rule.model_dump(mode="json", exclude_defaults=True, exclude_none=True) if d.rule else None,
            "detail": d.detail or None,
            "trail": [
                {"action": s.action, "tier": s.tier, "policy": s.policy, "ruleIndex": s.index}
                | ({"rule": s.rule.model_dump(mode="json", exclude_defaults=True, exclude_none=True)} if s.rule else {})
                for s in d.trail
            ],
        }

    packet = verdict.packet
    return {
        "source": peer(verdict.source),
        "destination": peer(verdict.destination),
        "protocol": flows.PROTOCOL_NAMES.get(packet.protocol, packet.protocol),
        **({"port": packet.port} if packet.port is not None else {}),
        **({"icmpType": packet.icmp_type, "icmpCode": packet.icmp_code} if packet.icmp_type is not None else {}),
        "allowed": verdict.allowed,
        "decisions": [decision(d) for d in verdict.decisions],
    }


@click.command()
@click.argument("source")
@click.argument("destination")
@click.option("--port", type=click.IntRange(1, 65535), help="Destination port (TCP, UDP, SCTP).")
@click.option("--protocol", type=click.Choice(["TCP", "UDP", "SCTP", "ICMP"]), default="TCP", show_default=True)
@click.option("--icmp-type", type=click.IntRange(0, 254), help="ICMP type (default: echo request).")
@click.option("--icmp-code", type=click.IntRange(0, 255), help="ICMP code (default 0).")
@click.option("-6", "--ipv6", is_flag=True, help="Use the ends' IPv6 addresses when both are named.")
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_obj
def explain(ctx, source, destination, port, protocol, icmp_type, icmp_code, ipv6, fmt):
    """Would a new flow from SOURCE to DESTINATION be allowed, and what decides it?

    SOURCE and DESTINATION are namespace/name (a workload endpoint, else a network set), a name
    (of the default namespace, else a global network set) or an address."""
    model = read_state(ctx.store).evaluator()
    version = _version(source, destination, 6 if ipv6 else 4)
    src, dst = resolve(model, source, version), resolve(model, destination, version)
    if ipaddress.ip_address(src.address).version != ipaddress.ip_address(dst.address).version:
        raise click.UsageError(f"{src.address} and {dst.address} are of different IP versions")
    verdict = model.flow(src, dst, packet_for(src, dst, protocol, port, (icmp_type, icmp_code)))
    click.echo(json.dumps(verdict_json(verdict), indent=2) if fmt == "json" else verdict_text(verdict))


def _version(source: str, destination: str, default: int) -> int:
    for text in (source, destination):
        ip = _address_of(text)
        if ip is not None:
            return ipaddress.ip_address(ip).version
    return default


# -- what a change does to flows --------------------------------------------------------------


def progress_line(done: int, total: int) -> None:
    click.echo(f"... {done:,} of {total:,} flow checks ({100 * done // max(total, 1)}%)", err=True)


def check_budget(work: int, max_checks: int, what: str) -> None:
    if work > max_checks:
        raise click.UsageError(
            f"{what} needs {work:,} flow checks, more than --max-checks {max_checks:,}; "
            "raise --max-checks or narrow the question"
        )


Changed = dict[tuple[bool, str, str, str], dict[flows.Service, set[int]]]  # (opened, cause, from, to) -> IP versions


def flow_changes(state: State, changes: Sequence[Resource], max_checks: int = MAX_CHECKS) -> tuple[Changed, frozenset]:
    """The flows between current endpoints and network sets whose verdict `changes` turn, by
    (opened, what decides it afterwards, source, destination), with the IP versions checked."""
    before, after = state.evaluator(), state.with_changes(changes).evaluator()
    work = []
    for version in (4, 6):
        ends = flows.peers(before, version)
        cells = flows.changed_pairs(before, after, flows.pairs(ends, ends))
        found = flows.services([before, after], version)
        if cells and found:
            work.append((version, cells, found))
    total = sum(len(c) * len(f) for _, c, f in work)
    check_budget(total, max_checks, "the flow summary")
    changed: Changed = defaultdict(lambda: defaultdict(set))
    for version, cells, found in work:
        for change in flows.flow_changes(before, after, cells, found, progress_line if total > 200_000 else None):
            changed[(change.opened, change.decided_by, change.source, change.destination)][change.service].add(version)
    return changed, frozenset(version for version, _, _ in work)


def flow_summary(state: State, changes: Sequence[Resource], max_checks: int = MAX_CHECKS) -> tuple[list[str], int]:
    """Lines saying which flows `changes` open and close, grouped by what decides them
    afterwards; and how many it opens."""
    changed, checked = flow_changes(state, changes, max_checks)
    # one flow: a source, a destination and a protocol (however many port classes it spans)
    opened = sum(len({s.protocol for s in services}) for key, services in changed.items() if key[0])
    closed = sum(len({s.protocol for s in services}) for key, services in changed.items() if not key[0])
    return _summary_lines(changed, opened, closed, checked), opened


def dry_run_summary(state: State, changes: Sequence[Resource]) -> list[str]:
    """The flow summary for `apply --dry-run`; beyond the bound, a line saying so instead."""
    try:
        return flow_summary(state, changes)[0]
    except click.UsageError as exc:
        return [f"flow summary skipped: {exc.message}"]


def _summary_lines(
    changed: Changed,
    opened: int,
    closed: int,
    checked: frozenset[int],
) -> list[str]:
    lines = [f"flows: {opened} opened, {closed} closed"]
    group = None
    for key in sorted(changed, key=lambda k: (not k[0], k[1], k[2], k[3])):
        is_open, cause, src, dst = key
        if (is_open, cause) != group:
            group = (is_open, cause)
            lines.append(f"{'opened' if is_open else 'closed'} by {cause}:")
        lines.append(f"  {src} -> {dst}: {', '.join(_merged(changed[key], checked))}")
    return lines


def _merged(services: dict[flows.Service, set[int]], checked: frozenset[int]) -> list[str]:
    """Adjacent port classes of one protocol (and IP versions) as one range: 'TCP 1-65535';
    a flow that changes in only one of the IP versions checked says which."""
    runs: list[tuple[flows.Service, frozenset[int]]] = []
    for service in sorted(services):
        versions = frozenset(services[service])
        if runs and service.low is not None:
            last, last_versions = runs[-1]
            if (
                last.protocol == service.protocol
                and last.high is not None
                and last.high + 1 == service.low
                and last_versions == versions
            ):
                runs[-1] = (flows.Service(last.protocol, last.low, service.high), versions)
                continue
        runs.append((service, versions))
    return [str(s) + ("" if v == checked else f" (IPv{min(v)} only)") for s, v in runs]
