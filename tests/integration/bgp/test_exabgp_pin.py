"""The ExaBGP calyx-bgp drives is the release it was written and tested against."""

import shutil
import subprocess

import pytest

pytestmark = pytest.mark.integration


def test_exabgp_is_the_pinned_4_2_release():
    out = subprocess.run([shutil.which("exabgp") or "exabgp", "--version"], capture_output=True, text=True, timeout=30)
    version = next(line.split(":", 1)[1].strip() for line in out.stdout.splitlines() if line.startswith("ExaBGP"))
    assert version.startswith("4.2."), f"calyx-bgp supports ExaBGP 4.2 (its API and JSON), found {version}"
