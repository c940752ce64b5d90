"""sync.py is generated from aio.py (scripts/gen_sync_client.py) and kept fresh."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "gen_sync_client.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_sync_client", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


gen = load_script()


def run(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, check=False
    )


def test_committed_sync_client_is_fresh() -> None:
    result = run(SCRIPT, "--check")
    assert result.returncode == 0, result.stderr


def test_sync_client_says_it_is_generated() -> None:
    text = (ROOT / "agentflow" / "client" / "sync.py").read_text()
    assert text.startswith("# Generated from agentflow/client/aio.py")


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """The generator and its inputs in a scratch tree, to change aio.py freely."""
    for name in ("scripts/gen_sync_client.py", "agentflow/client/aio.py", "pyproject.toml"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / "agentflow/client/sync.py", tmp_path / "agentflow/client/sync.py")
    return tmp_path


NEW_METHOD = '''
    async def ping_twice(self) -> ClusterStatus:
        """Two status reads, the second after a pause."""
        await asyncio.sleep(0)
        return await self.cluster_status()
'''


def test_a_change_to_aio_makes_sync_stale_until_regenerated(copy: Path) -> None:
    aio = copy / "agentflow/client/aio.py"
    aio.write_text(aio.read_text() + NEW_METHOD)
    script = copy / "scripts/gen_sync_client.py"

    stale = run(script, "--check")
    assert stale.returncode == 1
    assert "agentflow/client/sync.py is stale" in stale.stderr

    assert run(script).returncode == 0
    generated = (copy / "agentflow/client/sync.py").read_text()
    assert "    def ping_twice(self) -> ClusterStatus:" in generated
    assert "        time.sleep(0)\n        return self.cluster_status()" in generated
    assert run(script, "--check").returncode == 0


def test_the_keywords_go() -> None:
    source = '''"""Doc."""

async def f(items: AsyncIterator[int]) -> AsyncGenerator[int, None]:
    async with aclosing(items) as it:
        async for x in it:
            yield await g(x)
'''
    want = f"""{gen.DOCSTRING}

def f(items: Iterator[int]) -> Generator[int, None, None]:
    with closing(items) as it:
        for x in it:
            yield g(x)
"""
    assert gen.Rewrite(source).run() == want


def test_dotted_names_are_renamed_whole() -> None:
    source = '"""Doc."""\ntry:\n    x()\nexcept grpc.aio.AioRpcError:\n    asyncio.sleep(1)\n'
    out = gen.Rewrite(source).run()
    assert out.endswith("except grpc.RpcError:\n    time.sleep(1)\n")


@pytest.mark.parametrize(
    ("line", "reported"),
    [
        ("await asyncio.gather(a(), b())", "'asyncio' (add it to NAMES)"),
        ("async with grpc.aio.insecure_channel(a) as c: pass", "'aio' (add it to NAMES)"),
        ("x.__aiter__()", "'__aiter__' (add it to NAMES)"),
        ('"""Close it with aclose()."""', "'aclose' (add a phrase to PHRASES)"),
    ],
)
def test_anything_async_left_is_refused(line: str, reported: str) -> None:
    source = f'"""Doc."""\nasync def f() -> None:\n    {line}\n'
    with pytest.raises(gen.GenerationError, match=r"without a blocking equivalent") as caught:
        gen.check_nothing_async(gen.Rewrite(source).run())
    assert reported in str(caught.value)


def test_a_table_entry_that_matches_nothing_is_refused() -> None:
    with pytest.raises(gen.GenerationError, match=r"match nothing in aio\.py.*AsyncClient"):
        gen.rewrite('"""Doc."""\nasync def f() -> None:\n    pass\n')
