#!/usr/bin/env python3
"""Generate agentflow/client/sync.py (the blocking `Client`) from aio.py (`AsyncClient`).

The SDK is written once, asynchronously; the blocking client is a token rewrite of it:
`async def` -> `def`, `await x` -> `x`, `async for`/`async with` -> `for`/`with`,
`AsyncGenerator[Y, S]` -> `Generator[Y, S, None]`, and every other difference through
the tables below (names in code; phrases in docstrings and comments). What cannot be
a rename lives in agentflow/client/calls_aio.py and its hand-written twin calls_sync.py.
The result goes through `ruff check --select I --fix` and `ruff format`, so it is laid
out as if written by hand.

The rewrite refuses to produce a file in which anything asynchronous is left (an
`asyncio.X` or `grpc.aio.X` with no entry in the table, an `aclose` in a docstring...)
and names what to add to the table. A table entry that no longer matches anything is
an error too, so the tables stay the exact list of differences.

`--check` exits 1 when the committed sync.py is not what aio.py generates (`make test`
runs it).
"""

from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
import tokenize
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "agentflow" / "client" / "aio.py"
TARGET = ROOT / "agentflow" / "client" / "sync.py"

HEADER = """\
# Generated from agentflow/client/aio.py by scripts/gen_sync_client.py; do not edit.
# Change aio.py (or calls_sync.py) and run scripts/gen_sync_client.py.
"""

# Replaces aio.py's module docstring (which explains the generation).
DOCSTRING = '''"""`Client`: the blocking SDK. Thread-safe; one channel per master, opened lazily.

Generated from aio.py (`AsyncClient`, the one source of the client code): see there
for why, and scripts/gen_sync_client.py for how.
"""'''

# A dotted name in code (`grpc.aio.AioRpcError`, `asyncio.sleep`, or one name) -> its
# blocking equivalent. The whole dotted name is looked up first, then each name in it.
NAMES: dict[str, str] = {
    "AsyncAutoRenewLock": "AutoRenewLock",
    "AsyncClient": "Client",
    "AsyncLockLease": "LockLease",
    "AsyncGenerator": "Generator",  # its [Y, S] gains the return type: see rewrite()
    "AsyncIterator": "Iterator",
    "ClusterServiceAsyncStub": "ClusterServiceStub",
    "LockServiceAsyncStub": "LockServiceStub",
    "SchedulerServiceAsyncStub": "SchedulerServiceStub",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "aclosing": "closing",
    "aio_channel": "sync_channel",
    "asyncio": "time",  # `import asyncio`; each asyncio.X needs its own entry
    "asyncio.Event": "threading.Event",
    "asyncio.sleep": "time.sleep",
    "calls_aio": "calls_sync",
    "grpc.aio.AioRpcError": "grpc.RpcError",
    "grpc.aio.Channel": "grpc.Channel",
    "grpc.aio.UnaryUnaryMultiCallable": "grpc.UnaryUnaryMultiCallable",
}

# Modules renamed only on their own (`import asyncio`): an attribute of one without its
# own entry in NAMES is left as it is, for check_nothing_async() to report.
WHOLE_ONLY = {"asyncio"}

# Text in docstrings, strings and comments -> its blocking wording.
PHRASES: dict[str, str] = {
    "asyncio client for an AgentFlow cluster; the same API as `Client`, awaited.": (
        "Blocking client for an AgentFlow cluster."
    ),
    "Use as an async context manager or `await close()`.": (
        "Use as a context manager or `close()`."
    ),
    "Stop with `aclose()` (or `contextlib.aclosing` around the loop).": (
        "Close the iterator (or leave the for loop) to stop."
    ),
    '`async with client.lock("db", ttl="30s") as lease:`': (
        '`with client.lock("db", ttl="30s") as lease:`'
    ),
    "an `async with` block (see `AsyncClient.lock`)": "a `with` block (see `Client.lock`)",
    "`AsyncClient.auto_renew_lock`": "`Client.auto_renew_lock`",
}

# Left in the output, these mean the rewrite missed something asynchronous.
ASYNC_NAME = re.compile(
    r"(?i:async|await)|(^|_)aio($|_)|^a(close|closing)$|^__a(enter|exit|iter|next)__$"
)
ASYNC_TEXT = re.compile(r"\b(?:async|await|awaited|asyncio|aclose|aclosing|AsyncClient)\b|\.aio\b")

TEXT_TOKENS = {tokenize.STRING, tokenize.COMMENT} | (
    {tokenize.FSTRING_MIDDLE} if hasattr(tokenize, "FSTRING_MIDDLE") else set()
)


class GenerationError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Edit:
    start: int  # offsets into the source text
    end: int
    text: str


class Rewrite:
    """One pass over aio.py's tokens, collecting edits to its text; layout and comments
    stay where they are."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
        self.line_starts = [0]
        for line in source.splitlines(keepends=True):
            self.line_starts.append(self.line_starts[-1] + len(line))
        self.edits: list[Edit] = []
        self.used: set[str] = set()  # keys of NAMES and PHRASES that matched

    def offset(self, position: tuple[int, int]) -> int:
        return self.line_starts[position[0] - 1] + position[1]

    def replace(self, first: tokenize.TokenInfo, last: tokenize.TokenInfo, text: str) -> None:
        self.edits.append(Edit(self.offset(first.start), self.offset(last.end), text))

    def run(self) -> str:
        self.module_docstring()
        i = 0
        while i < len(self.tokens):
            token = self.tokens[i]
            if token.type == tokenize.NAME and token.string in ("async", "await"):
                # The keyword and the space after it go; what follows stays.
                after = self.offset(self.tokens[i + 1].start)
                self.edits.append(Edit(self.offset(token.start), after, ""))
            elif token.type == tokenize.NAME:
                i = self.dotted_name(i)
            elif token.type in TEXT_TOKENS:
                self.text(token)
            i += 1
        out = self.source
        for edit in sorted(self.edits, key=lambda e: e.start, reverse=True):
            out = out[: edit.start] + edit.text + out[edit.end :]
        return out

    def module_docstring(self) -> None:
        for token in self.tokens:
            if token.type == tokenize.STRING:
                self.replace(token, token, DOCSTRING)
                self.tokens.remove(token)
                return
            if token.type not in (tokenize.COMMENT, tokenize.NL, tokenize.ENCODING):
                break
        raise GenerationError("aio.py has no module docstring to replace")

    def dotted_name(self, first: int) -> int:
        """Renames `a.b.c` starting at token `first`; returns the index of its last name."""
        tokens, last = self.tokens, first
        while (
            last + 2 < len(tokens)
            and tokens[last + 1].string == "."
            and tokens[last + 2].type == tokenize.NAME
        ):
            last += 2
        dotted = "".join(t.string for t in tokens[first : last + 1])
        if dotted in NAMES:
            self.used.add(dotted)
            self.replace(tokens[first], tokens[last], NAMES[dotted])
        elif not (last > first and tokens[first].string in WHOLE_ONLY):
            for part in tokens[first : last + 1 : 2]:
                if part.string in NAMES:
                    self.used.add(part.string)
                    self.replace(part, part, NAMES[part.string])
        if tokens[last].string == "AsyncGenerator" and tokens[last + 1].string == "[":
            # An async generator returns nothing: Generator[Y, S] needs its third type.
            closing = tokens[matching_bracket(tokens, last + 1)]
            at = self.offset(closing.start)
            self.edits.append(Edit(at, at, ", None"))
        return last

    def text(self, token: tokenize.TokenInfo) -> None:
        if token.type == tokenize.STRING and token.string[1:-1] in NAMES:
            # A name as a string (`__all__`, getattr) is renamed as the name is.
            name, quote = token.string[1:-1], token.string[0]
            self.used.add(name)
            self.replace(token, token, quote + NAMES[name] + quote)
            return
        text = token.string
        for phrase, replacement in PHRASES.items():
            if phrase in text:
                self.used.add(phrase)
                text = text.replace(phrase, replacement)
        if text != token.string:
            self.replace(token, token, text)


def rewrite(source: str) -> str:
    """aio.py's text -> sync.py's, before import sorting and formatting."""
    rewrite = Rewrite(source)
    out = rewrite.run()
    unused = sorted((NAMES.keys() | PHRASES.keys()) - rewrite.used)
    if unused:
        raise GenerationError(
            "table entries that match nothing in aio.py (remove them): " + ", ".join(unused)
        )
    check_nothing_async(out)
    return out


def matching_bracket(tokens: list[tokenize.TokenInfo], opening: int) -> int:
    depth = 0
    for j in range(opening, len(tokens)):
        if tokens[j].string in "([{" and tokens[j].type == tokenize.OP:
            depth += 1
        elif tokens[j].string in ")]}" and tokens[j].type == tokenize.OP:
            depth -= 1
            if depth == 0:
                return j
    raise GenerationError(f"line {tokens[opening].start[0]}: unbalanced brackets")


def check_nothing_async(text: str) -> None:
    problems: list[str] = []
    docstring = True  # the module docstring is DOCSTRING, which may speak of asyncio
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        # The line as generated (its number differs from aio.py's): enough to find it.
        line = token.line.strip()[:80]
        if token.type == tokenize.STRING and docstring:
            docstring = False
        elif token.type == tokenize.NAME and ASYNC_NAME.search(token.string):
            problems.append(f"{token.string!r} (add it to NAMES) in: {line}")
        elif token.type in TEXT_TOKENS and (found := ASYNC_TEXT.search(token.string)):
            problems.append(f"{found.group()!r} (add a phrase to PHRASES) in: {line}")
    if problems:
        raise GenerationError(
            "aio.py has asynchronous code without a blocking equivalent:\n  "
            + "\n  ".join(problems)
        )


def ruff(*args: str, text: str) -> str:
    """Runs ruff on `text` as if it were sync.py, with the project's settings."""
    command = [sys.executable, "-m", "ruff", *args, "--stdin-filename", str(TARGET), "-"]
    try:
        result = subprocess.run(
            command, input=text, capture_output=True, text=True, cwd=ROOT, check=False
        )
    except OSError as exc:
        raise GenerationError(f"cannot run ruff: {exc}") from None
    if result.returncode != 0:
        raise GenerationError(f"ruff {args[0]} failed: {result.stderr.strip()}")
    return result.stdout


def generate(source: str) -> str:
    text = HEADER + rewrite(source)
    text = ruff("check", "--select", "I", "--fix-only", "--quiet", text=text)
    return ruff("format", "--quiet", text=text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if sync.py is stale")
    args = parser.parse_args()
    try:
        fresh = generate(SOURCE.read_text())
    except GenerationError as exc:
        print(f"gen_sync_client: {exc}", file=sys.stderr)
        return 1
    relative = TARGET.relative_to(ROOT)
    if args.check:
        # The committed file is laid out again by this ruff too, so another ruff
        # version's layout (ruff is pinned to a range) is not mistaken for staleness.
        try:
            committed = ruff("format", "--quiet", text=TARGET.read_text())
        except (OSError, GenerationError):
            committed = None
        if committed != fresh:
            print(
                f"{relative} is stale: run scripts/gen_sync_client.py (never edit it by hand)",
                file=sys.stderr,
            )
            return 1
        print(f"{relative} is fresh")
        return 0
    TARGET.write_text(fresh)
    print(f"generated {relative}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
