"""Feeding resources to the policy compiler the way the agent does, for tests."""

from pathlib import Path

from policy.compiler.compiler import PolicyCompiler
from policy.datastore.keys import key_of
from policy.model.documents import load_documents
from policy.model.policies import GlobalNetworkPolicy, GlobalNetworkSet, NetworkPolicy, NetworkSet, Profile, Tier
from policy.model.pools import IPPool
from policy.model.resources import Namespace, Resource, WorkloadEndpoint

PREFIX = "/calyx"
GOLDEN = Path(__file__).with_name("golden")  # the representative model and what it compiles to


def feed(compiler: PolicyCompiler, resource: Resource, removed: bool = False) -> None:
    key = key_of(PREFIX, resource)
    value = None if removed else resource
    if isinstance(resource, WorkloadEndpoint):
        compiler.set_endpoint(key, value)
    elif isinstance(resource, (NetworkPolicy, GlobalNetworkPolicy)):
        compiler.set_policy(key, value)
    elif isinstance(resource, (NetworkSet, GlobalNetworkSet)):
        compiler.set_network_set(key, value)
    elif isinstance(resource, Namespace):
        compiler.set_namespace(resource.name, value)
    elif isinstance(resource, Tier):
        compiler.set_tier(resource.name, value)
    elif isinstance(resource, Profile):
        compiler.set_profile(resource.name, value)
    elif isinstance(resource, IPPool):
        compiler.set_pool(resource.name, value)


def compile_all(resources, node: str = "n1") -> PolicyCompiler:
    compiler = PolicyCompiler(node)
    for resource in resources:
        feed(compiler, resource)
    return compiler


def docs(text: str) -> list[Resource]:
    return load_documents(text, "<test>")
