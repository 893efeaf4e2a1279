"""Names every Calyx part must agree on."""

import hashlib

HOST_INTERFACE_PREFIX = "cx"
WORKLOAD_INTERFACE_PATTERN = f"{HOST_INTERFACE_PREFIX}*"  # nft's wildcard for every workload interface


def host_interface_name(namespace: str, workload: str) -> str:
    """`cx` + 11 hex chars of sha1("<namespace>.<workload>"): stable, unique enough, 13 chars."""
    digest = hashlib.sha1(f"{namespace}.{workload}".encode()).hexdigest()
    return f"{HOST_INTERFACE_PREFIX}{digest[:11]}"
