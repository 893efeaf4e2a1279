"""Five nodes converge on a burst of endpoints (issue 15's 20-node benchmark, reduced): every
node programs the burst's policy set and learns every other node's blocks over BGP, and each
felix receives the burst's keys once (a watch per agent, not a fan-out that multiplies them)."""

from tests.lab.converge import ConvergeCluster


def test_five_nodes_converge_on_a_burst():
    cluster = ConvergeCluster(nodes=5, per_node=20, timeout=60)
    try:
        cluster.build()
        burst = cluster.burst()
        print(
            f"burst of {burst.endpoints}: written in {burst.write_seconds:.2f}s, converged "
            f"{burst.converge_seconds:.2f}s after the last write (etcd's watch {burst.etcd_seconds:.3f}s)"
        )
        assert burst.endpoints == 100
        assert cluster.check_routes() == []
        assert cluster.check_sets() == []
        for node, received in burst.felix_changes.items():
            assert burst.endpoints <= received <= burst.watch_changes, node
        assert burst.converge_seconds < 30
    finally:
        print(cluster.lab.logs())
        cluster.destroy()
