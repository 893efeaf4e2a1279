"""The production evaluator of Calyx policy semantics (pure, no I/O): `policyctl explain`,
`diff --flows` and `reachability` answer with it, and the integration tests hold the kernel's
verdicts on real packets against it."""
