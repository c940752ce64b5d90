"""Helpers for AgentFlow's own tests and benchmarks: the scheduler rig (`scheduler`),
the checker of cluster histories (`history`) and of lock histories (`locks`).

Shipped code never imports this package (a unit test holds it to that), so nothing
here runs in a master or a worker.
"""
