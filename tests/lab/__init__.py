"""A test bench of network namespaces: fabric, etcd, nodes running felix, and workloads."""
