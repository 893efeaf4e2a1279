from felix.kernel import KernelRoute
from felix.routes import WorkloadRouteDriver
from tests.fakes import FakeKernel


def test_resync_sweeps_stray_routes_and_adds_missing_ones():
    kernel = FakeKernel({"cxa": 5, "cxb": 6, "eth0": 2})
    kernel.route_table = {
        KernelRoute("198.19.1.1/32", 5),
        KernelRoute("198.19.1.9/32", 5),
        KernelRoute("198.19.9.9/32", 6),
    }
    driver = WorkloadRouteDriver(kernel)
    driver.set_desired("cxa", frozenset({"198.19.1.1/32", "198.19.1.2/32"}))
    driver.resync()
    result = driver.apply()
    assert kernel.routes_by_name() == {("198.19.1.1/32", "cxa"), ("198.19.1.2/32", "cxa")}
    assert (result.added, result.deleted) == (1, 2)
    assert not driver.pending


def test_unchanged_state_writes_nothing_and_one_change_writes_one_route():
    kernel = FakeKernel({f"cx{i}": i + 10 for i in range(100)})
    driver = WorkloadRouteDriver(kernel)
    for i in range(100):
        driver.set_desired(f"cx{i}", frozenset({f"198.19.0.{i}/32"}))
    driver.resync()
    driver.apply()
    writes = len(kernel.writes)
    driver.set_desired("cx7", frozenset({"198.19.0.7/32"}))
    driver.apply()
    assert len(kernel.writes) == writes
    driver.set_desired("cx7", frozenset({"198.19.0.7/32", "198.19.1.7/32"}))
    driver.apply()
    assert kernel.writes[writes:] == [("add", KernelRoute("198.19.1.7/32", 17))]


def test_interface_that_appears_later_is_programmed_then_forgotten_when_gone():
    kernel = FakeKernel({})
    driver = WorkloadRouteDriver(kernel)
    driver.set_desired("cxa", frozenset({"198.19.1.1/32", "fd00::1/128"}))
    driver.resync()
    driver.apply()
    assert kernel.writes == [] and not driver.pending
    kernel.add_link("cxa", 9)
    driver.link_changed("cxa", 9)
    driver.apply()
    assert kernel.routes_by_name() == {("198.19.1.1/32", "cxa"), ("fd00::1/128", "cxa")}
    assert kernel.configured == [("cxa", True, True)]
    kernel.remove_link("cxa")
    driver.link_changed("cxa", None)
    result = driver.apply()
    assert result.errors == [] and driver.route_count == 0


def test_refused_route_stays_pending_and_is_retried():
    kernel = FakeKernel({"cxa": 5})
    kernel.refuse = {"198.19.1.1/32"}
    driver = WorkloadRouteDriver(kernel)
    driver.set_desired("cxa", frozenset({"198.19.1.1/32"}))
    driver.resync()
    assert len(driver.apply().errors) == 1 and driver.pending
    kernel.refuse = set()
    assert driver.apply().added == 1 and not driver.pending


def test_an_interface_is_configured_once_per_index_and_again_for_a_new_family_or_index():
    kernel = FakeKernel({"cxa": 5})
    driver = WorkloadRouteDriver(kernel)
    driver.set_desired("cxa", ("198.19.1.1/32",))
    driver.resync()
    driver.apply()
    driver.set_desired("cxa", ("198.19.1.2/32",))
    driver.apply()
    assert kernel.configured == [("cxa", True, False)]  # same index, same family: not again
    driver.set_desired("cxa", ("198.19.1.2/32", "fd00::2/128"))
    driver.apply()
    assert kernel.configured[-1] == ("cxa", True, True)
    kernel.remove_link("cxa")
    kernel.add_link("cxa", 4)  # recreated with index 4: its bits are within 5's, still a new interface
    driver.link_changed("cxa", 4)
    driver.apply()
    assert kernel.configured == [("cxa", True, False), ("cxa", True, True), ("cxa", True, True)]
