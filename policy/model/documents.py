"""Turn YAML/JSON documents into resources, with errors that name the file, document and field."""

import codecs
from dataclasses import dataclass
from typing import Any

import pydantic
import yaml

from policy.model.calico_fields import not_supported
from policy.model.kinds import DEFAULT_NAMESPACE, KINDS
from policy.model.kubernetes import KUBERNETES_NETWORKING_API_VERSION, KubernetesNetworkPolicy, convert
from policy.model.resources import API_VERSION, CALICO_API_VERSION, NAMESPACE_NAME_LABEL, Resource
from policy.model.yaml_codec import load_all

KUBERNETES_CORE_API_VERSION = "v1"
# Written by the API server, never by people: accepted on input (so `get -o yaml` output of
# Calyx, calicoctl or kubectl applies back) and dropped.
_SERVER_METADATA = ("generation", "managedFields", "selfLink")
_LIST_FIELDS = {"apiVersion", "kind", "metadata", "items"}


@dataclass(frozen=True)
class Problem:
    field: str
    message: str


class DocumentError(ValueError):
    """One document of one source is invalid; carries every problem found in it."""

    def __init__(
        self, source: str, index: int | None, problems: list[Problem], what: str = "", item: int | None = None
    ):
        self.source, self.index, self.problems, self.what, self.item = source, index, problems, what, item
        super().__init__(str(self))

    @property
    def errors(self) -> list["DocumentError"]:
        return [self]

    def __str__(self) -> str:
        where = self.source if self.index is None else f"{self.source}: document {self.index}"
        if self.item is not None:
            where += f", item {self.item}"
        if self.what:
            where += f" ({self.what})"
        return "\n".join(
            f"{where}: {p.field}: {p.message}" if p.field else f"{where}: {p.message}" for p in self.problems
        )


class InvalidDocuments(DocumentError):
    """Every bad document of one source: loading goes on past a bad one, so one run shows them all."""

    def __init__(self, errors: list[DocumentError]):
        self._errors = errors
        first = errors[0]
        super().__init__(first.source, first.index, first.problems, first.what, first.item)

    @property
    def errors(self) -> list[DocumentError]:
        return self._errors

    def __str__(self) -> str:
        return "\n".join(str(error) for error in self._errors)


class NoDocuments(DocumentError):
    """An empty source (or one of only comments and `---`) is a mistake, not zero resources."""

    def __init__(self, source: str):
        super().__init__(source, None, [Problem("", "holds no documents")])

    def __str__(self) -> str:
        return f"{self.source if self.source.startswith('<') else 'file ' + self.source} holds no documents"


class _Invalid(Exception):
    """One problem found while normalising a document; parse_resource adds where it was."""

    def __init__(self, field: str, message: str):
        self.problem = Problem(field, message)


def _field_path(loc: tuple) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _problems_from(exc: pydantic.ValidationError, kind: str = "") -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = not_supported(kind, str(err["loc"][-1])) or "unknown field"
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
    doc = {key: value for key, value in doc.items() if key != "status"}  # the API server's, never input
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
        meta = {key: value for key, value in meta.items() if key not in _SERVER_METADATA}
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
    doc: Any, source: str = "<input>", index: int | None = None, namespace: str | None = None, item: int | None = None
) -> Resource:
    """Validate one decoded document; raise DocumentError naming every bad field."""
    if not isinstance(doc, dict):
        raise DocumentError(
            source,
            index,
            [Problem("", f"expected a mapping with apiVersion, kind, metadata, got {type(doc).__name__}")],
            item=item,
        )
    try:  # neither step changes doc: it is described (for the message) only when it is bad
        normalised = _normalise(doc, namespace)
        return KINDS[normalised["kind"]].model_validate(normalised)
    except _Invalid as exc:
        raise DocumentError(source, index, [exc.problem], _describe(doc), item) from None
    except pydantic.ValidationError as exc:
        kind = doc["kind"] if isinstance(doc.get("kind"), str) else ""
        raise DocumentError(source, index, _problems_from(exc, kind), _describe(doc), item) from None


def _list_kind(doc: Any) -> str | None:
    """`List` (kubectl), `<Kind>List` (calicoctl) or None for a single resource."""
    kind = doc.get("kind") if isinstance(doc, dict) else None
    if kind == "List" or (isinstance(kind, str) and kind.endswith("List") and kind[: -len("List")] in KINDS):
        return kind
    return None


def _list_items(doc: dict, kind: str) -> list[Any]:
    """The items of a List document, each with the list's apiVersion and kind if it has none."""
    unknown = sorted(str(key) for key in doc if key not in _LIST_FIELDS)
    if unknown:
        raise _Invalid(unknown[0], "unknown field")
    items = [] if doc.get("items") is None else doc["items"]
    if not isinstance(items, list):
        raise _Invalid("items", f"expected a list of resources, got {type(items).__name__}")
    if kind == "List":
        if doc.get("apiVersion") not in (None, KUBERNETES_CORE_API_VERSION):
            raise _Invalid("apiVersion", f"a List has apiVersion {KUBERNETES_CORE_API_VERSION}")
        return items
    member = kind[: -len("List")]
    typed = []
    for number, entry in enumerate(items, start=1):
        if isinstance(entry, dict):
            if entry.get("kind", member) != member:
                raise _Invalid(f"items[{number - 1}].kind", f"a {kind} holds only {member} resources")
            entry = {"apiVersion": doc.get("apiVersion"), "kind": member, **entry}
        typed.append(entry)
    return typed


def _decode(data: bytes, source: str) -> str:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16")  # what Windows editors and PowerShell redirection write
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        message = f"is not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} (line {line})"
        raise DocumentError(source, None, [Problem("", message)]) from None


def _yaml_problem(exc: yaml.YAMLError, text: str) -> str:
    if isinstance(exc, yaml.reader.ReaderError):  # libyaml counts the position in UTF-8 bytes
        line = text.encode("utf-8", "replace")[: exc.position].count(b"\n") + 1
        return (
            f"invalid YAML: character #x{exc.character:02x} at byte offset {exc.position} (line {line}): {exc.reason}"
        )
    mark = getattr(exc, "problem_mark", None)
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"invalid YAML{at}: {getattr(exc, 'problem', None) or exc}"


def load_documents(text: str | bytes, source: str, namespace: str | None = None) -> list[Resource]:
    """Parse every document of a YAML (or JSON) text, Lists included, and report every bad one.

    Raises DocumentError (InvalidDocuments for several, NoDocuments for an empty text); a YAML
    syntax error ends the stream, since nothing after it can be read reliably."""
    if isinstance(text, bytes):
        text = _decode(text, source)
    resources: list[Resource] = []
    errors: list[DocumentError] = []
    index = found = 0
    try:
        for index, doc in enumerate(load_all(text), start=1):
            if doc is None:
                continue
            found += 1
            list_kind = "List" if isinstance(doc, list) else _list_kind(doc)
            if list_kind is None:
                entries: list[tuple[int | None, Any]] = [(None, doc)]
            else:
                try:
                    items = doc if isinstance(doc, list) else _list_items(doc, list_kind)
                except _Invalid as exc:
                    errors.append(DocumentError(source, index, [exc.problem], list_kind))
                    continue
                entries = list(enumerate(items, start=1))
            for item, body in entries:
                try:
                    resources.append(parse_resource(body, source, index, namespace, item))
                except DocumentError as exc:
                    errors.append(exc)
    except yaml.YAMLError as exc:
        errors.append(DocumentError(source, index + 1, [Problem("", _yaml_problem(exc, text))]))
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise InvalidDocuments(errors)
    if not found:
        raise NoDocuments(source)
    return resources
