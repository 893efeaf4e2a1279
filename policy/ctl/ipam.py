"""`policyctl ipam`: allocate, release, show and check workload addresses."""

import ipaddress
from collections import Counter

import click

from policy.ctl.errors import run_datastore as _run
from policy.datastore.ipam import IPAM
from policy.model.pools import IPPool


def _ipam(ctx) -> IPAM:
    return IPAM(ctx.store.kv, ctx.store.prefix)


def _address(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an IP address") from None


@click.group()
def ipam():
    """Workload addresses: blocks of IPPools with node affinity."""


@ipam.command()
@click.option("--node", required=True, help="The node the address is for (its blocks are used first).")
@click.option("--handle", required=True, help="An id to release the address by later (e.g. the workload's).")
@click.option("--pool", default=None, help="Allocate from this IPPool's CIDR only.")
@click.option("--ip", "address", default=None, help="Allocate exactly this address.")
@click.pass_obj
def allocate(ctx, node, handle, pool, address):
    """Allocate one address and print it."""
    if pool and address:
        raise click.UsageError("give --pool or --ip, not both")
    click.echo(_run(lambda: _ipam(ctx).allocate(node, handle, pool=pool, address=_address(address))))


@ipam.command()
@click.option("--handle", default=None, help="Release every address of this handle.")
@click.option("--ip", "address", default=None, help="Release this one address.")
@click.pass_obj
def release(ctx, handle, address):
    """Release addresses by handle or by address."""
    if bool(handle) == bool(address):
        raise click.UsageError("give exactly one of --handle or --ip")
    if handle:
        for freed in _run(lambda: _ipam(ctx).release_handle(handle)):
            click.echo(f"{freed} released")
    else:
        owner = _run(lambda: _ipam(ctx).release_address(str(_address(address))))
        click.echo(f"{address} released (handle {owner})")


def _report_corrupt(corrupt: dict[str, str]) -> None:
    for key, problem in sorted(corrupt.items()):
        click.echo(f"warning: skipped corrupt IPAM entry {key}: {problem}", err=True)


@ipam.command()
@click.pass_obj
def show(ctx):
    """Pools, blocks with their node and use, and addresses in use per node; a corrupt block is
    reported by key and skipped, and the exit code is then 1."""
    manager = _ipam(ctx)
    pools, bad_pools = _run(lambda: manager.store.list_kind(IPPool))
    blocks, corrupt = _run(manager.read_blocks)
    for error in bad_pools:
        click.echo(f"warning: skipped unreadable entry: {error}", err=True)
    _report_corrupt(corrupt)
    click.echo("POOL                 BLOCK   DISABLED   IN USE")
    for pool in pools:
        size = ipaddress.ip_network(pool.spec.cidr).num_addresses
        used = sum(len(b.allocations) for b in blocks if b.pool == pool.spec.cidr)
        click.echo(f"{pool.spec.cidr:20} /{pool.spec.blockSize:<6} {str(pool.spec.disabled).lower():10} {used}/{size}")
    click.echo("\nBLOCK                NODE           IN USE")
    for block in sorted(blocks, key=lambda b: (b.network.version, b.network)):
        click.echo(
            f"{block.cidr:20} {block.affinity or '<none>':14} {len(block.allocations)}/{block.network.num_addresses}"
        )
    per_node: Counter[str] = Counter()
    for block in blocks:
        per_node[block.affinity or "<none>"] += len(block.allocations)
    click.echo("\nNODE           BLOCKS   IN USE")
    for node in sorted(per_node):
        count = sum(1 for b in blocks if (b.affinity or "<none>") == node)
        click.echo(f"{node:14} {count:<8} {per_node[node]}")
    if corrupt:
        raise click.ClickException(f"{len(corrupt)} corrupt IPAM block{'s' if len(corrupt) != 1 else ''} skipped")


@ipam.command()
@click.pass_obj
def check(ctx):
    """Find leaked, unallocated, duplicate and dangling addresses, and corrupt entries; exit 1 if any."""
    manager = _ipam(ctx)
    report = _run(manager.check)
    _, bad_blocks = _run(manager.read_blocks)
    _, bad_handles = _run(manager.read_handles)
    report["corrupt"] = [f"{key} ({problem})" for key, problem in sorted({**bad_blocks, **bad_handles}.items())]
    for kind, items in report.items():
        click.echo(f"{kind}: {len(items)}")
        for item in items:
            click.echo(f"  {item}")
    if any(report.values()):
        raise SystemExit(1)
