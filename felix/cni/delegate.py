"""Running a delegated plugin (IPAM) as the spec's section 4 says: the executable of that name
in CNI_PATH, the same environment and configuration, its stderr passed through."""

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence

from felix.cni.protocol import INVALID_CONFIG, TRY_AGAIN_LATER, CniError

DELEGATE_TIMEOUT = 120.0  # the IPAM plugin bounds its own etcd calls; this only stops a hung one

# (plugin type, command, environment, configuration bytes) -> the plugin's JSON output (None if empty)
Delegate = Callable[[str, str, Mapping[str, str], bytes], dict | None]


def find_plugin(plugin_type: str, path: Sequence[str]) -> str:
    for directory in path:
        candidate = os.path.join(directory, plugin_type)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise CniError(
        INVALID_CONFIG,
        f"IPAM plugin {plugin_type!r} not found in CNI_PATH ({':'.join(path) or 'empty'})",
        "install it next to calyx-cni, or fix ipam.type",
    )


def run_delegate(plugin_type: str, command: str, environ: Mapping[str, str], stdin: bytes) -> dict | None:
    path = tuple(p for p in environ.get("CNI_PATH", "").split(":") if p)
    executable = find_plugin(plugin_type, path)
    try:
        done = subprocess.run(
            [executable],
            input=stdin,
            stdout=subprocess.PIPE,
            stderr=sys.stderr,
            env={**environ, "CNI_COMMAND": command},
            timeout=DELEGATE_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise CniError(
            TRY_AGAIN_LATER, f"IPAM plugin {plugin_type} {command} did not finish in {DELEGATE_TIMEOUT:.0f}s"
        ) from None
    except OSError as exc:
        raise CniError(INVALID_CONFIG, f"cannot run IPAM plugin {executable}: {exc}") from None
    return plugin_answer(plugin_type, command, done.returncode, done.stdout)


def plugin_answer(plugin_type: str, command: str, returncode: int, stdout: bytes) -> dict | None:
    """A delegated plugin's exit code and stdout as the spec reads them: its result, or its error raised."""
    output = stdout.decode(errors="replace").strip()
    try:
        data = json.loads(output) if output else None
    except ValueError:
        data = None
    if returncode != 0:
        if isinstance(data, dict) and "code" in data:
            raise CniError(
                int(data["code"]), f"IPAM plugin {plugin_type}: {data.get('msg', '')}", str(data.get("details", ""))
            )
        raise CniError(100, f"IPAM plugin {plugin_type} {command} failed (exit {returncode}): {output[:500]!r}")
    if output and not isinstance(data, dict):
        raise CniError(100, f"IPAM plugin {plugin_type} {command} printed something that is not a JSON object")
    return data
