"""policyctl: manage Calyx resources in etcd (apply, create, replace, get, delete)."""

import sys
from pathlib import Path

import click

from policy.documents import DocumentError, load_documents
from policy.etcd import EtcdKV
from policy.kinds import DEFAULT_NAMESPACE, UnknownKind, resolve_kind
from policy.kv import Conflict, KVError, Unavailable
from policy.output import render
from policy.resources import Resource
from policy.settings import etcd_options, etcd_settings
from policy.store import NotFound, Ref, ResourceStore, WriteMode

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


def _sources(paths: tuple[str, ...]) -> list[tuple[str, str]]:
    """(name, text) for each -f: a file, every document file of a directory, or '-' for stdin."""
    sources = []
    for path in paths:
        if path == "-":
            sources.append(("<stdin>", sys.stdin.read()))
            continue
        p = Path(path)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix in _DOCUMENT_SUFFIXES)
        elif p.is_file():
            files = [p]
        else:
            raise click.UsageError(f"{path}: no such file or directory")
        sources.extend((str(f), f.read_text()) for f in files)
    return sources


def _load(paths: tuple[str, ...], namespace: str | None) -> list[Resource]:
    """Parse every source before anything is written; the first bad document aborts all."""
    resources = []
    for name, text in _sources(paths):
        try:
            resources.extend(load_documents(text, name, namespace))
        except DocumentError as exc:
            raise click.ClickException(str(exc)) from None
    if not resources:
        raise click.UsageError("no resources found in the given input")
    return resources


def _describe(resource: Resource) -> str:
    return f"{resource.kind} {resource.namespace}/{resource.name}" if resource.namespace else f"{resource.kind} {resource.name}"


def _run(action):
    """Turn datastore failures into one clear line and exit code 1."""
    try:
        return action()
    except Unavailable as exc:
        raise click.ClickException(f"cannot reach etcd: {exc}") from None
    except (NotFound, Conflict) as exc:
        raise click.ClickException(str(exc)) from None
    except KVError as exc:
        raise click.ClickException(f"etcd: {exc}") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@etcd_options
@click.pass_context
def cli(ctx, **options):
    """Manage Calyx resources: nodes, workload endpoints, namespaces (and later policies)."""
    ctx.obj = Context(options)


_file_option = click.option("-f", "--filename", "paths", multiple=True, required=True,
                            help="File, directory of .yaml/.yml/.json files, or - for stdin. Repeatable.")
_namespace_option = click.option("-n", "--namespace", default=None, help="Namespace for namespaced resources.")


def _write_command(name: str, mode: WriteMode, verb: str, doc: str):
    @cli.command(name, help=doc)
    @_file_option
    @_namespace_option
    @click.pass_obj
    def command(ctx: Context, paths, namespace):
        resources = _load(paths, namespace)
        _run(lambda: ctx.store.write(resources, mode))
        for resource in resources:
            click.echo(f"{_describe(resource)} {verb}")
    return command


_write_command("apply", WriteMode.APPLY, "applied", "Create or update resources from files.")
_write_command("create", WriteMode.CREATE, "created", "Create resources; fails if any already exists.")
_write_command("replace", WriteMode.REPLACE, "replaced", "Replace existing resources; fails if any is missing.")


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
@click.option("-o", "--output", "fmt", type=click.Choice(["table", "wide", "yaml", "json"]), default="table", show_default=True)
@click.pass_obj
def get(ctx: Context, kind, names, namespace, all_namespaces, fmt):
    """Show resources of KIND, all or the NAMES given."""
    model = _model(kind)
    ns = None if (all_namespaces and not names) or not model.namespaced else (namespace or DEFAULT_NAMESPACE)
    if names:
        resources = _run(lambda: [ctx.store.get(model, name, ns) for name in names])
    else:
        resources, bad = _run(lambda: ctx.store.list(model, ns))
        for error in bad:
            click.echo(f"warning: skipped unreadable entry: {error}", err=True)
    click.echo(render(model, resources, fmt, all_namespaces, single=len(names) == 1))


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


def main():
    cli(prog_name="policyctl")


if __name__ == "__main__":
    main()
