"""Keys per name where nearly every name has exactly one key (an interface and its endpoint, an
address and the endpoint holding it): a lone key is stored as itself, more as a tuple. At 10,000
endpoints a tuple of one costs 48 bytes and a set 216, three such maps ~1.4 MiB."""

Claims = dict[str, str | tuple[str, ...]]


def claimants(table: Claims, name: str) -> tuple[str, ...]:
    found = table.get(name)
    if found is None:
        return ()
    return (found,) if isinstance(found, str) else found


def claim(table: Claims, name: str, key: str) -> int:
    """Add key to name's claimants; return how many there are now."""
    found = table.get(name)
    if found is None:
        table[name] = key
        return 1
    now = ((found,) if isinstance(found, str) else found) + (key,)
    table[name] = now
    return len(now)


def release(table: Claims, name: str, key: str) -> int:
    """Remove key from name's claimants (the entry goes with its last); return how many are left."""
    left = tuple(k for k in claimants(table, name) if k != key)
    if not left:
        table.pop(name, None)
    else:
        table[name] = left[0] if len(left) == 1 else left
    return len(left)
