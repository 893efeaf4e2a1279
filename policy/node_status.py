"""calyx-bgp's published state, one key per node: <prefix>/v1/status/<node>/bgp.

Written by calyx-bgp when it changes, read by `policyctl node status`. The value is JSON:
{"node", "asNumber", "routerID", "exabgp": {"running", "restarts"}, "announced", "installed",
 "sessions": [{"peer", "name", "asNumber", "state", "since", "received", "sent"}], "updated"}
with "since" and "updated" as Unix times."""


def bgp_status_key(prefix: str, node: str) -> str:
    return f"{prefix.rstrip('/')}/v1/status/{node}/bgp"


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
