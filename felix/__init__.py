"""The Calyx node agent: watch etcd, calculate this node's desired state, program the kernel."""
