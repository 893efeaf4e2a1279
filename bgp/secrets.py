"""BGP passwords given by reference (Calico's `secretKeyRef: {name, key}`): Calyx runs without
Kubernetes Secrets on bare metal, so a secret is the file <secrets dir>/<name>/<key>, as a
Kubernetes Secret volume mounted there lays it out (docs/bgp.md)."""

import logging
from collections.abc import Iterable
from pathlib import Path

from bgp.plan import SecretRef

log = logging.getLogger(__name__)

MAX_PASSWORD = 80  # TCP MD5 keys are at most 80 bytes


def read_secrets(directory: Path, refs: Iterable[SecretRef]) -> tuple[dict[SecretRef, str], dict[SecretRef, str]]:
    """(value by reference, why not by reference) for each reference; one trailing newline is
    dropped (what `echo pw > file` adds). A secret that cannot be used is absent from the values,
    so the plan leaves its sessions out instead of opening them without a password."""
    values: dict[SecretRef, str] = {}
    problems: dict[SecretRef, str] = {}
    for ref in sorted(set(refs)):
        name, key = ref
        path = directory / name / key
        try:
            text = path.read_bytes().decode("utf-8").removesuffix("\n")
        except FileNotFoundError:
            problems[ref] = f"{path} does not exist"
            continue
        except (OSError, UnicodeDecodeError) as exc:
            problems[ref] = f"{path} cannot be read: {exc}"
            continue
        if not 1 <= len(text.encode()) <= MAX_PASSWORD or '"' in text or "\n" in text:
            problems[ref] = f"{path} is not a usable password (1-{MAX_PASSWORD} bytes on one line, no double quote)"
            continue
        values[ref] = text
    return values, problems
