"""`policyctl flows [--follow]`: the denied flows felix logs on each node (its /flows), merged,
named by endpoint and by the policy and rule that denied them.

The nodes are found from the Node resources (an InternalIP address, else the BGP address), or
given with --felix. Each poll reads every felix from where the last one ended (`since`), a page
of records at a time. A felix that restarted numbers from 1 again: its new `started` (or a
`last` below where we were) says so, and it is read from its start. A node that does not answer
is named once on stderr and asked again at every poll; records felix's ring pushed out before
they were read are counted on stderr, never silently skipped."""

import http.client
import ipaddress
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import click

from policy.ctl.errors import run_datastore as _run
from policy.datastore.kv import KVError
from policy.model.kinds import UnknownKind, resolve_kind
from policy.model.resources import Node, WorkloadEndpoint

FELIX_PORT = 9099
PAGES = 20  # answers (of up to 1000 records) read from one felix in one poll, at most
NAMES_REFRESH = 10.0  # seconds: an address no endpoint holds re-reads the endpoints at most this often
FetchJson = Callable[[str], object]
Warn = Callable[[str], None]


class BadAnswer(ValueError):
    pass


def fetch_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=2) as answer:
        return json.load(answer)


def node_url(node: Node, port: int) -> str | None:
    """Where this node's felix serves /flows: its InternalIP address, else its BGP address."""
    addresses = [a.address for a in node.spec.addresses if a.type == "InternalIP"]
    bgp = node.spec.bgp
    for address in [*addresses, bgp and bgp.ipv4Address, bgp and bgp.ipv6Address]:
        if address:
            host = str(address).partition("/")[0]
            return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    return None


@dataclass
class Source:
    """One felix: where it is, and where its flow log was read up to."""

    node: str
    url: str
    next: int = 0
    started: float | None = None  # felix's flow log's start (wall time), as it last said
    failing: bool = False


def _checked(answer: object) -> dict:
    if not isinstance(answer, dict):
        raise BadAnswer("not a JSON object")
    for field, kind, what in (("last", int, "an integer"), ("next", int, "an integer"), ("flows", list, "a list")):
        if not isinstance(answer.get(field), kind):
            raise BadAnswer(f"field {field!r} is not {what}")
    if not all(isinstance(r, dict) and isinstance(r.get("seq"), int) for r in answer["flows"]):
        raise BadAnswer("a flow record without a seq")
    return answer


def _why(exc: Exception) -> str:
    if isinstance(exc, urllib.error.HTTPError) and exc.code == 404:
        return "felix serves no /flows (started with --no-flow-logs?)"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__


def read(source: Source, fetch: FetchJson, warn: Warn) -> list[dict]:
    """The records one felix logged since the last read, oldest first; [] when it does not answer."""
    found: list[dict] = []
    for _ in range(PAGES):
        url = f"{source.url}/flows?since={source.next}"
        try:
            answer = _checked(fetch(url))
        except (OSError, ValueError, http.client.HTTPException) as exc:
            if not source.failing:
                warn(f"node {source.node}: cannot read {url}: {_why(exc)}")
            source.failing = True
            return found
        if isinstance(answer.get("node"), str):  # a --felix URL is named by its first answer
            source.node = answer["node"]
        if source.failing:
            warn(f"node {source.node}: {source.url} answers again")
            source.failing = False
        started = answer.get("started")
        if source.next and (answer["last"] < source.next or started != source.started):
            warn(f"node {source.node}: felix restarted, reading its flow log from its start")
            source.next, source.started = 0, started
            continue
        source.started = started
        records = answer["flows"]
        if source.next and records and records[0]["seq"] > source.next + 1:
            lost = records[0]["seq"] - source.next - 1
            warn(f"node {source.node}: {lost} flows left felix's ring before they were read (--flow-log-capacity)")
        found += records
        source.next = answer["next"]
        if not records or source.next >= answer["last"]:
            break
    return found


def poll(sources: list[Source], fetch: FetchJson, warn: Warn) -> list[dict]:
    """What every felix logged since the last poll, read in parallel, merged in time order."""
    with ThreadPoolExecutor(max_workers=min(16, len(sources))) as pool:
        found = [r for records in pool.map(lambda s: read(s, fetch, warn), sources) for r in records]
    return sorted(found, key=lambda r: (r.get("time", 0), r.get("node", ""), r["seq"]))


class Names:
    """address -> namespace/name of the endpoint holding it, re-read when an address is unknown
    (a pod started since), at most every NAMES_REFRESH seconds."""

    def __init__(self, endpoints: Callable[[], Iterable[WorkloadEndpoint]], warn: Warn, clock=time.monotonic):
        self._endpoints, self._warn, self._clock = endpoints, warn, clock
        self._names = self._read()
        self._read_at = clock()

    def _read(self) -> dict[str, str]:
        return endpoint_names(self._endpoints())

    def get(self, address: str) -> str | None:
        if address not in self._names and self._clock() - self._read_at >= NAMES_REFRESH:
            self._read_at = self._clock()
            try:
                self._names = self._read()
            except KVError as exc:
                self._warn(f"cannot re-read the endpoints, names may be missing: {exc}")
        return self._names.get(address)


def endpoint_names(endpoints: Iterable[WorkloadEndpoint]) -> dict[str, str]:
    """address (as felix writes it) -> namespace/name of the endpoint holding it."""
    return {
        ipaddress.ip_interface(network).ip.compressed: f"{ep.namespace}/{ep.name}"
        for ep in endpoints
        for network in ep.spec.ipNetworks
    }


class _Names(Protocol):
    def get(self, address: str, /) -> str | None: ...


def annotate(record: dict, names: _Names) -> dict:
    """The record with the endpoints at its ends named (None: no endpoint holds that address)."""
    return {
        **record,
        "sourceEndpoint": names.get(record.get("source", "")),
        "destinationEndpoint": names.get(record.get("destination", "")),
    }


@dataclass(frozen=True)
class Filter:
    namespace: str | None = None
    endpoint: str | None = None
    verdict: str | None = None
    nodes: tuple[str, ...] = ()

    def __call__(self, record: dict) -> bool:
        ends = (record.get("sourceEndpoint"), record.get("destinationEndpoint"))
        if self.verdict and record.get("verdict") != self.verdict:
            return False
        if self.nodes and record.get("node") not in self.nodes:
            return False
        if self.endpoint and self.endpoint not in ends:
            return False
        return not self.namespace or any(end and end.partition("/")[0] == self.namespace for end in ends)


def origin_text(origin: str, rule: int | None, direction: str) -> str:
    """`networkpolicies/shop/db` rule 2 -> `NetworkPolicy shop/db ingress rule 2`."""
    if origin == "profiles":
        return f"the end of the profiles ({direction})"
    if origin.startswith("tier/"):
        return f"tier {origin[5:]}'s defaultAction Deny ({direction})"
    plural, _, name = origin.partition("/")
    try:
        kind = resolve_kind(plural).model_fields["kind"].default
    except UnknownKind:
        kind = plural
    return f"{kind} {name} {direction} rule {rule}"


def _end(address: str, port: int | None, name: str | None, icmp: bool) -> str:
    text = f"[{address}]" if ":" in address and port is not None and not icmp else address
    if port is not None:
        text += f" type {port}" if icmp else f":{port}"
    return text + (f" ({name})" if name else "")


def line(record: dict) -> str:
    """One record as a line a person reads: when (UTC), where, what, and what denied it."""
    when = datetime.fromtimestamp(record["time"], UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    icmp = record["protocol"] in ("ICMP", "ICMPv6")
    source = _end(record["source"], None if icmp else record.get("sourcePort"), record.get("sourceEndpoint"), icmp)
    destination = _end(record["destination"], record.get("destinationPort"), record.get("destinationEndpoint"), icmp)
    decided = origin_text(record["policy"], record.get("rule"), record["direction"])
    return f"{when} {record['node']} {record['verdict']} {record['protocol']} {source} -> {destination} by {decided}"


def _sources(ctx, nodes: tuple[str, ...], felix: tuple[str, ...], port: int) -> list[Source]:
    if felix:
        return [Source(url.split("://", 1)[-1].rstrip("/"), url.rstrip("/")) for url in felix]
    found, _ = _run(lambda: ctx.store.list_kind(Node))
    sources = [Source(n.name, url) for n in found if (not nodes or n.name in nodes) and (url := node_url(n, port))]
    missing = set(nodes) - {s.node for s in sources}
    if missing:
        raise click.ClickException(f"no Node resource with an address for {', '.join(sorted(missing))} (--felix URL)")
    if not sources:
        raise click.ClickException("no Node resource has an address: name felix's URLs with --felix")
    return sources


@click.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing denied flows as they happen (Ctrl-C ends).")
@click.option("-n", "--namespace", default=None, help="Only flows from or to this namespace's endpoints.")
@click.option("--endpoint", default=None, metavar="NS/NAME", help="Only flows from or to this endpoint.")
@click.option(
    "--verdict",
    type=click.Choice(["deny"]),
    default="deny",
    show_default=True,
    help="Flows of this verdict (felix logs denied flows only; allowed ones are counted: --policy-counters).",
)
@click.option("--node", "nodes", multiple=True, help="Only this node's flows (repeatable).")
@click.option("--felix", multiple=True, metavar="URL", help="felix's health URL instead of the Node resources.")
@click.option("--felix-port", type=click.IntRange(1, 65535), default=FELIX_PORT, show_default=True)
@click.option("--interval", type=click.FloatRange(0.1, 60), default=0.5, show_default=True, help="Poll interval.")
@click.option("--duration", type=click.FloatRange(0), default=0, help="With --follow: stop after this many seconds.")
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_obj
def flows(ctx, follow, namespace, endpoint, verdict, nodes, felix, felix_port, interval, duration, fmt):
    """Denied flows from the nodes' felix, with the policy and rule that denied each one."""
    if endpoint is not None and "/" not in endpoint:
        raise click.BadParameter(f"{endpoint!r} is not NAMESPACE/NAME", param_hint="--endpoint")
    sources = _sources(ctx, nodes, felix, felix_port)

    def warn(message: str) -> None:
        click.echo(f"warning: {message}", err=True)

    names = _run(lambda: Names(lambda: ctx.store.list_kind(WorkloadEndpoint)[0], warn))
    wanted = Filter(namespace, endpoint, verdict, nodes)
    deadline = time.monotonic() + duration if duration else float("inf")
    try:
        while True:
            for record in poll(sources, fetch_json, warn):
                record = annotate(record, names)
                if wanted(record):
                    click.echo(json.dumps(record) if fmt == "json" else line(record))
            left = deadline - time.monotonic()
            if not follow or left <= 0:
                return
            time.sleep(min(interval, left))
    except KeyboardInterrupt:
        return
