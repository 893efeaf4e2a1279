"""calyx-ui: a web page with the reachability matrix (from etcd) and the live denied flows (from
every node's felix). A cluster-wide view, so its own command rather than part of the node agent
(docs/decisions.md)."""

import ipaddress
import signal
import threading

import click

from policy.ctl.flows import FELIX_PORT
from policy.ctl.reachability import matrix_options
from policy.datastore.etcd import EtcdKV
from policy.datastore.store import ResourceStore
from policy.model.selector import SelectorError, parse_selector
from policy.runtime.settings import etcd_options, etcd_settings, setting
from policy.ui.board import Board, Question
from policy.ui.server import serve

DEFAULT_LISTEN = "127.0.0.1:9096"


def parse_listen(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, int]:
    """HOST:PORT or [IPV6]:PORT, HOST an IP address."""
    host, colon, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    try:
        if not colon or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError
        return str(ipaddress.ip_address(host)), int(port)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not ADDRESS:PORT (e.g. 127.0.0.1:9096 or [::1]:9096)") from None


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@etcd_options
@matrix_options
@setting(
    "--listen",
    envvar="CALYX_UI_LISTEN",
    default=DEFAULT_LISTEN,
    show_default=True,
    callback=parse_listen,
    help="ADDRESS:PORT to serve the page on (127.0.0.1: this host only).",
)
@click.option("--felix", multiple=True, metavar="URL", help="felix's health URL instead of the Node resources.")
@click.option("--felix-port", type=click.IntRange(1, 65535), default=FELIX_PORT, show_default=True)
@click.option("--interval", type=click.FloatRange(0.1, 60), default=1.0, show_default=True, help="Flow poll interval.")
@click.option(
    "--refresh",
    type=click.FloatRange(0.5, 3600),
    default=5.0,
    show_default=True,
    help="Seconds between checks that etcd's resources changed (the matrix is recomputed only then).",
)
def cli(
    etcd_prefix, namespace, selector, port, protocol, network_sets, ipv6, max_checks, listen, felix, felix_port,
    interval, refresh, **etcd,
):  # fmt: skip
    """Serve a page with the reachability matrix and the denied flows felix logs on each node."""
    try:
        parse_selector(selector or "all()")
    except SelectorError as exc:
        raise click.BadParameter(str(exc), param_hint="-l") from None
    try:
        store = ResourceStore(EtcdKV(etcd_settings(**etcd)), etcd_prefix)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    question = Question(namespace, selector, port, protocol, network_sets, ipv6, max_checks)
    board = Board(store, question, felix=felix, felix_port=felix_port)
    host, port_number = listen
    try:
        server = serve(board, host, port_number)
    except OSError as exc:
        raise click.ClickException(f"cannot serve on {host}:{port_number} (--listen): {exc.strerror or exc}") from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    where = f"[{host}]" if ":" in host else host
    click.echo(f"calyx-ui serving http://{where}:{server.server_address[1]}/", err=True)
    board.run(stop, interval, refresh)
    server.shutdown()
    store.kv.close()


def main():
    cli(prog_name="calyx-ui")


if __name__ == "__main__":
    main()
