"""`felix`: run the node agent until SIGTERM/SIGINT; the kernel state is left as programmed."""

import functools
import logging
import os
import signal
from pathlib import Path

import click

from felix.agent import Agent
from felix.config import AGENT_OPTIONS, AgentConfig
from felix.flows import FlowLogSettings
from felix.health import serve
from felix.netlink import NetlinkKernel
from felix.nft import CounterReader, LibNftables
from felix.rule_counters import RuleCounters
from policy.compiler.observe import Observe
from policy.compiler.ruleset import HostAccess
from policy.datastore.etcd import EtcdKV
from policy.runtime.httpd import ServeError
from policy.runtime.run_dir import RunDirBusy, hold_run_dir
from policy.runtime.settings import etcd_options, etcd_settings


def _agent_options(command):
    return functools.reduce(lambda cmd, option: option(cmd), reversed(AGENT_OPTIONS), command)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@_agent_options
@etcd_options
def cli(
    node_name,
    health_host,
    health_port,
    route_refresh_interval,
    etcd_backoff_max,
    log_level,
    default_endpoint_to_host_action,
    endpoint_to_host_allow,
    run_dir,
    nodename_file,
    flow_logs,
    flow_log_group,
    flow_log_capacity,
    flow_log_rate,
    policy_counters,
    etcd_prefix,
    **etcd,
):
    """Calyx node agent: programs routes and nftables policy for local workloads from etcd."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = AgentConfig(
            node_name,
            etcd_settings(**etcd),
            etcd_prefix,
            health_host,
            health_port,
            route_refresh_interval,
            etcd_backoff_max,
            log_level,
            HostAccess(default_endpoint_to_host_action, endpoint_to_host_allow),
            run_dir,
            nodename_file,
            Observe(flow_log_group if flow_logs else None, policy_counters),
            FlowLogSettings(capacity=flow_log_capacity, rate=flow_log_rate, burst=flow_log_rate),
        )
        kv = EtcdKV(config.etcd)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        lock = hold_run_dir(config.run_dir)
    except (RunDirBusy, OSError) as exc:
        kv.close()
        raise click.ClickException(str(exc)) from None
    try:
        record_node_name(config.nodename_file, config.node_name)
    except OSError as exc:
        lock.close()
        kv.close()
        raise click.ClickException(
            f"cannot record the node name in {config.nodename_file} (--nodename-file): {exc}"
        ) from None
    try:
        _run_agent(config, kv)
    finally:
        lock.close()


def record_node_name(path: Path, node_name: str) -> None:
    """Write the node name where calyx-cni looks for it (atomically: a plugin never reads half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(node_name)
    os.replace(tmp, path)


def _run_agent(config: AgentConfig, kv: EtcdKV) -> None:
    kernel = NetlinkKernel()
    agent = Agent(config, kv, kernel, LibNftables())
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: agent.loop.stop())
    if config.observe.counters:
        agent.metrics.registry.register(RuleCounters(CounterReader().read))
    server = None
    if config.health_port:
        try:
            server = serve(
                config.health_host,
                config.health_port,
                agent.status,
                agent.loop.liveness,
                agent.metrics.registry,
                agent.flow_log,
            )
        except ServeError as exc:
            kv.close()
            kernel.close()
            raise click.ClickException(str(exc)) from None
    logging.getLogger("felix").info(
        "felix starting on node %s, etcd %s, prefix %s",
        config.node_name,
        ",".join(config.etcd.endpoints),
        config.etcd_prefix,
    )
    try:
        agent.run()
    finally:
        if server:
            server.shutdown()
        kv.close()
        kernel.close()


def main():
    cli(prog_name="felix")


if __name__ == "__main__":
    main()
