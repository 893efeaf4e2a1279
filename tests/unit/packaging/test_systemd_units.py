"""The bare-metal systemd units: `systemd-analyze verify` finds nothing to say about them (any
warning fails), they run installed commands as the calyx user with only the capabilities their
comments justify, and read their settings from /etc/calyx."""

import configparser
import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
UNITS = ROOT / "packaging" / "systemd"
DAEMONS = {"felix.service": {"CAP_NET_ADMIN"}, "calyx-bgp.service": {"CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE"}}


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read(UNITS / name)
    return parser


def fake_root(tmp_path: Path) -> Path:
    """A root holding systemd's own units, these units, and every executable they start (as stubs)."""
    root = tmp_path / "root"
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for path in UNITS.glob("*.service"):
        shutil.copy(path, root / "etc/systemd/system" / path.name)
        executable = unit(path.name)["Service"]["ExecStart"].split()[0]
        stub = root / executable.lstrip("/")
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\n")
        stub.chmod(0o755)
    return root


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is missing (apt-get install systemd)")
def test_systemd_analyze_verify_has_nothing_to_say(tmp_path):
    names = sorted(path.name for path in UNITS.glob("*.service"))
    assert names == ["calyx-bgp.service", "calyx-etcd.service", "felix.service"]
    result = subprocess.run(
        ["systemd-analyze", "verify", f"--root={fake_root(tmp_path)}", *names],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "info"},
    )
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), result.stderr


@pytest.mark.parametrize("name", sorted(DAEMONS))
def test_daemons_run_unprivileged_with_only_their_capabilities(name):
    service = unit(name)["Service"]
    assert service["User"] == service["Group"] == "calyx"
    assert set(service["AmbientCapabilities"].split()) == set(service["CapabilityBoundingSet"].split()) == DAEMONS[name]
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"
    assert service["Restart"] == "on-failure"


@pytest.mark.parametrize("name", sorted(DAEMONS))
def test_daemons_start_installed_commands_after_the_network(name):
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    parsed = unit(name)
    assert Path(parsed["Service"]["ExecStart"]).name in scripts
    for key in ("After", "Wants"):
        assert "network-online.target" in parsed["Unit"][key].split()
    environment_files = (UNITS / name).read_text().count("EnvironmentFile=-/etc/calyx/")
    assert environment_files == 2  # calyx.env (shared) and the daemon's own


def test_felix_may_write_sysctls_and_calyx_bgp_may_not():
    assert "ProtectKernelTunables" not in unit("felix.service")["Service"]
    assert unit("calyx-bgp.service")["Service"]["ProtectKernelTunables"] == "yes"


def test_stopping_calyx_bgp_does_not_signal_exabgp():
    """ExaBGP given SIGTERM closes its sessions and peers withdraw our routes: only calyx-bgp gets it."""
    assert unit("calyx-bgp.service")["Service"]["KillMode"] == "mixed"


def test_the_calyx_user_is_declared_for_systemd_sysusers():
    lines = (ROOT / "packaging/sysusers.d/calyx.conf").read_text().splitlines()
    assert [line.split()[:2] for line in lines if line and not line.startswith("#")] == [["u", "calyx"]]
