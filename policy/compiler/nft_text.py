"""libnftables JSON statements and literals written in nft's own syntax, for the vocabulary the
compiler emits. Whole commands are rendered by policy/compiler/transaction.py."""

import json

_QUOTED_KEYS = {"iifname", "oifname"}


def value(v, quote=False) -> str:
    """A literal: number, address, prefix, range, concatenation, set, or a string.  quote says
    which strings are interface names (nft wants those quoted): a bool, or one per concat part."""
    if isinstance(v, str):
        if quote is True and not v.startswith("@"):
            return json.dumps(v)
        return v
    if isinstance(v, bool) or v is None:
        raise ValueError(f"unsupported literal {v!r}")
    if isinstance(v, int):
        return str(v)
    if isinstance(v, list):
        return "{ " + ", ".join(value(x, quote) for x in v) + " }"
    ((kind, body),) = v.items()
    if kind == "set":
        return "{ " + ", ".join(value(x, quote) for x in body) + " }"
    if kind == "prefix":
        return f"{body['addr']}/{body['len']}"
    if kind == "range":
        return f"{value(body[0])}-{value(body[1])}"
    if kind == "concat":
        parts = quote if isinstance(quote, tuple) else (quote,) * len(body)
        return " . ".join(value(x, q) for x, q in zip(body, parts, strict=True))
    raise ValueError(f"unsupported literal {v!r}")


def expression(e) -> str:
    ((kind, body),) = e.items()
    if kind == "meta":
        return f"meta {body['key']}"
    if kind == "payload":
        return f"{body['protocol']} {body['field']}"
    if kind == "ct":
        return f"ct {body['key']}"
    if kind == "concat":
        return " . ".join(expression(x) for x in body)
    if kind in ("&", "|"):
        return f"{expression(body[0])} {kind} {value(body[1])}"
    raise ValueError(f"unsupported expression {e!r}")


def _quoting(left):
    """Interface names are the strings nft must see quoted: per part for a concatenation."""
    if "meta" in left:
        return left["meta"]["key"] in _QUOTED_KEYS
    if "concat" in left:
        return tuple(_quoting(part) for part in left["concat"])
    return False


def statement(s: dict) -> str:
    ((kind, body),) = s.items()
    if kind == "match":
        right = body["right"]
        lookup = (
            isinstance(right, (list, dict))
            and "concat" not in right
            or isinstance(right, str)
            and right.startswith("@")
        )
        if body["op"] == "in" and isinstance(right, list):  # flags, as `ct state established,related`
            return f"{expression(body['left'])} {','.join(right)}"
        op = {"==": "" if lookup else "== ", "!=": "!= "}[body["op"]]
        return f"{expression(body['left'])} {op}{value(right, _quoting(body['left']))}"
    if kind in ("accept", "drop", "return", "masquerade"):
        return kind
    if kind == "jump":
        return f"jump {body['target']}"
    if kind == "mangle":
        return f"{expression(body['key'])} set {expression(body['value'])}"
    if kind == "log":
        group = f" group {body['group']}" if "group" in body else ""
        return f"log prefix {json.dumps(body['prefix'].replace(chr(34), ''))}{group}"
    if kind == "counter":
        return "counter"
    if kind == "comment":  # the rule's comment (policy/compiler/observe.py), always its last part
        return f"comment {json.dumps(body.replace(chr(34), ''))}"
    if kind == "vmap":
        return f"{expression(body['key'])} vmap {body['data']}"
    raise ValueError(f"unsupported statement {s!r}")
