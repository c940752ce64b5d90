#!/usr/bin/env python3
"""Run the deterministic Raft simulator over a range of seeds, plus the corpus.

    python scripts/raft_sim.py --seeds N --first-seed S [--nodes 3|5] [--steps K]
                               [--progress-every SECONDS]

Prints one line per failing seed (the invariant it broke and the command that
replays it), then `P passed, F failed`. Exit status 1 if anything failed. Every few
seconds a progress line goes to stderr (`--progress-every 0` turns it off).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agentflow.raft.testing import DEFAULT_STEPS, SimResult, run_seed  # noqa: E402

CORPUS = ROOT / "tests" / "sim" / "corpus.txt"
WORKERS = 2
PROGRESS_EVERY = 5.0  # seconds between progress lines on stderr


@dataclass(frozen=True, slots=True)
class Job:
    seed: int
    nodes: int
    steps: int
    source: str = ""  # "corpus" for seeds replayed from the corpus

    def replay(self) -> str:
        return (
            f"python scripts/raft_sim.py --seeds 1 --first-seed {self.seed} "
            f"--nodes {self.nodes} --steps {self.steps}"
        )


def nodes_for(seed: int, nodes: int | None) -> int:
    """Without --nodes, even seeds simulate 3 nodes and odd seeds 5."""
    if nodes is not None:
        return nodes
    return 3 if seed % 2 == 0 else 5


def read_corpus(path: Path, default_steps: int) -> list[Job]:
    """One seed per line: `SEED [--nodes N] [--steps K]  # why it is here`."""
    jobs: list[Job] = []
    if not path.exists():
        return jobs
    for lineno, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parser = argparse.ArgumentParser(prog=f"{path.name}:{lineno}", add_help=False)
        parser.add_argument("seed", type=int)
        parser.add_argument("--nodes", type=int, choices=(3, 5))
        parser.add_argument("--steps", type=int, default=default_steps)
        args = parser.parse_args(line.split())
        jobs.append(Job(args.seed, nodes_for(args.seed, args.nodes), args.steps, "corpus"))
    return jobs


def run_job(job: Job) -> tuple[Job, SimResult]:
    return job, run_seed(job.seed, job.nodes, job.steps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(
            "Deterministic simulation of the Raft core (TESTING.md layers 3-4). Each seed "
            "fixes the Raft configuration, the network (delay/reordering, 0-30% drops, "
            "duplicates, partitions), the faults (crashes that lose unsynced writes, "
            "pauses, clock drift, leader isolation), the client workload and the "
            "membership changes. Safety invariants are checked after every step; after "
            "the fault phase the cluster is healed and must converge within a bound. "
            f"The seeds in {CORPUS.relative_to(ROOT)} are replayed on every run and "
            "counted in the totals."
        ),
        epilog=(
            "Without --nodes, even seeds run 3 nodes and odd seeds 5. A seed's result "
            "depends only on (seed, nodes, steps), whatever the number of workers. For "
            "one seed's event trace: python -c 'from agentflow.raft.testing import "
            'run_seed; print(*run_seed(SEED, NODES, STEPS, trace=True).trace, sep="\\n")\''
        ),
    )
    parser.add_argument("--seeds", type=int, required=True, help="how many seeds to run")
    parser.add_argument("--first-seed", type=int, required=True, help="the first seed")
    parser.add_argument(
        "--nodes", type=int, choices=(3, 5), help="cluster size (default: 3 or 5 by seed parity)"
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=DEFAULT_STEPS,
        help=f"simulated events in the fault phase (default {DEFAULT_STEPS})",
    )
    parser.add_argument(
        "--progress-every",
        type=float,
        default=PROGRESS_EVERY,
        metavar="SECONDS",
        help=f"a progress line on stderr this often (default {PROGRESS_EVERY:g}; 0: none)",
    )
    args = parser.parse_args(argv)
    if args.seeds < 0 or args.steps < 1:
        parser.error("--seeds must be >= 0 and --steps >= 1")
    if args.progress_every < 0:
        parser.error(f"--progress-every must be >= 0, got {args.progress_every:g}")

    jobs = [
        Job(s, nodes_for(s, args.nodes), args.steps)
        for s in range(args.first_seed, args.first_seed + args.seeds)
    ]
    seen = {(j.seed, j.nodes, j.steps) for j in jobs}
    for job in read_corpus(CORPUS, DEFAULT_STEPS):
        if (job.seed, job.nodes, job.steps) not in seen:
            seen.add((job.seed, job.nodes, job.steps))
            jobs.append(job)

    workers = min(WORKERS, os.cpu_count() or 1, len(jobs))
    tally = Tally(len(jobs))
    with Ticker(tally, args.progress_every):
        if workers > 1:
            with multiprocessing.Pool(workers) as pool:
                # Unordered: a failure is told, and counted done, as soon as it is known.
                failed = report(pool.imap_unordered(run_job, jobs, chunksize=2), tally)
        else:
            failed = report(map(run_job, jobs), tally)
    print(f"{len(jobs) - failed} passed, {failed} failed")
    return 1 if failed else 0


@dataclass(slots=True)
class Tally:
    total: int
    done: int = 0
    failed: int = 0
    started: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        return (
            f"raft_sim: {self.done}/{self.total} seeds done, {self.failed} failed, "
            f"{elapsed:.0f}s elapsed"
        )


class Ticker:
    """Prints the tally to stderr every `every` seconds from a thread, so the lines
    keep coming while one long seed holds up the in-order results."""

    def __init__(self, tally: Tally, every: float) -> None:
        self._tally = tally
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            print(self._tally.line(), file=sys.stderr, flush=True)

    def __enter__(self) -> Ticker:
        if self._every > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def report(results: Iterator[tuple[Job, SimResult]], tally: Tally) -> int:
    """Print a line per failure as results arrive; count them."""
    failed = 0
    for job, res in results:
        tally.done += 1
        if res.ok:
            continue
        failed += 1
        tally.failed = failed
        origin = " (corpus)" if job.source else ""
        print(
            f"seed {job.seed}{origin} nodes={job.nodes}: {res.invariant}: {res.detail} "
            f"-- replay: {job.replay()}",
            flush=True,
        )
    return failed


if __name__ == "__main__":
    sys.exit(main())
