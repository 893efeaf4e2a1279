"""The seam between the CNI plugin and the kernel: the workload recipe of felix/attach.py,
behind a small protocol so the plugin's logic is tested without root."""

from typing import Protocol

from felix import attach
from felix.attach import Attachment, WorkloadState


class Dataplane(Protocol):
    def attach(self, netns: str, host_interface: str, addresses: list[str], mtu: int, ifname: str) -> Attachment: ...

    def remove_host_interface(self, host_interface: str) -> bool: ...

    def remove_workload_interface(self, netns: str, ifname: str) -> bool: ...

    def host_interface_exists(self, host_interface: str) -> bool: ...

    def workload_state(self, netns: str, ifname: str) -> WorkloadState | None: ...


class HostDataplane:
    """The real thing: netlink in this process's namespace (the node's) and the workload's."""

    def attach(self, netns: str, host_interface: str, addresses: list[str], mtu: int, ifname: str) -> Attachment:
        return attach.attach_workload(netns, host_interface, addresses, mtu=mtu, ifname=ifname)

    def remove_host_interface(self, host_interface: str) -> bool:
        return attach.detach_workload(host_interface)

    def remove_workload_interface(self, netns: str, ifname: str) -> bool:
        return attach.remove_workload_interface(netns, ifname)

    def host_interface_exists(self, host_interface: str) -> bool:
        return attach.host_interface_exists(host_interface)

    def workload_state(self, netns: str, ifname: str) -> WorkloadState | None:
        return attach.workload_state(netns, ifname)
