"""Policy tests share one e2e model (x, y, z with pods a, b, c on two nodes), built once for this
package and torn down when its last test has run (labs must not overlap: they share addresses)."""

import pytest

from tests.lab.netpol import PolicyLab
from tests.lab.topology import Lab


@pytest.fixture(scope="package")
def policy_model():
    lab = Lab(nodes=2)
    try:
        lab.build()
        model = PolicyLab(lab)
        model.build()
        yield model
    finally:
        print(lab.logs())
        lab.destroy()


@pytest.fixture
def netpol(policy_model):
    """The model with no policy of any kind and every pod's original labels."""
    policy_model.reset()
    return policy_model
