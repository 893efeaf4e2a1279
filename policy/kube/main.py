"""`calyx-kube-controllers`: keep etcd in step with Kubernetes until SIGTERM/SIGINT (one replica)."""

import functools
import logging
import signal

import click
import kubernetes

from policy.datastore.etcd import EtcdKV
from policy.kube.client import KubeClient, api_client
from policy.kube.controller import ControllerConfig, KubeControllers
from policy.runtime import httpd
from policy.runtime.settings import (
    BACKOFF_OPTION,
    LOG_LEVEL_OPTION,
    MAX_REFRESH,
    etcd_options,
    etcd_settings,
    finite,
    health_options,
    setting,
)

HEALTH_PORT = 9097
_SECONDS = click.FloatRange(min=1.0, max=MAX_REFRESH)

OPTIONS = [
    setting(
        "--kubeconfig",
        envvar="KUBECONFIG",
        type=click.Path(exists=True, dir_okay=False, readable=True),
        default=None,
        help="kubeconfig file; unset: the pod's service account (in-cluster).",
    ),
    *health_options("CALYX_KUBE_", HEALTH_PORT),
    setting(
        "--reconcile-interval",
        envvar="CALYX_KUBE_RECONCILE_INTERVAL",
        type=_SECONDS,
        callback=finite,
        default=300.0,
        show_default=True,
        help="Seconds between full comparisons of every key with etcd.",
    ),
    setting(
        "--compaction-interval",
        envvar="CALYX_KUBE_COMPACTION_INTERVAL",
        type=click.FloatRange(min=0.0, max=MAX_REFRESH),
        callback=finite,
        default=600.0,
        show_default=True,
        help="Seconds between etcd compactions, each to the revision of the one before (0 disables).",
    ),
    setting(
        "--node-release-grace",
        envvar="CALYX_KUBE_NODE_RELEASE_GRACE",
        type=_SECONDS,
        callback=finite,
        default=300.0,
        show_default=True,
        help="Seconds a node must be gone from Kubernetes before its IPAM blocks and addresses are released.",
    ),
    setting(
        "--node-recheck-interval",
        envvar="CALYX_KUBE_NODE_RECHECK_INTERVAL",
        type=_SECONDS,
        callback=finite,
        default=30.0,
        show_default=True,
        help="Seconds between looks at a deleted node whose pods are still listed.",
    ),
    BACKOFF_OPTION,
    LOG_LEVEL_OPTION,
]


def _options(command):
    return functools.reduce(lambda cmd, option: option(cmd), reversed(OPTIONS), command)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@_options
@etcd_options
def cli(
    kubeconfig,
    health_host,
    health_port,
    reconcile_interval,
    compaction_interval,
    node_release_grace,
    node_recheck_interval,
    etcd_backoff_max,
    log_level,
    etcd_prefix,
    **etcd,
):
    """Calyx's Kubernetes controllers: namespaces, pods, service accounts, network policies and
    nodes, from the Kubernetes API into etcd."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        client = api_client(kubeconfig)
    except (kubernetes.config.ConfigException, OSError, ValueError) as exc:
        where = f"kubeconfig {kubeconfig}" if kubeconfig else "in-cluster configuration (no --kubeconfig given)"
        raise click.UsageError(f"cannot use the {where}: {exc}") from None
    try:
        kv = EtcdKV(etcd_settings(**etcd))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    config = ControllerConfig(
        etcd_prefix,
        reconcile_interval,
        compaction_interval,
        node_release_grace,
        node_recheck_interval,
        etcd_backoff_max,
    )
    controllers = KubeControllers(config, kv, KubeClient(client), compact=kv.compact)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: controllers.loop.stop())
    server = None
    if health_port:
        probes = {"/livez": controllers.liveness, "/readyz": controllers.readiness}
        try:
            server = httpd.serve(health_host, health_port, probes, controllers.metrics.registry)
        except httpd.ServeError as exc:
            kv.close()
            raise click.ClickException(str(exc)) from None
    logging.getLogger("policy.kube").info(
        "calyx-kube-controllers starting: API server %s, etcd %s, prefix %s",
        client.configuration.host,
        etcd["etcd_endpoints"],
        etcd_prefix,
    )
    try:
        controllers.run()
    finally:
        if server:
            server.shutdown()
        kv.close()
        client.close()


def main():
    cli(prog_name="calyx-kube-controllers")


if __name__ == "__main__":
    main()
