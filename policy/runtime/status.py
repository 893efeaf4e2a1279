"""Per-node status: written by the daemons, read by `policyctl`, kept outside the watched tree.

    <prefix>/status/<node>/bgp       calyx-bgp: {"node", "asNumber", "routerID", "exabgp": {"running",
                                     "restarts"}, "announced", "installed", "sessions": [{"peer", "name",
                                     "asNumber", "state", "since", "received", "sent"}], "updated"}
    <prefix>/status/<node>/policies  felix: {resource key: reason} for policies compiled as drop-all
                                     and endpoints refused an address (held by an older endpoint);
                                     absent when there is none

"since" and "updated" are Unix times."""

import json
import logging

from policy.datastore.keys import status_key
from policy.datastore.kv import ANY, KV, KVError, Write

log = logging.getLogger(__name__)
_NOTHING = object()  # nothing written yet: the first value is always due


def bgp_status_key(prefix: str, node: str) -> str:
    return status_key(prefix, node, "bgp")


def policy_status_key(prefix: str, node: str) -> str:
    return status_key(prefix, node, "policies")


class StatusWriter:
    """Writes one status key when its value changed; None deletes it. A failed write is retried
    by the next call (the daemons call it from their loop)."""

    def __init__(self, kv: KV, key: str):
        self._kv, self.key = kv, key
        self.written: object = _NOTHING

    def due(self, value: object) -> bool:
        return value != self.written

    def write(self, value: object, encoded: bytes | None = None) -> bool:
        """Store `value` (as sorted JSON unless `encoded` is given); False when etcd refused."""
        if encoded is None and value is not None:
            encoded = json.dumps(value, sort_keys=True).encode()
        try:
            self._kv.commit([Write(self.key, encoded, ANY)])
        except KVError as exc:
            log.warning("could not publish %s (will retry): %s", self.key, exc)
            return False
        self.written = value
        return True


def uptime(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    return f"{minutes}m{seconds}s" if minutes else f"{seconds}s"
