"""Waiting for the node's felix: ADD returns only once felix reports (on /readyz) a programmed
revision at or past the endpoint's write, so no packet reaches a pod its policy has not seen."""

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from felix.cni.protocol import NOT_AVAILABLE, TRY_AGAIN_LATER, CniError

HINT = "is calyx-node (felix) running on this node, and is felix_health_url right?"
# Polls start at 2 ms and double up to this: felix programs an endpoint in 50-100 ms when it holds
# 10,000 (tests/bench/bench_cni.py), and a 50 ms cap added up to 50 ms more to every ADD.
MAX_POLL_INTERVAL = 0.01

# url -> the /readyz body (felix answers 503 with the same body while not ready)
Fetch = Callable[[str], dict]


def fetch_readyz(url: str) -> dict:
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/readyz", timeout=2) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())


def felix_status(url: str, fetch: Fetch = fetch_readyz) -> dict:
    """felix's status, or NOT_AVAILABLE saying why it cannot be had."""
    try:
        status = fetch(url)
    except (OSError, ValueError) as exc:
        raise CniError(NOT_AVAILABLE, f"felix does not answer at {url}: {exc}", HINT) from None
    if not isinstance(status, dict) or not isinstance(status.get("programmedRevision"), int):
        raise CniError(NOT_AVAILABLE, f"{url}/readyz is not felix's status: {str(status)[:200]}", HINT)
    return status


def wait_programmed(
    url: str,
    revision: int,
    timeout: float,
    fetch: Fetch = fetch_readyz,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Poll until felix's programmedRevision >= revision; seconds waited, or TRY_AGAIN_LATER."""
    started = clock()
    deadline, interval, last = started + timeout, 0.002, "no answer yet"
    while True:
        try:
            status = felix_status(url, fetch)
            if status["programmedRevision"] >= revision:
                return clock() - started
            last = f"programmed revision {status['programmedRevision']}, in sync {status.get('inSync')}"
        except CniError as exc:
            last = exc.msg
        if clock() >= deadline:
            raise CniError(
                TRY_AGAIN_LATER,
                f"felix did not program the endpoint (etcd revision {revision}) within {timeout:g}s: {last}",
                HINT,
            )
        sleep(min(interval, max(0.0, deadline - clock())))
        interval = min(interval * 2, MAX_POLL_INTERVAL)
