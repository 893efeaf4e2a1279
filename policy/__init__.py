"""Calyx's declared state: resource types, validation, the etcd store and policyctl."""
