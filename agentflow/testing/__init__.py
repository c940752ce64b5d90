"""Helpers for AgentFlow's own tests and benchmarks: the scheduler rig (`scheduler`)
and the checker of cluster histories (`history`).

Shipped code never imports this package (a unit test holds it to that), so nothing
here runs in a master or a worker.
"""
