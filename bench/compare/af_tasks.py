"""Task functions for the AgentFlow runner (`python:af_tasks:noop`). The workers import
this module from their own environment: the runner starts them with this folder on
PYTHONPATH. (agentflow.worker.testing_tasks:noop is the same function inside the package.)
"""

from __future__ import annotations


def noop(*_: object) -> None:
    return None
