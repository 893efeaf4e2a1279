"""Render ExaBGP's configuration, environment and API commands from the plan (pure text).

ExaBGP only speaks: every neighbor sends its updates to our API process (the bridge) and
takes its announcements from it; ExaBGP never touches the kernel."""

import ipaddress
import re
from collections.abc import Iterable

from bgp.plan import BGP_PORT, Peer, Speaker
from policy.model.bgp import REDACTED

PROCESS = "calyx"
NLRI_PER_COMMAND = 2000  # one acknowledged command carries this many prefixes

# ExaBGP's log levels, by BGPConfiguration.logSeverityScreen. Its INFO is a line per route
# announced, so Info maps to NOTICE (sessions, reloads) and only Debug shows routes.
_LOG_LEVELS = {"Debug": "DEBUG", "Info": "NOTICE", "Warning": "WARNING", "Error": "ERR", "Fatal": "CRIT"}


def render_config(speaker: Speaker, bridge_command: str, graceful_restart: int, hold_time: int) -> str:
    process = [f"process {PROCESS} {{", f"    run {bridge_command};", "    encoder json;", "}", ""]
    blocks = neighbor_blocks(speaker, graceful_restart, hold_time)
    return "\n".join(process + list(blocks.values()))


def neighbor_blocks(speaker: Speaker, graceful_restart: int, hold_time: int) -> dict[str, str]:
    """Each peer's `neighbor` block by its address: what tells an added or removed peer (a reload)
    from a changed one (a restart)."""
    return {peer.address: "\n".join(_neighbor(speaker, peer, graceful_restart, hold_time)) for peer in speaker.peers}


def _neighbor(speaker: Speaker, peer: Peer, graceful_restart: int, hold_time: int) -> list[str]:
    family = "ipv4 unicast" if ipaddress.ip_address(peer.address).version == 4 else "ipv6 unicast"
    lines = [
        f"neighbor {peer.address} {{",
        f'    description "{peer.name}";',
        f"    router-id {speaker.router_id};",
        f"    local-as {peer.local_as or speaker.as_number};",
        f"    peer-as {peer.as_number};",
        f"    hold-time {hold_time};",
        "    group-updates true;",
        "    manual-eor true;",
    ]  # End-of-RIB only once calyx-bgp has announced everything
    if peer.local_address:
        lines.append(f"    local-address {peer.local_address};")
    if peer.port != BGP_PORT:
        lines.append(f"    connect {peer.port};")
    if peer.ttl_security:  # GTSM (RFC 5082): send at 255, accept no less than 255 - (hops - 1)
        lines += ["    outgoing-ttl 255;", f"    incoming-ttl {256 - peer.ttl_security};"]
    if peer.passive:
        lines.append("    passive true;")
    if peer.password:
        lines.append(f'    md5-password "{_quoted(peer.password)}";')
    lines += [
        f"    capability {{ graceful-restart {peer.restart_time or graceful_restart}; route-refresh enable; }}",
        f"    family {{ {family}; }}",
        f"    api {{ processes [ {PROCESS} ]; neighbor-changes; receive {{ parsed; update; open; }} }}",
        "}",
        "",
    ]
    return lines


# What follows the keyword up to the end of the line: `md5-password "pw";` as rendered, and
# ExaBGP's debug dump of its configuration (`. md5-password     | 'pw'`).
_PASSWORD_TEXT = re.compile(r"(md5[-_]password)\b[^\n]*", re.IGNORECASE)
_RENDERED_PASSWORD = re.compile(r'md5-password "([^"\n]*)";')
MIN_LITERAL_SECRET = 4  # shorter secrets are redacted by keyword only (replacing "a" would maul the log)


def config_secrets(config: str) -> frozenset[str]:
    """The passwords a rendered configuration holds."""
    return frozenset(_RENDERED_PASSWORD.findall(config))


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` fit for a log: every md5-password's value, and each of `secrets` wherever it
    appears, replaced by <redacted>."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= MIN_LITERAL_SECRET:
            text = text.replace(secret, REDACTED)
    return _PASSWORD_TEXT.sub(lambda match: f"{match.group(1)} {REDACTED}", text)


def _quoted(text: str) -> str:
    if '"' in text or "\n" in text:
        raise ValueError("a BGP password cannot hold a double quote or a newline")
    return text


def environment(speaker: Speaker, base: dict[str, str]) -> dict[str, str]:
    """ExaBGP reads its settings from the environment: run as root (TCP MD5 and port 179 need
    it), listen on the node's addresses, end when our API process ends."""
    env = dict(base)
    env.update(
        {
            "exabgp.daemon.user": "root",
            "exabgp.daemon.daemonize": "false",
            "exabgp.tcp.bind": " ".join(speaker.addresses),
            "exabgp.tcp.port": str(speaker.listen_port),
            "exabgp.api.ack": "true",
            "exabgp.api.terminate": "true",
            "exabgp.api.respawn": "false",
            "exabgp.reactor.speed": "0.1",
            "exabgp.log.level": _LOG_LEVELS.get(speaker.log_severity, "NOTICE"),
            "exabgp.log.destination": "stdout",
            "exabgp.log.routes": "false",
            "exabgp.log.packets": "false",
            "exabgp.log.message": "false",
        }
    )
    return env


def announce_commands(routes: dict[str, tuple[str, ...]], peers: list[str]) -> list[str]:
    """One `announce attributes` command per (family, communities) and chunk of prefixes, sent
    to the peers of that family only."""
    commands = []
    for (version, communities), prefixes in _grouped(routes):
        attributes = "next-hop self" + _community_attributes(communities)
        target = _neighbors(peers, version)
        for chunk in _chunks(prefixes) if target else ():
            commands.append(f"{target}announce attributes {attributes} nlri {' '.join(chunk)}")
    return commands


def withdraw_commands(prefixes: Iterable[str], peers: list[str]) -> list[str]:
    commands = []
    for (version, _), group in _grouped({p: () for p in prefixes}):
        target = _neighbors(peers, version)
        for chunk in _chunks(group) if target else ():
            commands.append(f"{target}withdraw attributes next-hop self nlri {' '.join(chunk)}")
    return commands


def end_of_rib_command(peer: str) -> str:
    family = "ipv4" if ipaddress.ip_address(peer).version == 4 else "ipv6"
    return f"neighbor {peer} announce eor {family} unicast"


def _neighbors(peers: list[str], version: int) -> str:
    """ExaBGP's neighbor selector: `neighbor A , neighbor B ` (empty when no peer has the family)."""
    chosen = [f"neighbor {p}" for p in sorted(peers) if ipaddress.ip_address(p).version == version]
    return " , ".join(chosen) + " " if chosen else ""


def _grouped(routes: dict[str, tuple[str, ...]]) -> list[tuple[tuple[int, tuple[str, ...]], list[str]]]:
    groups: dict[tuple[int, tuple[str, ...]], list[str]] = {}
    for prefix in sorted(routes):
        groups.setdefault((ipaddress.ip_network(prefix).version, routes[prefix]), []).append(prefix)
    return sorted(groups.items())


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), NLRI_PER_COMMAND):
        yield items[start : start + NLRI_PER_COMMAND]


def _community_attributes(communities: tuple[str, ...]) -> str:
    standard = [c for c in communities if c.count(":") == 1]
    large = [c for c in communities if c.count(":") == 2]
    text = f" community [ {' '.join(standard)} ]" if standard else ""
    return text + (f" large-community [ {' '.join(large)} ]" if large else "")
