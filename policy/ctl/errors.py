"""One place that turns datastore and IPAM failures into a clear line and exit code 1."""

import click

from policy.datastore.ipam import IPAMError
from policy.datastore.kv import Conflict, KVError, Unavailable
from policy.datastore.store import NotFound, PartiallyWritten


def run_datastore(action):
    try:
        return action()
    except IPAMError as exc:
        raise click.ClickException(str(exc)) from None
    except Unavailable as exc:
        raise click.ClickException(f"cannot reach etcd: {exc}") from None
    except (NotFound, Conflict, PartiallyWritten) as exc:
        raise click.ClickException(str(exc)) from None
    except KVError as exc:
        raise click.ClickException(f"etcd: {exc}") from None
