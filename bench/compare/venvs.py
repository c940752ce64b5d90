"""One venv per compared framework, under bench/compare/.venvs/NAME, from requirements-NAME.txt.

    python bench/compare/venvs.py [celery dask ray]

A venv is (re)built when its requirements file changed (its hash is kept in the venv's
`.installed` stamp); otherwise it is reused as it is. Standard library only: this runs
under whatever Python starts `run.py`, never inside a framework's venv.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENVS = HERE / ".venvs"
FRAMEWORKS = ("celery", "dask", "ray")


def requirements(name: str) -> Path:
    return HERE / f"requirements-{name}.txt"


def python_of(name: str) -> Path:
    return VENVS / name / "bin" / "python"


def ensure(
    name: str, base_python: str = sys.executable, timeout: float = 1800
) -> dict[str, object]:
    """Make sure venv `name` exists with its pinned requirements; say what it took."""
    req = requirements(name)
    digest = hashlib.sha256(req.read_bytes()).hexdigest()
    venv = VENVS / name
    stamp = venv / ".installed"
    if stamp.exists() and python_of(name).exists():
        try:
            recorded = json.loads(stamp.read_text())
        except ValueError:
            recorded = {}
        if recorded.get("digest") == digest:
            return {"venv": str(venv), "installed_now": False, **recorded}
    start = time.perf_counter()
    if venv.exists():
        shutil.rmtree(venv)
    VENVS.mkdir(parents=True, exist_ok=True)
    subprocess.run([base_python, "-m", "venv", str(venv)], check=True, timeout=timeout)
    subprocess.run(
        [str(python_of(name)), "-m", "pip", "install", "--quiet", "-r", str(req)],
        check=True,
        timeout=timeout,
    )
    recorded = {
        "digest": digest,
        "install_seconds": round(time.perf_counter() - start, 1),
        "installed_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "requirements": req.read_text().split(),
    }
    stamp.write_text(json.dumps(recorded) + "\n")
    return {"venv": str(venv), "installed_now": True, **recorded}


def main() -> None:
    names = sys.argv[1:] or list(FRAMEWORKS)
    print(json.dumps({name: ensure(name) for name in names}, indent=2))


if __name__ == "__main__":
    main()
