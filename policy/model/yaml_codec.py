"""YAML for resource documents: libyaml's parser with YAML 1.2 core scalar rules, and a writer to match.

PyYAML's own rules are YAML 1.1's, which read `20:21` as the base-60 integer 1221, `yes` and
`on` as booleans and unquoted dates as datetimes. The Kubernetes and Calico decoders keep
those as strings, so a port range, a BGP community or a creationTimestamp means what it says.
Duplicate keys are refused, as kubectl and calicoctl refuse them: with last-wins a selector
could silently move."""

import re
from collections.abc import Iterator
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, ScalarNode

if not getattr(yaml, "__with_libyaml__", False):  # the pure-Python parser is ten times slower
    raise ImportError("PyYAML was built without libyaml (yaml.CSafeLoader): install python3-yaml")

_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_NULL = "tag:yaml.org,2002:null"
_MERGE = "tag:yaml.org,2002:merge"
# YAML 1.2's core schema knows null, bool, int and float; merge keys (`<<`) are kept because
# the Go decoders behind kubectl and calicoctl honour them.
_KEPT = {_NULL, _MERGE}

_SPECIAL_FLOATS = {
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), float("inf")),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), float("-inf")),
    **dict.fromkeys((".nan", ".NaN", ".NAN"), float("nan")),
}


class Loader(yaml.CSafeLoader):
    """CSafeLoader with YAML 1.2 core int/float/bool resolution and duplicate keys refused."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag in _KEPT]
        for first, resolvers in yaml.CSafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_yaml12_int(self, node: ScalarNode) -> int:
        text = self.construct_scalar(node)
        if text.startswith("0o"):
            return int(text[2:], 8)
        if text.startswith("0x"):
            return int(text[2:], 16)
        return int(text, 10)  # a leading zero is decimal in YAML 1.2, not octal

    def construct_yaml12_float(self, node: ScalarNode) -> float:
        text = self.construct_scalar(node)
        return _SPECIAL_FLOATS[text] if text in _SPECIAL_FLOATS else float(text)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Refuse a key given twice, whether as the same text or as equal values (`1` and `1.0`)."""
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE:
                continue  # merged keys may be overridden; a mapping as a key is refused later
            key = self.construct_object(key_node)
            for seen in (("text", key_node.value), ("value", key)):
                if seen in lines:
                    raise ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"duplicate key {key_node.value!r} (first at line {lines[seen]})",
                        key_node.start_mark,
                    )
                lines[seen] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
Loader.add_implicit_resolver(_INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789"))
Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+.0123456789"),
)
Loader.add_constructor(_INT, Loader.construct_yaml12_int)
Loader.add_constructor(_FLOAT, Loader.construct_yaml12_float)


class Dumper(yaml.SafeDumper):
    """Quotes every string that YAML 1.1 or 1.2 would read as something else, so output reads back."""

    yaml_implicit_resolvers = {
        first: yaml.SafeDumper.yaml_implicit_resolvers.get(first, []) + Loader.yaml_implicit_resolvers.get(first, [])
        for first in {*yaml.SafeDumper.yaml_implicit_resolvers, *Loader.yaml_implicit_resolvers}
    }


def dump_all(documents: list[Any]) -> str:
    return yaml.dump_all(documents, Dumper=Dumper, sort_keys=False)


def load_all(text: str | bytes) -> Iterator[Any]:
    """Every document of a YAML stream, with Calyx's scalar and key rules."""
    loader = Loader(text)
    try:
        while loader.check_data():
            yield loader.get_data()
    finally:
        loader.dispose()
