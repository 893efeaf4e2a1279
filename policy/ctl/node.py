"""`policyctl node status`: a node's BGP sessions as calyx-bgp last published them."""

import json
import socket
import time

import click
import yaml

from policy.ctl.errors import run_datastore as _run
from policy.runtime.status import bgp_status_key, uptime

STALE_AFTER = 60.0  # calyx-bgp republishes at least this often while it runs


@click.group()
def node():
    """Nodes: BGP session status."""


@node.command()
@click.argument("name", required=False)
@click.option("-o", "--output", "fmt", type=click.Choice(["table", "json", "yaml"]), default="table", show_default=True)
@click.pass_obj
def status(ctx, name, fmt):
    """Sessions of NAME (default: this host's name) with state, uptime, prefixes received and sent."""
    name = name or socket.gethostname()
    item = _run(lambda: ctx.store.kv.get(bgp_status_key(ctx.store.prefix, name)))
    if item is None:
        raise click.ClickException(f"no BGP status for node {name!r}: is calyx-bgp running there?")
    data = json.loads(item.value)
    if fmt != "table":
        click.echo(
            json.dumps(data, indent=2) if fmt == "json" else yaml.safe_dump(data, sort_keys=False), nl=fmt == "json"
        )
        return
    now = time.time()
    exabgp = data.get("exabgp", {})
    age = now - data.get("updated", now)
    click.echo(
        f"node {data['node']}: AS {data['asNumber']}, router id {data['routerID']}, "
        f"ExaBGP {'running' if exabgp.get('running') else 'NOT running'} ({exabgp.get('restarts', 0)} restarts), "
        f"{data.get('announced', 0)} prefixes announced, {data.get('installed', 0)} routes installed"
    )
    if age > STALE_AFTER:
        click.echo(f"warning: published {uptime(age)} ago; calyx-bgp may be down", err=True)
    rows = [("PEER", "NAME", "AS", "STATE", "SINCE", "RECEIVED", "SENT")]
    for s in data.get("sessions", []):
        rows.append(
            (
                s["peer"],
                s["name"],
                str(s["asNumber"]),
                s["state"],
                uptime(now - s["since"]) if s.get("since") else "-",
                str(s["received"]),
                str(s["sent"]),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
