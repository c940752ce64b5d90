"""What every benchmark script here shares: percentiles and how a report is emitted.

Imported as a sibling module (`python bench/<name>.py` puts bench/ on sys.path).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def emit(report: dict[str, Any], out: Path | None) -> None:
    """Print the JSON report, and write it to `out` too when given."""
    text = json.dumps(report, indent=2)
    print(text)
    if out:
        out.write_text(text + "\n")


def run_in(
    data_dir: Path | None, prefix: str, bench: Callable[[Path], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    """Run `bench(root)` in `data_dir` (kept) or in a temporary folder (removed)."""
    if data_dir:
        return asyncio.run(bench(data_dir))
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        return asyncio.run(bench(Path(tmp)))
