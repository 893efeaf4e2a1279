"""`calyx-bgp`: register this node's BGP address, then run the BGP daemon until SIGTERM/SIGINT.

On exit ExaBGP is killed without a NOTIFICATION and the kernel's routes stay, so peers and
this node keep forwarding through graceful restart while calyx-bgp is upgraded."""

import functools
import logging
import os
import signal
import threading

import click

from bgp.address import AddressError, HostView, register
from bgp.config import BGP_OPTIONS, BgpConfig
from bgp.daemon import BgpDaemon
from bgp.exabgp import ExaBGPProcess, RedactPasswords
from bgp.metrics import BgpMetrics
from bgp.netlink import NetlinkRoutes
from bgp.speaker import SpeakerControl
from policy.datastore.etcd import EtcdKV
from policy.datastore.kv import KVError
from policy.datastore.store import ResourceStore
from policy.datastore.watch import Backoff
from policy.runtime import httpd
from policy.runtime.httpd import ServeError
from policy.runtime.run_dir import RunDirBusy, hold_run_dir
from policy.runtime.settings import etcd_options, etcd_settings

log = logging.getLogger("calyx-bgp")


def _bgp_options(command):
    return functools.reduce(lambda cmd, option: option(cmd), reversed(BGP_OPTIONS), command)


def _register(config: BgpConfig, kv: EtcdKV, host: HostView, stop: threading.Event) -> bool:
    """Register the node, retrying while etcd is unreachable; False if stopped first."""
    delay = 0.0
    while not stop.is_set():
        try:
            register(
                ResourceStore(kv, config.etcd_prefix),
                config.node_name,
                config.ipv4,
                config.ipv6,
                config.ipv4_method,
                config.ipv6_method,
                config.as_number,
                host,
            )
            return True
        except KVError as exc:
            delay = Backoff(maximum=config.etcd_backoff_max).next(delay)
            log.warning("cannot register node %s yet (%s); retrying in %.1fs", config.node_name, exc, delay)
            stop.wait(delay)
    return False


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@_bgp_options
@etcd_options
def cli(log_level, etcd_prefix, **options):
    """Calyx BGP daemon: announces this node's IPAM blocks and workloads through ExaBGP and
    installs the routes its peers announce."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactPasswords())
    etcd = {k: options.pop(k) for k in list(options) if k.startswith("etcd_") and k != "etcd_backoff_max"}
    try:
        config = BgpConfig(etcd=etcd_settings(**etcd), etcd_prefix=etcd_prefix, log_level=log_level, **options)
        kv = EtcdKV(config.etcd)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        lock = hold_run_dir(config.run_dir)
    except (RunDirBusy, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        _run_daemon(config, kv)
    finally:
        lock.close()


def _run_daemon(config: BgpConfig, kv: EtcdKV) -> None:
    stop = threading.Event()
    daemon: BgpDaemon | None = None

    def on_signal(*_) -> None:
        stop.set()
        if daemon is not None:
            daemon.loop.stop()  # wakes the loop at once

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    routes = NetlinkRoutes()
    try:
        try:
            if not _register(config, kv, HostView(routes.host_addresses, routes.source_for), stop):
                return
        except AddressError as exc:
            raise click.ClickException(str(exc)) from None
        metrics = BgpMetrics()

        def on_message(message: dict) -> None:
            assert daemon is not None  # ExaBGP is started by the daemon, so it exists by now
            daemon.on_exabgp_message(message)

        def on_gone() -> None:
            assert daemon is not None
            daemon.on_exabgp_gone()

        process = ExaBGPProcess(config.run_dir, config.exabgp_path, on_message, on_gone)
        speaker = SpeakerControl(process, config.graceful_restart_time, config.hold_time, metrics, dict(os.environ))
        daemon = BgpDaemon(config, kv, routes, speaker, metrics)
        server = None
        if config.health_port:
            try:
                server = httpd.serve(
                    config.health_host,
                    config.health_port,
                    {"/livez": daemon.loop.liveness, "/readyz": daemon.ready},
                    metrics.registry,
                )
            except ServeError as exc:
                raise click.ClickException(str(exc)) from None
        log.info(
            "calyx-bgp starting on node %s, etcd %s, prefix %s",
            config.node_name,
            ",".join(config.etcd.endpoints),
            config.etcd_prefix,
        )
        try:
            daemon.run(stop)
        finally:
            if server:
                server.shutdown()
    finally:
        routes.close()
        kv.close()


def main():
    cli(prog_name="calyx-bgp")


if __name__ == "__main__":
    main()
