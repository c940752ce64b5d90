"""Scripted interaction tests for the Raft core (TESTING.md layer 2).

Every `testdata/*.txt` file is a script of commands, each followed by `----` and
the output it must produce; a blank line ends the output. Lines starting with `#`
are comments. Run with `REWRITE=1` to regenerate every expected output (then read
the diff: the output is only right if the Raft paper says it is).

Commands (node ids are "1", "2", ...):

    add-nodes N [election=E] [heartbeat=H] [pre-vote=B] [check-quorum=B]
              [max-inflight=N] [max-entries=N]
                              bootstrap N voters (the first call sets the config;
                              defaults: election=5 heartbeat=1); node k's election
                              timeout is always election + k - 1 ticks
    campaign N                start an election now (a pre-vote if enabled)
    propose N DATA...         propose one entry per DATA (DATA `k=v` sets a key)
    add-learner L N           L proposes N as a learner; N is started empty
    promote L N / remove L N  L proposes promoting / removing N
    transfer-leadership L T   L hands leadership to T
    read-index N CTX          N asks for a linearizable read point
    tick N COUNT              tick N COUNT times
    tick-election N...        tick each node until its election timer fires (a
                              follower campaigns, a leader checks its quorum)
    tick-heartbeat N...       tick each node heartbeat-ticks times
    process-ready [N...]      handle one Ready of each node (default: all)
    deliver-msgs [N...] [drop=(F,T)...] [type=MsgX]
                              deliver in-flight messages to N... (default: all),
                              only of type MsgX if given, losing those from F
                              to T (`*` matches any node); replies stay in flight
    drop-msgs (F,T)...        lose in-flight messages from F to T
    stabilize [N...]          handle Readies and deliver messages until quiet
    crash N / restart N       lose N's volatile state / restart it from storage
    partition A B / C D       only nodes in the same group talk
    heal                      remove the partition
    compact N [keep=K]        snapshot N's state machine and compact its log
    report-unreachable L N    L's transport failed to reach N
    status [N...]             role, term, commit, membership; a leader's progress
    raft-log N                N's in-memory log
    applied [N...]            what N's state machine has applied
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agentflow.raft.config import RaftConfig
from agentflow.raft.progress import ProgressState
from agentflow.raft.testing.harness import (
    MESSAGE_TYPES,
    ROLE_NAMES,
    Cluster,
    FixedJitter,
    Pair,
    describe_conf_state,
    describe_entry,
    node_sort_key,
    quote,
)
from agentflow.raft.types import RaftError, Role

TESTDATA = Path(__file__).parent / "testdata"


@dataclass
class Command:
    line: str
    expected: list[str]
    actual: list[str] = field(default_factory=list)


Item = str | Command  # a str is a comment or blank line, kept as is on rewrite


def parse_script(text: str, name: str) -> list[Item]:
    lines = text.splitlines()
    items: list[Item] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("#"):
            items.append(line)
            i += 1
            continue
        if i + 1 >= len(lines) or lines[i + 1] != "----":
            raise ValueError(f"{name}:{i + 1}: command {line!r} is not followed by ----")
        i += 2
        expected: list[str] = []
        while i < len(lines) and lines[i].strip():
            expected.append(lines[i])
            i += 1
        items.append(Command(line, expected))
    return items


def render(items: list[Item], actual: bool) -> str:
    out: list[str] = []
    for item in items:
        if isinstance(item, str):
            out.append(item)
        else:
            out.extend([item.line, "----", *(item.actual if actual else item.expected)])
    return "\n".join(out) + "\n"


class Interpreter:
    def __init__(self) -> None:
        self.cluster: Cluster | None = None

    @property
    def c(self) -> Cluster:
        if self.cluster is None:
            raise ValueError("no nodes yet: start with add-nodes")
        return self.cluster

    def run(self, line: str) -> list[str]:
        words = line.split()
        name, args = words[0], words[1:]
        handler: Callable[[list[str]], list[str] | None] | None = getattr(
            self, "cmd_" + name.replace("-", "_"), None
        )
        if handler is None:
            raise ValueError(f"unknown command {name!r}")
        if self.cluster is not None:
            self.cluster.take_trace()
        try:
            extra = handler(args) or []
        except RaftError as e:  # the core refused: part of the expected output
            extra = [f"error: {type(e).__name__}: {e}"]
        out = (self.cluster.take_trace() if self.cluster is not None else []) + extra
        return out or ["ok"]

    # -- setup ------------------------------------------------------------------------

    def cmd_add_nodes(self, args: list[str]) -> None:
        n = int(args[0])
        opts = kwargs(args[1:])
        if self.cluster is None:
            config = RaftConfig(
                heartbeat_ticks=int(opts.pop("heartbeat", "1")),
                election_ticks=int(opts.pop("election", "5")),
                pre_vote=flag(opts.pop("pre-vote", "true")),
                check_quorum=flag(opts.pop("check-quorum", "true")),
                max_inflight_msgs=int(opts.pop("max-inflight", "256")),
                max_entries_per_msg=int(opts.pop("max-entries", "1024")),
            )
            self.cluster = Cluster(config, rng_factory=script_jitter, trace=True)
        if opts:
            raise ValueError(f"unknown or late options: {sorted(opts)}")
        self.c.add_nodes(n)

    # -- inputs -----------------------------------------------------------------------

    def cmd_campaign(self, args: list[str]) -> None:
        self.c.campaign(args[0])

    def cmd_propose(self, args: list[str]) -> list[str]:
        index, term = self.c.propose(args[0], *(a.encode() for a in args[1:]))
        return [f"proposed at {term}/{index}"]

    def cmd_add_learner(self, args: list[str]) -> list[str]:
        index, term = self.c.add_learner(args[0], args[1])
        return [f"proposed at {term}/{index}"]

    def cmd_promote(self, args: list[str]) -> list[str]:
        index, term = self.c.promote(args[0], args[1])
        return [f"proposed at {term}/{index}"]

    def cmd_remove(self, args: list[str]) -> list[str]:
        index, term = self.c.remove(args[0], args[1])
        return [f"proposed at {term}/{index}"]

    def cmd_transfer_leadership(self, args: list[str]) -> None:
        self.c.transfer_leadership(args[0], args[1])

    def cmd_read_index(self, args: list[str]) -> None:
        self.c.request_read(args[0], args[1].encode())

    def cmd_report_unreachable(self, args: list[str]) -> None:
        self.c.core(args[0]).report_unreachable(args[1])

    def cmd_tick(self, args: list[str]) -> None:
        self.c.tick(args[0], int(args[1]))

    def cmd_tick_election(self, args: list[str]) -> None:
        for node in args:
            self.c.tick_election(node)

    def cmd_tick_heartbeat(self, args: list[str]) -> None:
        for node in args:
            self.c.tick_heartbeat(node)

    # -- processing and the network ---------------------------------------------------

    def cmd_process_ready(self, args: list[str]) -> None:
        for node in args or self.c.ids():
            self.c.process_ready(node)

    def cmd_deliver_msgs(self, args: list[str]) -> list[str] | None:
        to = [a for a in args if "=" not in a]
        drops: list[Pair] = []
        types = None
        for a in args:
            key, _, value = a.partition("=")
            if not value:
                continue
            if key == "drop":
                drops.extend(pairs(value))
            elif key == "type":
                types = [MESSAGE_TYPES[value]]
            else:
                raise ValueError(f"unknown option {key!r}")
        n = self.c.deliver(to or None, drop=drops, types=types)
        return None if n else ["no messages"]

    def cmd_drop_msgs(self, args: list[str]) -> list[str] | None:
        n = self.c.drop(pairs(" ".join(args)))
        return None if n else ["no messages"]

    def cmd_stabilize(self, args: list[str]) -> None:
        self.c.stabilize(args or None)

    def cmd_crash(self, args: list[str]) -> None:
        self.c.crash(args[0])

    def cmd_restart(self, args: list[str]) -> None:
        self.c.restart(args[0])

    def cmd_partition(self, args: list[str]) -> list[str]:
        groups: list[list[str]] = [[]]
        for a in args:
            if a == "/":
                groups.append([])
            else:
                groups[-1].append(a)
        self.c.partition(*groups)
        return ["partitioned: " + " / ".join(" ".join(g) for g in groups)]

    def cmd_heal(self, args: list[str]) -> list[str]:
        self.c.heal()
        return ["healed"]

    def cmd_compact(self, args: list[str]) -> None:
        opts = kwargs(args[1:])
        self.c.compact(args[0], int(opts.pop("keep", "0")))

    # -- inspection -------------------------------------------------------------------

    def cmd_status(self, args: list[str]) -> list[str]:
        out: list[str] = []
        for node in args or self.c.ids():
            n = self.c.nodes[node]
            if n.core is None:
                hs = n.storage.hard_state
                out.append(
                    f"{node}: down (durable Term:{hs.term} Vote:{hs.vote or '-'} "
                    f"Commit:{hs.commit} LastIndex:{n.storage.last_index()})"
                )
                continue
            core = n.core
            out.append(
                f"{node}: {ROLE_NAMES[core.role]} Term:{core.term} Vote:{core.vote or '-'} "
                f"Lead:{core.lead or '-'} LastIndex:{core.log.last_index()} "
                f"Commit:{core.log.committed} Applied:{core.log.applied} "
                f"{describe_conf_state(core.conf)}"
            )
            if core.role is not Role.LEADER:
                continue
            for peer in sorted(core.progress, key=node_sort_key):
                pr = core.progress[peer]
                line = f"  {peer}: {STATE_NAMES[pr.state]} match={pr.match} next={pr.next}"
                if pr.is_learner:
                    line += " learner"
                if pr.inflight:
                    line += f" inflight={len(pr.inflight)}"
                if pr.probe_sent:
                    line += " paused"
                if pr.state is ProgressState.SNAPSHOT:
                    line += f" pending_snapshot={pr.pending_snapshot}"
                out.append(line)
        return out

    def cmd_raft_log(self, args: list[str]) -> list[str]:
        log = self.c.core(args[0]).log
        out: list[str] = []
        if log.base_index:
            out.append(f"compacted through {log.base_term}/{log.base_index}")
        out.extend(describe_entry(e) for e in log.entries)
        return out or ["log is empty"]

    def cmd_applied(self, args: list[str]) -> list[str]:
        out: list[str] = []
        for node in args or self.c.ids():
            n = self.c.nodes[node]
            if n.core is None:
                out.append(f"{node}: down")
                continue
            cmds = ", ".join(f"{i} {quote(d)}" for i, d in n.sm.commands)
            line = f"{node}: Applied:{n.sm.applied_index} Commands:[{cmds}]"
            if n.sm.kv:
                line += " KV:{" + " ".join(f"{k}={v}" for k, v in sorted(n.sm.kv.items())) + "}"
            out.append(line)
        return out


STATE_NAMES = {
    ProgressState.PROBE: "StateProbe",
    ProgressState.REPLICATE: "StateReplicate",
    ProgressState.SNAPSHOT: "StateSnapshot",
}
_PAIR = re.compile(r"\((\w+|\*),(\w+|\*)\)")


def script_jitter(node: str) -> FixedJitter:
    """Node k's election timeout is election + k - 1 ticks: staggered, predictable."""
    return FixedJitter(int(node) - 1 if node.isdigit() else 0)


def pairs(text: str) -> list[Pair]:
    found = [(f, t) for f, t in _PAIR.findall(text)]
    if not found:
        raise ValueError(f"expected (from,to) pairs, got {text!r}")
    return found


def kwargs(args: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for a in args:
        key, sep, value = a.partition("=")
        if not sep:
            raise ValueError(f"expected key=value, got {a!r}")
        out[key] = value
    return out


def flag(value: str) -> bool:
    if value not in ("true", "false"):
        raise ValueError(f"expected true or false, got {value!r}")
    return value == "true"


SCRIPTS = sorted(TESTDATA.glob("*.txt"))


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_interaction(path: Path) -> None:
    text = path.read_text()
    items = parse_script(text, path.name)
    interp = Interpreter()
    for item in items:
        if isinstance(item, Command):
            item.actual = interp.run(item.line)
    actual = render(items, actual=True)
    if os.environ.get("REWRITE") == "1":
        path.write_text(actual)
        return
    if actual != text:
        diff = "".join(
            difflib.unified_diff(
                text.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                f"{path.name} (expected)",
                f"{path.name} (actual)",
            )
        )
        pytest.fail(f"{path.name}: output differs (REWRITE=1 regenerates it)\n{diff}")


def test_scripts_exist() -> None:
    assert SCRIPTS, f"no scripts in {TESTDATA}"
