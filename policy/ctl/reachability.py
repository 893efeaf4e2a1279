"""`policyctl reachability`: who can open a flow to whom, as a table or an SVG picture."""

import functools
from collections.abc import Sequence
from html import escape
from typing import NamedTuple

import click

from policy.ctl.explain import MAX_CHECKS, check_budget, progress_line, read_state
from policy.evaluate import flows
from policy.evaluate.evaluator import Evaluator, Peer
from policy.model.rules import PROTOCOL_NUMBERS
from policy.model.selector import SelectorError, parse_selector

ALLOWED, DENIED, PARTLY, SELF = ".", "X", "~", "-"
COLOURS = {ALLOWED: "#2e9e4f", DENIED: "#c8322d", PARTLY: "#e0a21b", SELF: "#b0b0b0"}
MEANING = {ALLOWED: "allowed", DENIED: "denied", PARTLY: "some ports allowed", SELF: "itself, or no endpoint"}


def chosen_peers(model: Evaluator, version: int, namespace: str | None, selector: str | None, sets: bool) -> list[Peer]:
    try:
        picked = parse_selector(selector) if selector else None
    except SelectorError as exc:
        raise click.UsageError(f"-l: {exc}") from None
    members = [
        m
        for m in model.universe.members
        if (m.is_endpoint or sets)
        and (namespace is None or m.namespace == namespace)
        and (picked is None or picked.matches(m.labels))
    ]
    return flows.peers(model, version, members)


def cells(verdicts: dict[tuple[str, str], tuple[bool, ...]], names: Sequence[str]) -> list[list[str]]:
    rows = []
    for src in names:
        row = []
        for dst in names:
            found = verdicts.get((src, dst))
            if found is None:
                row.append(SELF)
            elif all(found):
                row.append(ALLOWED)
            else:
                row.append(PARTLY if any(found) else DENIED)
        rows.append(row)
    return rows


def short(description: str) -> str:
    """'WorkloadEndpoint x/a' -> 'x/a'; network sets keep their kind."""
    return description.removeprefix("WorkloadEndpoint ")


def table(names: Sequence[str], grid: list[list[str]], what: str) -> str:
    width = max(len(short(n)) for n in names) + len(str(len(names))) + 1
    numbers = " ".join(f"{i + 1:>3}" for i in range(len(names)))
    lines = [f"reachability, {what} (rows: from, columns: to)", f"{'':{width}} {numbers}"]
    for i, (name, row) in enumerate(zip(names, grid, strict=True)):
        label = f"{i + 1} {short(name)}"
        lines.append(f"{label:{width}} " + " ".join(f"{cell:>3}" for cell in row))
    lines.append("  ".join(f"{mark} {meaning}" for mark, meaning in MEANING.items()))
    return "\n".join(lines)


def svg(names: Sequence[str], grid: list[list[str]], what: str) -> str:
    """A hand-written SVG: one coloured square per pair, names on both axes, a legend."""
    cell, gap = 22, 2
    labels = [escape(short(n)) for n in names]
    margin = 12 + 7 * max(len(label) for label in labels)
    size = len(names) * cell
    width, height = max(margin + size + 20, 8 + 150 * len(MEANING)), margin + size + 60
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="8" y="16" font-size="14" font-weight="bold">reachability, {escape(what)}</text>',
        '<text x="8" y="32" fill="#555">rows: from, columns: to</text>',
    ]
    for i, label in enumerate(labels):
        y = margin + i * cell + cell * 0.7
        x = margin + i * cell + cell * 0.7
        parts.append(f'<text x="{margin - 6}" y="{y:.0f}" text-anchor="end">{label}</text>')
        parts.append(f'<text x="{x:.0f}" y="{margin - 6}" transform="rotate(-60 {x:.0f} {margin - 6})">{label}</text>')
    for i, row in enumerate(grid):
        for j, mark in enumerate(row):
            title = f"{labels[i]} -&gt; {labels[j]}: {MEANING[mark]}"
            parts.append(
                f'<rect x="{margin + j * cell}" y="{margin + i * cell}" width="{cell - gap}" height="{cell - gap}" '
                f'fill="{COLOURS[mark]}"><title>{title}</title></rect>'
            )
    y = margin + size + 24
    for k, (mark, meaning) in enumerate(MEANING.items()):
        x = 8 + k * 150
        parts.append(f'<rect x="{x}" y="{y - 12}" width="14" height="14" fill="{COLOURS[mark]}"/>')
        parts.append(f'<text x="{x + 20}" y="{y}">{meaning}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


class Matrix(NamedTuple):
    names: list[str]  # peer descriptions ("WorkloadEndpoint ns/name", "GlobalNetworkSet x")
    grid: list[list[str]]  # one mark per (row: from, column: to)
    what: str  # the question, e.g. "TCP port 80, IPv4"


def compute(
    model: Evaluator,
    namespace: str | None,
    selector: str | None,
    port: int | None,
    protocol: str | None,
    network_sets: bool,
    ipv6: bool,
    max_checks: int = MAX_CHECKS,
) -> Matrix:
    """The matrix `policyctl reachability` and calyx-ui show; click errors when nothing matches,
    the selector is bad or the work is over max_checks."""
    if port is not None and protocol is None:
        protocol = "TCP"
    version = 6 if ipv6 else 4
    ends = chosen_peers(model, version, namespace, selector, network_sets)
    if not ends:
        raise click.ClickException("no endpoints match")
    number = PROTOCOL_NUMBERS[protocol] if protocol else None
    found = flows.restrict(flows.services([model], version), number, port)
    pairs = flows.pairs(ends, ends)
    check_budget(len(pairs) * len(found), max_checks, "this matrix")
    verdicts = flows.matrix(model, pairs, found, progress_line if len(pairs) * len(found) > 200_000 else None)
    what = f"{protocol or 'every protocol'}" + (f" port {port}" if port else "") + f", IPv{version}"
    names = [end.description for end in ends]
    return Matrix(names, cells(verdicts, names), what)


MATRIX_OPTIONS = [
    click.option("-n", "--namespace", default=None, help="Only the endpoints of this namespace."),
    click.option("-l", "--selector", default=None, help="Only the endpoints this Calico selector picks."),
    click.option("--port", type=click.IntRange(1, 65535), help="One destination port (default: every port)."),
    click.option("--protocol", type=click.Choice(["TCP", "UDP", "SCTP"]), help="One protocol (default: all)."),
    click.option("--network-sets", is_flag=True, help="Include network sets as sources and destinations."),
    click.option("-6", "--ipv6", is_flag=True, help="IPv6 addresses instead of IPv4."),
    click.option("--max-checks", type=click.IntRange(1), default=MAX_CHECKS, show_default=True),
]


def matrix_options(command):
    """The question's options, shared by `policyctl reachability` and calyx-ui."""
    return functools.reduce(lambda cmd, option: option(cmd), reversed(MATRIX_OPTIONS), command)


@click.command()
@matrix_options
@click.option("-o", "--output", "fmt", type=click.Choice(["table", "svg"]), default="table", show_default=True)
@click.pass_obj
def reachability(ctx, namespace, selector, port, protocol, network_sets, ipv6, max_checks, fmt):
    """The matrix of which endpoints can open flows to which, from the policies in etcd.

    A cell is allowed when every port and protocol is, denied when none is, and partly
    otherwise (`policyctl explain` says why for one flow)."""
    matrix = compute(
        read_state(ctx.store).evaluator(), namespace, selector, port, protocol, network_sets, ipv6, max_checks
    )
    click.echo(svg(*matrix) if fmt == "svg" else table(*matrix))
