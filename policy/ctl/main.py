"""policyctl: manage Calyx resources in etcd (apply, create, replace, get, delete, validate, diff)."""

import difflib
import json
import sys
from pathlib import Path

import click
import yaml

from policy.ctl.errors import run_datastore as _run
from policy.ctl.explain import MAX_CHECKS, dry_run_summary, explain, flow_summary, read_state
from policy.ctl.flows import flows
from policy.ctl.ipam import ipam
from policy.ctl.node import node
from policy.ctl.output import redacted, render, to_document
from policy.ctl.reachability import reachability
from policy.ctl.workload import workload
from policy.datastore.etcd import EtcdKV
from policy.datastore.keys import key_of, parse_status_key, status_root
from policy.datastore.store import MAX_TXN_OPS, NotFound, Ref, ResourceStore, WriteMode, transactions_for
from policy.model.documents import DocumentError, load_documents
from policy.model.kinds import DEFAULT_NAMESPACE, UnknownKind, resolve_kind
from policy.model.policies import GlobalNetworkPolicy, NetworkPolicy
from policy.model.resources import Resource, WorkloadEndpoint
from policy.runtime.settings import etcd_options, etcd_settings

_DOCUMENT_SUFFIXES = (".yaml", ".yml", ".json")


class Context:
    """Opens the store only when a command needs it, so errors in input come first."""

    def __init__(self, options: dict):
        self._options = options
        self._store: ResourceStore | None = None

    @property
    def store(self) -> ResourceStore:
        if self._store is None:
            prefix = self._options.pop("etcd_prefix")
            try:
                kv = EtcdKV(etcd_settings(**self._options))
            except ValueError as exc:
                raise click.UsageError(str(exc)) from None
            self._store = ResourceStore(kv, prefix)
        return self._store


def _sources(paths: tuple[str, ...], errors: list[str]) -> list[tuple[str, bytes]]:
    """(name, bytes) for each -f: a file, every document file of a directory, or '-' for stdin.

    Bytes, not text: load_documents names the offset of a byte that is not UTF-8. A file that
    cannot be read is added to `errors`, so the other files are still checked."""
    sources = []
    for path in paths:
        if path == "-":
            sources.append(("<stdin>", sys.stdin.buffer.read()))
            continue
        p = Path(path)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix in _DOCUMENT_SUFFIXES)
            if not files:
                errors.append(f"directory {path} holds no {', '.join(_DOCUMENT_SUFFIXES)} files")
        elif p.is_file():
            files = [p]
        else:
            raise click.UsageError(f"{path}: no such file or directory")
        for f in files:
            try:
                sources.append((str(f), f.read_bytes()))
            except OSError as exc:
                errors.append(f"{f}: cannot read: {exc.strerror or exc}")
    return sources


def _load(paths: tuple[str, ...], namespace: str | None) -> list[Resource]:
    """Parse every source before anything is written; every bad document of every file is reported."""
    resources: list[Resource] = []
    errors: list[str] = []
    bad: list[DocumentError] = []
    for name, data in _sources(paths, errors):
        try:
            resources.extend(load_documents(data, name, namespace))
        except DocumentError as exc:
            bad.extend(exc.errors)
    if errors or bad:
        lines = errors + [str(error) for error in bad]
        if len(bad) > 1:
            files = len({error.source for error in bad})
            lines.append(f"{len(bad)} errors in {files} file{'s' if files > 1 else ''}")
        raise click.ClickException("\n".join(lines))
    if not resources:
        raise click.ClickException("no resources in the given input (only empty lists)")
    return resources


def _describe(resource: Resource) -> str:
    return (
        f"{resource.kind} {resource.namespace}/{resource.name}"
        if resource.namespace
        else f"{resource.kind} {resource.name}"
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@etcd_options
@click.pass_context
def cli(ctx, **options):
    """Manage Calyx resources: nodes, workload endpoints, namespaces, policies, tiers, network sets, profiles."""
    ctx.obj = Context(options)


_file_option = click.option(
    "-f",
    "--filename",
    "paths",
    multiple=True,
    required=True,
    help="File, directory of .yaml/.yml/.json files, or - for stdin. Repeatable.",
)
_namespace_option = click.option("-n", "--namespace", default=None, help="Namespace for namespaced resources.")


def _current(store: ResourceStore, resource: Resource) -> Resource | None:
    try:
        return store.get(type(resource), resource.name, resource.namespace)
    except NotFound:
        return None


def _comparable(resource: Resource | None, redact: bool = False, against: Resource | None = None) -> str:
    """The YAML a resource is stored as, without the revision: what diff and dry runs compare.

    With `redact` secrets are shown as <redacted>, or "<redacted> (changed)" where they differ
    from those of `against` (the version it is compared to)."""
    if resource is None:
        return ""
    document = to_document(resource)
    document["metadata"].pop("resourceVersion", None)
    if redact:
        document = redacted(resource, document, against)
    return yaml.safe_dump(document, sort_keys=False)


def _dry_run(store: ResourceStore, resources: list[Resource], mode: WriteMode) -> list[str]:
    """What a write would do, checked against etcd with the same rules, writing nothing."""
    lines, problems = [], []
    for resource in resources:
        current = _current(store, resource)
        if mode is WriteMode.CREATE and current is not None:
            problems.append(f"{_describe(resource)} already exists")
        elif mode is WriteMode.REPLACE and current is None:
            problems.append(f"{_describe(resource)} does not exist")
        elif current is None:
            lines.append(f"{_describe(resource)} would be created (dry run)")
        elif _comparable(current) == _comparable(resource):
            lines.append(f"{_describe(resource)} unchanged (dry run)")
        else:
            lines.append(f"{_describe(resource)} would be updated (dry run)")
    if problems:
        raise click.ClickException("; ".join(problems) + " (dry run: nothing written)")
    return lines


def _write_command(name: str, mode: WriteMode, verb: str, doc: str):
    @cli.command(name, help=doc)
    @_file_option
    @_namespace_option
    @click.option("--dry-run", is_flag=True, help="Validate and check against etcd; write nothing.")
    @click.pass_obj
    def command(ctx: Context, paths, namespace, dry_run):
        resources = _load(paths, namespace)
        if dry_run:
            lines = _run(lambda: _dry_run(ctx.store, resources, mode))
            if any(not line.endswith("unchanged (dry run)") for line in lines):
                lines += dry_run_summary(read_state(ctx.store), resources)
            for line in lines:
                click.echo(line)
            return
        _run(lambda: ctx.store.write(resources, mode))
        for resource in resources:
            click.echo(f"{_describe(resource)} {verb}")
        if (transactions := transactions_for(len(resources))) > 1:
            click.echo(
                f"{len(resources)} resources {verb} in {transactions} etcd transactions (at most {MAX_TXN_OPS} "
                "operations each; a concurrent writer may interleave between them)"
            )

    return command


_write_command("apply", WriteMode.APPLY, "applied", "Create or update resources from files.")
_write_command("create", WriteMode.CREATE, "created", "Create resources; fails if any already exists.")
_write_command("replace", WriteMode.REPLACE, "replaced", "Replace existing resources; fails if any is missing.")


@cli.command()
@_file_option
@_namespace_option
def validate(paths, namespace):
    """Check files without contacting etcd: every document, every field."""
    resources = _load(paths, namespace)
    click.echo(f"{len(resources)} resource{'s' if len(resources) != 1 else ''} valid")


_show_secrets_option = click.option(
    "--show-secrets", is_flag=True, help="Print secrets (BGPPeer passwords) instead of <redacted>."
)


@cli.command()
@_file_option
@_namespace_option
@_show_secrets_option
@click.option(
    "--flows",
    "with_flows",
    is_flag=True,
    help="Also list the flows the change opens and closes; exit 1 if it opens any.",
)
@click.option("--max-checks", type=click.IntRange(1), default=MAX_CHECKS, show_default=True, help="Bound for --flows.")
@click.pass_obj
def diff(ctx: Context, paths, namespace, show_secrets, with_flows, max_checks):
    """Show what applying the files would change, as a unified diff per resource."""
    resources = _load(paths, namespace)
    changed = 0
    for resource in resources:
        current = _run(lambda resource=resource: _current(ctx.store, resource))
        before, after = _comparable(current), _comparable(resource)
        if before == after:
            continue
        if not show_secrets:
            before, after = _comparable(current, redact=True), _comparable(resource, redact=True, against=current)
        changed += 1
        label = _describe(resource)
        click.echo(
            "".join(
                difflib.unified_diff(
                    before.splitlines(True),
                    after.splitlines(True),
                    f"{label} (etcd)" if before else "/dev/null",
                    f"{label} (files)",
                )
            )
        )
    click.echo(f"{changed} of {len(resources)} resources would change")
    if with_flows:
        lines, opened = flow_summary(read_state(ctx.store), resources, max_checks)
        for line in lines:
            click.echo(line)
        if opened:
            click.get_current_context().exit(1)


def _policy_status(store: ResourceStore) -> dict[str, str]:
    """Resource key -> 'node: reason' for every policy some node compiles as drop-all and every
    endpoint some node refused an address of."""
    failures: dict[str, list[str]] = {}
    for page, _ in store.kv.pages(status_root(store.prefix)):
        for item in page:
            node, topic = parse_status_key(store.prefix, item.key) or ("", "")
            if topic != "policies":
                continue
            try:
                reasons = json.loads(item.value)
            except ValueError:
                continue
            for key, reason in reasons.items():
                failures.setdefault(key, []).append(f"{node}: {reason}")
    return {key: "; ".join(reasons) for key, reasons in failures.items()}


def _model(kind: str) -> type[Resource]:
    try:
        return resolve_kind(kind)
    except UnknownKind as exc:
        raise click.UsageError(str(exc)) from None


@cli.command()
@click.argument("kind")
@click.argument("names", nargs=-1)
@_namespace_option
@click.option("-A", "--all-namespaces", is_flag=True, help="List across all namespaces.")
@click.option(
    "-o", "--output", "fmt", type=click.Choice(["table", "wide", "yaml", "json"]), default="table", show_default=True
)
@_show_secrets_option
@click.pass_obj
def get(ctx: Context, kind, names, namespace, all_namespaces, fmt, show_secrets):
    """Show resources of KIND, all or the NAMES given."""
    model = _model(kind)
    ns = None if (all_namespaces and not names) or not model.namespaced else (namespace or DEFAULT_NAMESPACE)
    if names:
        resources = _run(lambda: [ctx.store.get(model, name, ns) for name in names])
    else:
        resources, bad = _run(lambda: ctx.store.list_kind(model, ns))
        for error in bad:
            click.echo(f"warning: skipped unreadable entry: {error}", err=True)
    status = None
    if fmt == "wide" and model in (NetworkPolicy, GlobalNetworkPolicy, WorkloadEndpoint):
        failures = _run(lambda: _policy_status(ctx.store))
        status = {r.name + (r.namespace or ""): failures.get(key_of(ctx.store.prefix, r), "ok") for r in resources}
    single = len(names) == 1
    click.echo(render(model, resources, fmt, all_namespaces, single, status=status, show_secrets=show_secrets))


@cli.command()
@click.argument("kind", required=False)
@click.argument("names", nargs=-1)
@click.option("-f", "--filename", "paths", multiple=True, help="Delete the resources named in these files.")
@_namespace_option
@click.pass_obj
def delete(ctx: Context, kind, names, paths, namespace):
    """Delete KIND NAME... or the resources of -f files (all or none)."""
    if paths and kind:
        raise click.UsageError("give either -f FILE or KIND NAME..., not both")
    if paths:
        refs = [Ref(type(r), r.name, r.namespace) for r in _load(paths, namespace)]
    elif kind and names:
        model = _model(kind)
        ns = (namespace or DEFAULT_NAMESPACE) if model.namespaced else None
        refs = [Ref(model, name, ns) for name in names]
    else:
        raise click.UsageError("give -f FILE or KIND NAME...")
    _run(lambda: ctx.store.delete(refs))
    for ref in refs:
        kind_name = ref.model.model_fields["kind"].default
        click.echo(f"{kind_name} {ref.namespace + '/' if ref.namespace else ''}{ref.name} deleted")


cli.add_command(ipam)
cli.add_command(node)
cli.add_command(explain)
cli.add_command(flows)
cli.add_command(reachability)
cli.add_command(workload)


def main():
    cli(prog_name="policyctl")


if __name__ == "__main__":
    main()
