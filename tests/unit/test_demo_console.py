"""scripts/demo.py prints its failover lines above a child's progress line on a
terminal: it relays the child's pty, so it can clear the line, print, and redraw."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo", ROOT / "scripts" / "demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_line_said_over_a_progress_line_goes_above_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    console = load_demo().Console()
    console.relay("submitted\n\r[██░░] 1/4".encode())
    console.relay("\r[███░] 2/4"[:4].encode())  # a redraw split mid-way
    console.relay("\r[███░] 2/4"[4:].encode())
    console.say("!! leader killed")
    console.relay(b"\r[\xe2\x96\x88\xe2\x96")  # a glyph split across reads
    console.relay(b"\x88\xe2\x96\x88\xe2\x96\x88] 4/4\r\ndone\r\n")
    console.say("!! after the bar")
    out = capsys.readouterr().out
    assert out == (
        "submitted\n\r[██░░] 1/4\r[███░] 2/4"
        "\r\033[K!! leader killed\n[███░] 2/4"
        "\r[████] 4/4\r\ndone\r\n"
        "!! after the bar\n"
    )


async def test_run_in_pty_relays_a_child_drawing_on_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = load_demo()
    drawn = asyncio.Event()

    class Watched(demo.Console):
        def relay(self, data: bytes) -> None:
            super().relay(data)
            if self._line == "progress 1/2":
                drawn.set()

    console = Watched()
    go = tmp_path / "go"
    child = (
        "import os, sys, time\n"
        "print('tty' if sys.stderr.isatty() else 'no tty', flush=True)\n"
        "sys.stderr.write('\\rprogress 1/2'); sys.stderr.flush()\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.01)\n"
        "sys.stderr.write('\\rprogress 2/2\\n'); print('finished')\n"
    )
    run = asyncio.create_task(demo.run_in_pty([sys.executable, "-c", child], {}, console))
    await asyncio.wait_for(drawn.wait(), 30)
    console.say("!! in between")
    go.touch()
    assert await asyncio.wait_for(run, 30) == 0
    assert capsys.readouterr().out == (
        "tty\n\rprogress 1/2\r\033[K!! in between\nprogress 1/2\rprogress 2/2\nfinished\n"
    )
