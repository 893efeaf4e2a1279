"""calyx-kube-controllers: Kubernetes is the source, etcd the datastore the node daemons read.

reflector (list, then watch, per kind) -> convert (pure) -> desired (pure) -> writer (diff
against etcd, compare-and-swap the difference); nodes release what a deleted node held."""
