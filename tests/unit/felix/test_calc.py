import random

from hypothesis import given, settings
from hypothesis import strategies as st

from felix.calc import EndpointRoutes, RouteIndex

INTERFACES = ["cxa", "cxb", "cxc"]
KEYS = [f"/c/v1/workloadendpoints/default/w{i}" for i in range(6)]
routes_strategy = st.one_of(
    st.none(),
    st.builds(
        EndpointRoutes,
        interface=st.sampled_from(INTERFACES),
        networks=st.lists(st.sampled_from(["198.19.1.1/32", "198.19.1.2/32", "fd00::1/128"]), unique=True).map(
            lambda ns: tuple(sorted(ns))
        ),
    ),
)
# A history of updates: later updates of a key win.  Order among keys is what gets permuted.
histories = st.lists(st.tuples(st.sampled_from(KEYS), routes_strategy), max_size=25)


def final_state(history):
    state = {}
    for key, routes in history:
        state[key] = routes
    return state


def all_desired(index: RouteIndex) -> dict[str, tuple[str, ...]]:
    """Every interface's routes, as felix would program them from scratch."""
    found = {interface: index.desired(interface) for interface in INTERFACES}
    return {interface: routes for interface, routes in found.items() if routes is not None}


def apply_all(updates) -> RouteIndex:
    index = RouteIndex()
    for key, routes in updates:
        index.update(key, routes)
    return index


@settings(max_examples=300, deadline=None)
@given(histories, st.randoms(use_true_random=False))
def test_same_state_in_any_order_gives_same_routes(history, rnd: random.Random):
    state = list(final_state(history).items())
    shuffled = state[:]
    rnd.shuffle(shuffled)
    # Replaying the raw history (with its intermediate states) and the final state in a random
    # order must give the same desired routes.
    assert all_desired(apply_all(history)) == all_desired(apply_all(shuffled)) == all_desired(apply_all(state))


@settings(max_examples=300, deadline=None)
@given(histories)
def test_incremental_dirty_interfaces_match_full_recalculation(history):
    """Recomputing only the interfaces update() reports gives the same result as recomputing all."""
    index = RouteIndex()
    incremental: dict[str, frozenset] = {}
    for key, routes in history:
        for interface in index.update(key, routes):
            desired = index.desired(interface)
            if desired is None:
                incremental.pop(interface, None)
            else:
                incremental[interface] = desired
    assert incremental == all_desired(index)


def test_the_endpoint_created_first_keeps_a_contested_network_whatever_the_order():
    older = EndpointRoutes("cxb", ("198.19.1.1/32",), created=5)
    newer = EndpointRoutes("cxa", ("198.19.1.1/32", "198.19.1.2/32"), created=9)  # its key sorts first
    for order in ([("k1", newer), ("k2", older)], [("k2", older), ("k1", newer)]):
        index = apply_all(order)
        assert all_desired(index) == {"cxa": ("198.19.1.2/32",), "cxb": ("198.19.1.1/32",)}
        assert index.refused() == {"k1": "address conflict: 198.19.1.1/32 is held by k2"}
        assert index.owned("k1") == ("198.19.1.2/32",) and index.conflict_count == 1
    index = apply_all([("k1", newer), ("k2", older), ("k2", None)])
    assert all_desired(index) == {"cxa": ("198.19.1.1/32", "198.19.1.2/32")}
    assert index.refused() == {} and index.conflict_count == 0


def test_removed_endpoint_leaves_no_interface_behind():
    index = apply_all([("k1", EndpointRoutes("cxa", ("198.19.1.1/32",))), ("k1", None)])
    assert all_desired(index) == {} and index.desired("cxa") is None and len(index) == 0


def test_an_interface_with_one_endpoint_shares_that_endpoints_networks_tuple():
    """The usual case at 10,000 endpoints: nothing per interface beyond the endpoint's own tuple."""
    index = RouteIndex()
    routes = EndpointRoutes("cxa", ("198.19.1.1/32", "fd00::1/128"))
    index.update(KEYS[0], routes)
    assert index.desired("cxa") is routes.networks
    index.update(KEYS[1], EndpointRoutes("cxa", ("198.19.1.2/32",)))
    assert index.desired("cxa") == ("198.19.1.1/32", "198.19.1.2/32", "fd00::1/128")
