"""The executables `calyx-cni` and `calyx-ipam`: environment and stdin in, one JSON object (or
nothing) on stdout, exit 0 or 1. An error is always the spec's error object with a code and a
message, never a traceback (that goes to the log file, `log_file_path`, one per node)."""

import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING

from felix.cni.config import DEFAULT_LOG_FILE, NetConf, parse_netconf, read_version
from felix.cni.protocol import (
    INTERNAL,
    IO_FAILURE,
    SUPPORTED_VERSIONS,
    CniError,
    Request,
    check_version,
    version_result,
)

if TYPE_CHECKING:
    from felix.cni.delegate import Delegate

log = logging.getLogger("calyx-cni")

Handler = Callable[[Request, NetConf, bytes], dict | None]
LOG_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"


def _configure_logging(program: str, conf: NetConf | None) -> None:
    """Log to the node's file (stderr if it cannot be opened: the runtime keeps that)."""
    path = Path(conf.log_file_path if conf else DEFAULT_LOG_FILE)
    root = logging.getLogger()
    root.handlers.clear()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(path)
    except OSError:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT.replace("%(name)s", program)))
    root.addHandler(handler)
    root.setLevel("WARNING")  # libraries (pyroute2 logs every netlink message at DEBUG) say only what is wrong
    for ours in ("calyx-cni", "felix", "policy"):
        logging.getLogger(ours).setLevel(conf.log_level if conf else "INFO")


def _terminated(signum, frame):
    raise SystemExit(f"terminated by signal {signum}")  # ADD's undo runs on the way out


def invoke(
    program: str,
    make_handler: Callable[[], Handler],
    environ: Mapping[str, str],
    stdin: bytes,
    configure_logging: bool = True,
) -> tuple[dict | None, int]:
    """One invocation: (what to print, exit code). The CNI server logs to its own file and says
    configure_logging=False (one process, many requests, each with its own log_file_path)."""
    version = SUPPORTED_VERSIONS[-1]
    conf = None
    try:
        request = Request.from_environ(environ)
        if request.command == "VERSION":
            return version_result(read_version(stdin) if stdin.strip() else version), 0
        version = read_version(stdin)
        conf = parse_netconf(stdin)
        version = conf.cniVersion
        if configure_logging:
            _configure_logging(program, conf)
        check_version(request.command, version)
        return make_handler()(request, conf, stdin), 0
    except CniError as exc:
        if conf is not None:
            log.error(
                "%s %s: %s %s", environ.get("CNI_COMMAND"), environ.get("CNI_CONTAINERID", ""), exc.msg, exc.details
            )
        return exc.to_json(version), 1
    except (Exception, SystemExit) as exc:
        if not logging.getLogger().handlers:
            _configure_logging(program, conf)
        log.exception("%s failed unexpectedly", environ.get("CNI_COMMAND"))
        where = conf.log_file_path if conf else DEFAULT_LOG_FILE
        return CniError(INTERNAL, f"{program} failed: {type(exc).__name__}: {exc}", f"see {where}").to_json(version), 1


def _main(program: str, make_handler: Callable[[], Handler], stdin: IO[bytes], stdout: IO[str]) -> int:
    signal.signal(signal.SIGTERM, _terminated)
    output: dict | None
    try:
        data = stdin.read()
    except OSError as exc:
        output, code = (
            CniError(IO_FAILURE, f"cannot read the network configuration from stdin: {exc}").to_json(
                SUPPORTED_VERSIONS[-1]
            ),
            1,
        )
    else:
        output, code = invoke(program, make_handler, os.environ, data)
    if output is not None:
        stdout.write(json.dumps(output) + "\n")
        stdout.flush()
    return code


def _cni_handler(delegate: "Delegate | None" = None) -> Handler:
    """calyx-cni's logic; `delegate` runs the IPAM plugin (default: exec it from CNI_PATH)."""
    from felix.cni.dataplane import HostDataplane
    from felix.cni.delegate import run_delegate
    from felix.cni.node import open_datastore
    from felix.cni.plugin import CniPlugin, Services
    from felix.cni.readiness import fetch_readyz

    services = Services(HostDataplane(), delegate or run_delegate, open_datastore, fetch_readyz, _pod_info())
    return CniPlugin(services).run


def _pod_info():
    from felix.cni.kube import pod_info

    return pod_info


def _ipam_handler() -> Handler:
    from felix.cni.ipam import CalyxIpam
    from felix.cni.node import open_datastore

    return CalyxIpam(open_datastore).run


def cni_main() -> None:
    sys.exit(_main("calyx-cni", _cni_handler, sys.stdin.buffer, sys.stdout))


def ipam_main() -> None:
    sys.exit(_main("calyx-ipam", _ipam_handler, sys.stdin.buffer, sys.stdout))
