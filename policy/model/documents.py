"""Turn YAML/JSON documents into resources, with errors that name the file, document and field."""

from dataclasses import dataclass
from typing import Any

import pydantic
import yaml

from policy.model.kinds import DEFAULT_NAMESPACE, KINDS
from policy.model.kubernetes import KUBERNETES_NETWORKING_API_VERSION, KubernetesNetworkPolicy, convert
from policy.model.resources import API_VERSION, CALICO_API_VERSION, NAMESPACE_NAME_LABEL, Resource

KUBERNETES_CORE_API_VERSION = "v1"


@dataclass(frozen=True)
class Problem:
    field: str
    message: str


class DocumentError(ValueError):
    """One document of one source is invalid; carries every problem found in it."""

    def __init__(self, source: str, index: int | None, problems: list[Problem], what: str = ""):
        self.source, self.index, self.problems, self.what = source, index, problems, what
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.source if self.index is None else f"{self.source}: document {self.index}"
        if self.what:
            where += f" ({self.what})"
        return "\n".join(
            f"{where}: {p.field}: {p.message}" if p.field else f"{where}: {p.message}" for p in self.problems
        )


class _Invalid(Exception):
    """One problem found while normalising a document; parse_resource adds where it was."""

    def __init__(self, field: str, message: str):
        self.problem = Problem(field, message)


def _field_path(loc: tuple) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _problems_from(exc: pydantic.ValidationError) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        problems.append(Problem(_field_path(err["loc"]), message))
    return problems


def _convert_kubernetes_namespace(doc: dict) -> dict:
    meta = doc.get("metadata") or {}
    if not isinstance(meta, dict):
        return doc
    kept = {k: meta[k] for k in ("name", "labels", "annotations") if k in meta}
    return {"apiVersion": API_VERSION, "kind": "Namespace", "metadata": kept}


def _normalise(doc: dict, namespace: str | None) -> dict:
    """Map accepted foreign apiVersions onto the native one and apply per-kind defaults."""
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if api_version == KUBERNETES_CORE_API_VERSION and kind == "Namespace":
        doc = _convert_kubernetes_namespace(doc)
    elif api_version == KUBERNETES_NETWORKING_API_VERSION and kind == "NetworkPolicy":
        doc = convert(KubernetesNetworkPolicy.model_validate(doc), API_VERSION)
    elif api_version == CALICO_API_VERSION:
        doc = {**doc, "apiVersion": API_VERSION}
    elif api_version != API_VERSION:
        raise _Invalid("apiVersion", f"unsupported apiVersion {api_version!r} (use {API_VERSION})")
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        known = ", ".join(sorted(KINDS))
        raise _Invalid("kind", f"unknown kind {kind!r} (known kinds: {known})")
    meta = doc.get("metadata")
    if isinstance(meta, dict):
        meta = dict(meta)
        if model.namespaced and namespace and meta.get("namespace") not in (None, namespace):
            raise _Invalid(
                "metadata.namespace", f"{meta['namespace']!r} does not match the namespace asked for ({namespace!r})"
            )
        if model.namespaced and not meta.get("namespace"):
            meta["namespace"] = namespace or DEFAULT_NAMESPACE
        elif not model.namespaced and meta.get("namespace"):
            raise _Invalid("metadata.namespace", f"{kind} is not namespaced")
        if kind == "Namespace" and isinstance(meta.get("name"), str):
            meta["labels"] = {**(meta.get("labels") or {}), NAMESPACE_NAME_LABEL: meta["name"]}
        doc = {**doc, "metadata": meta}
    return doc


def _describe(doc: Any) -> str:
    if not isinstance(doc, dict):
        return ""
    meta = doc.get("metadata")
    if not isinstance(meta, dict):
        meta = {}
    name = meta.get("name")
    ns = meta.get("namespace")
    ident = f"{ns}/{name}" if ns and name else (name or "")
    return f"{doc.get('kind', '?')} {ident}".strip()


def parse_resource(
    doc: Any, source: str = "<input>", index: int | None = None, namespace: str | None = None
) -> Resource:
    """Validate one decoded document; raise DocumentError naming every bad field."""
    if not isinstance(doc, dict):
        raise DocumentError(
            source,
            index,
            [Problem("", f"expected a mapping with apiVersion, kind, metadata, got {type(doc).__name__}")],
        )
    what = _describe(doc)
    try:
        normalised = _normalise(doc, namespace)
        return KINDS[normalised["kind"]].model_validate(normalised)
    except _Invalid as exc:
        raise DocumentError(source, index, [exc.problem], what) from None
    except pydantic.ValidationError as exc:
        raise DocumentError(source, index, _problems_from(exc), what) from None


def load_documents(text: str, source: str, namespace: str | None = None) -> list[Resource]:
    """Parse every document of a multi-document YAML text; the first bad one raises."""
    resources: list[Resource] = []
    index = 0
    try:
        for index, doc in enumerate(yaml.safe_load_all(text), start=1):
            if doc is not None:
                resources.append(parse_resource(doc, source, index, namespace))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise DocumentError(source, index + 1, [Problem("", f"invalid YAML{at}: {problem}")]) from None
    return resources
