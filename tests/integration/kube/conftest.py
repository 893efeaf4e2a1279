"""The e2e model (x, y, z with pods a, b, c on two nodes) with Kubernetes as the source: the test
API server in this process, calyx-kube-controllers and felix as processes; built once for the
package (labs must not overlap: they share addresses)."""

import pytest

from tests.lab.kube_lab import KubeControllersInLab, KubePolicyLab
from tests.lab.topology import Lab

GRACE = 3.0  # the node release grace period these tests run with


@pytest.fixture(scope="package")
def kube_model():
    lab = Lab(nodes=2)
    controllers = None
    try:
        lab.build()
        controllers = KubeControllersInLab(lab, grace=GRACE)
        model = KubePolicyLab(lab, controllers)
        model.build()
        yield model
    finally:
        print(lab.logs())
        if controllers:
            controllers.close()
        lab.destroy()


@pytest.fixture
def netpol(kube_model):
    """The model with no NetworkPolicy and every pod's and namespace's original labels; the
    e2e cases of tests/integration/policy run against it unchanged."""
    kube_model.reset()
    return kube_model
