"""The BGP MD5 passwords: ExaBGP's configuration is written 0600 in a 0700 run directory, and
nothing ExaBGP prints (its configuration dump included) reaches the log with a password in it."""

import io
import logging
import os
import stat
import sys
import time
from pathlib import Path

import pytest

from bgp.exabgp import ExaBGPProcess, relay_output
from bgp.exabgp_config import config_secrets, redact, render_config
from bgp.plan import Peer, Speaker
from policy.runtime.private_files import private_dir, write_private

PASSWORD = "hunter2-bgp"
SPEAKER = Speaker("10.0.0.1", 64512, 179, ("10.0.0.1",), (Peer("10.0.0.9", 65001, "tor", True, None, PASSWORD),))

# Stands in for ExaBGP: prints its configuration as ExaBGP's debug level does (and an error
# quoting a line of it on stderr), then connects to the API socket as the bridge would.
FAKE_EXABGP = f"""#!{sys.executable}
import socket, sys, time
config = open(sys.argv[1]).read()
print("07:34:05 | 10957  | configuration   | . md5-password     | '{PASSWORD}'")
print(config)
sys.stderr.write('07:34:05 | 10957 | configuration | error in: md5-password "{PASSWORD}";\\n')
sys.stdout.flush()
sys.stderr.flush()
s = socket.socket(socket.AF_UNIX)
s.connect("api.sock")
time.sleep(30)
"""


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_config_is_0600_in_a_0700_run_dir_and_exabgp_output_is_logged_redacted(tmp_path, caplog, capfd):
    run_dir = tmp_path / "run" / "bgp"
    run_dir.mkdir(parents=True, mode=0o755)
    run_dir.chmod(0o755)  # as an older calyx-bgp (or mkdir -p) left it
    (run_dir / "exabgp.conf").write_text("old")
    (run_dir / "exabgp.conf").chmod(0o644)
    fake = tmp_path / "fake-exabgp"
    fake.write_text(FAKE_EXABGP)
    fake.chmod(0o755)
    process = ExaBGPProcess(run_dir, str(fake), lambda message: None, lambda: None, connect_timeout=10)
    config = render_config(SPEAKER, process.bridge_command(), 120, 90)
    assert PASSWORD in config
    with caplog.at_level(logging.INFO):
        try:
            process.start(config, {"PATH": "/usr/bin:/bin"})
            deadline = time.monotonic() + 10
            while "error in: md5-password" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            process.stop()
    assert mode(run_dir) == 0o700
    assert mode(run_dir / "exabgp.conf") == 0o600
    assert (run_dir / "exabgp.conf").read_text() == config
    assert [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")] == []
    out, err = capfd.readouterr()
    assert "error in: md5-password <redacted>" in caplog.text, caplog.text
    assert ". md5-password <redacted>" in caplog.text and 'description "tor";' in caplog.text
    assert PASSWORD not in caplog.text and PASSWORD not in out and PASSWORD not in err


def test_relay_output_logs_each_line_redacted(caplog):
    stream = io.BytesIO(f"a line\n. md5-password | '{PASSWORD}'\nthe key {PASSWORD} again\n".encode() + b"\xff\n")
    with caplog.at_level(logging.INFO, logger="exabgp"):
        relay_output(stream, frozenset({PASSWORD}))
    lines = [r.getMessage() for r in caplog.records if r.name == "exabgp"]
    assert lines == ["a line", ". md5-password <redacted>", "the key <redacted> again", "\ufffd"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ('    md5-password "p w;x";', "    md5-password <redacted>"),
        (". md5-password     | 'pw'", ". md5-password <redacted>"),
        ("MD5_PASSWORD=pw", "MD5_PASSWORD <redacted>"),
        ("no secret here", "no secret here"),
    ],
)
def test_redact_removes_everything_after_the_keyword(text, expected):
    assert redact(text) == expected


def test_config_secrets_are_the_rendered_passwords():
    config = render_config(SPEAKER, "/bin/bridge", 120, 90)
    assert config_secrets(config) == {PASSWORD}
    assert PASSWORD not in repr(SPEAKER)  # a Peer never shows its password in a log line


def test_write_private_replaces_a_readable_file_atomically_with_mode_0600(tmp_path):
    target = tmp_path / "secret.conf"
    target.write_text("old")
    target.chmod(0o644)
    umask = os.umask(0)  # whatever umask the daemon runs with
    try:
        write_private(target, "new")
    finally:
        os.umask(umask)
    assert target.read_text() == "new" and mode(target) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.conf"]


def test_private_dir_tightens_an_existing_directory(tmp_path):
    path = tmp_path / "a" / "b"
    private_dir(path)
    assert mode(path) == 0o700
    path.chmod(0o755)
    private_dir(path)
    assert mode(path) == 0o700
