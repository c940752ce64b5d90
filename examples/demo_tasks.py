"""Task functions for the demo and the examples (`python:demo_tasks:<function>`).

Workers import them from their PYTHONPATH; `make demo` starts its workers with this
folder on it.
"""

from __future__ import annotations

import hashlib
import time

from agentflow.worker.context import task_context


def crunch(name: str, steps: int = 10, pause: float = 0.1) -> dict[str, object]:
    """Hash a string `steps` times with a pause per step, reporting progress."""
    ctx = task_context()
    digest = name.encode()
    for step in range(steps):
        digest = hashlib.sha256(digest).digest()
        time.sleep(pause)
        ctx.progress((step + 1) / steps, f"step {step + 1}/{steps}")
    return {"name": name, "digest": digest.hex()[:12], "attempt": ctx.attempt}


def merge(parts: int) -> dict[str, object]:
    ctx = task_context()
    ctx.log(f"merging {parts} parts")
    return {"merged": parts, "attempt": ctx.attempt}
