"""An in-memory cluster of Raft cores, for unit and scripted tests (TESTING.md layers 1-2).

Each node is a `RaftCore` plus what a real host keeps beside it: `MemoryStorage`, the
"durable" snapshot, entries and hard state that survive a crash, and a
`KvStateMachine` that is volatile and rebuilt from storage on restart.

Every Ready is handled exactly in the order its docstring prescribes: persist
(snapshot, entries, hard state), then put the messages in the node's outbox, then
install the snapshot and apply the committed entries, then `advance`. While doing so
the harness checks the core's side of that contract and raises `HarnessError` when
it is broken: a gap in the entries to persist, a commit index beyond the durable
log, a term or vote going backwards, a committed entry that is not durable or not the
next one to apply. Messages wait in outboxes until a test delivers (or drops) them,
so a test controls every interleaving. Nothing is random except the cores' election
timeouts, drawn from generators the cluster seeds from the node id.

When `trace` is on, everything that happens is appended to `Cluster.trace` as
human-readable lines (the interaction scripts in tests/unit/raft/testdata print them).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from agentflow.raft.config import RaftConfig
from agentflow.raft.core import RaftCore, bootstrap_entries
from agentflow.raft.testing.describe import (
    MESSAGE_NAMES,
    MESSAGE_TYPES,
    ROLE_NAMES,
    describe_conf_state,
    describe_entry,
    describe_message,
    describe_ready,
    describe_snapshot,
    quote,
)
from agentflow.raft.types import (
    NONE,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    NodeId,
    ReadState,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
)

__all__ = [
    "MESSAGE_NAMES",
    "MESSAGE_TYPES",
    "ROLE_NAMES",
    "Cluster",
    "FixedJitter",
    "HarnessError",
    "KvStateMachine",
    "MemoryStorage",
    "Node",
    "Pair",
    "address",
    "describe_conf_state",
    "describe_entry",
    "describe_message",
    "describe_ready",
    "describe_snapshot",
    "drain",
    "new_core",
    "node_sort_key",
    "quote",
]


class HarnessError(AssertionError):
    """The core broke its side of the Ready contract, or a test misused the harness."""


class FixedJitter(random.Random):
    """A generator whose `randrange` always returns the same offset (capped to the
    range): a node's election timeout is then always `election_ticks + offset`,
    which keeps scripted tests predictable while still staggering the nodes."""

    def __init__(self, offset: int = 0) -> None:
        super().__init__(0)
        self.offset = offset

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:
        lo, hi = (0, start) if stop is None else (start, stop)
        return max(lo, min(lo + self.offset, hi - 1))


def node_sort_key(node: NodeId) -> tuple[int, int, str]:
    """Numeric ids in numeric order ("2" before "10"), then the others by name."""
    return (0, int(node), "") if node.isdigit() else (1, 0, node)


# -- durable state -----------------------------------------------------------------


@dataclass
class MemoryStorage:
    """What survives a crash: the newest snapshot, the entries after the compaction
    point and the hard state. `entries` are contiguous; the first one follows
    `compacted` (the last index dropped from the stored log)."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)
    compacted: int = 0

    def last_index(self) -> int:
        return self.entries[-1].index if self.entries else self.compacted

    def term(self, index: int) -> int | None:
        if self.entries and self.entries[0].index <= index <= self.entries[-1].index:
            return self.entries[index - self.entries[0].index].term
        if self.snapshot is not None and index == self.snapshot.meta.index:
            return self.snapshot.meta.term
        return None

    def save(self, node: NodeId, rd: Ready) -> None:
        """Step 1 of the Ready contract, with checks that the core asks for a
        consistent durable state."""
        if rd.snapshot is not None:
            meta = rd.snapshot.meta
            if self.snapshot is not None and meta.index <= self.snapshot.meta.index:
                raise HarnessError(
                    f"{node}: snapshot {meta.index} is not newer than the stored "
                    f"{self.snapshot.meta.index}"
                )
            # A snapshot from the leader replaces the whole stored log.
            self.snapshot = rd.snapshot
            self.entries = []
            self.compacted = meta.index
        if rd.entries:
            first = rd.entries[0].index
            for prev, e in zip(rd.entries, rd.entries[1:], strict=False):
                if e.index != prev.index + 1:
                    raise HarnessError(f"{node}: Ready.entries not contiguous at {e.index}")
            if first <= self.compacted:
                raise HarnessError(
                    f"{node}: entry {first} rewrites compacted index {self.compacted}"
                )
            if first > self.last_index() + 1:
                raise HarnessError(
                    f"{node}: entry {first} leaves a gap after stored {self.last_index()}"
                )
            del self.entries[first - self.compacted - 1 :]
            self.entries.extend(replace(e) for e in rd.entries)
        if rd.hard_state is not None:
            hs, old = rd.hard_state, self.hard_state
            if hs.term < old.term:
                raise HarnessError(f"{node}: term goes back from {old.term} to {hs.term}")
            if hs.term == old.term and old.vote != NONE and hs.vote != old.vote:
                raise HarnessError(
                    f"{node}: vote changes from {old.vote} to {hs.vote!r} in term {hs.term}"
                )
            if hs.commit < old.commit:
                raise HarnessError(f"{node}: commit goes back from {old.commit} to {hs.commit}")
            if hs.commit > self.last_index():
                raise HarnessError(
                    f"{node}: commit {hs.commit} is beyond the durable log ({self.last_index()})"
                )
            self.hard_state = hs

    def save_snapshot(self, snapshot: Snapshot, compact_to: int) -> None:
        """The host took a snapshot of its own state machine: keep it and drop the
        stored entries up to `compact_to`."""
        if self.snapshot is None or snapshot.meta.index > self.snapshot.meta.index:
            self.snapshot = snapshot
        if compact_to > self.compacted:
            del self.entries[: compact_to - self.compacted]
            self.compacted = compact_to

    def restart_state(self) -> tuple[HardState, Snapshot | None, list[Entry]]:
        """What a restarting node hands to `RaftCore`: entries right after the snapshot."""
        after = self.snapshot.meta.index if self.snapshot is not None else 0
        return (
            self.hard_state,
            self.snapshot,
            [replace(e) for e in self.entries if e.index > after],
        )


# -- state machine -------------------------------------------------------------------


class KvStateMachine:
    """Records every applied command and, for commands shaped `key=value`, keeps
    the key/value pairs. Volatile: rebuilt from a snapshot and the log on restart."""

    def __init__(self) -> None:
        self.applied_index = 0
        self.commands: list[tuple[int, bytes]] = []
        self.kv: dict[str, str] = {}

    def apply(self, e: Entry) -> None:
        self.applied_index = e.index
        if e.type is not EntryType.NORMAL or not e.data:
            return
        self.commands.append((e.index, e.data))
        key, sep, value = e.data.decode("utf-8", "backslashreplace").partition("=")
        if sep:
            self.kv[key] = value

    def snapshot_data(self) -> bytes:
        doc = {
            "applied": self.applied_index,
            "commands": [[i, d.hex()] for i, d in self.commands],
            "kv": self.kv,
        }
        return json.dumps(doc, sort_keys=True).encode()

    def restore(self, data: bytes, index: int) -> None:
        doc = json.loads(data) if data else {}
        self.applied_index = index
        self.commands = [(int(i), bytes.fromhex(d)) for i, d in doc.get("commands", [])]
        self.kv = dict(doc.get("kv", {}))


# -- nodes and the cluster ------------------------------------------------------------


@dataclass
class Node:
    id: NodeId
    storage: MemoryStorage
    rng: random.Random
    core: RaftCore | None = None  # None while crashed
    sm: KvStateMachine = field(default_factory=KvStateMachine)
    # Messages this node sent that nobody has delivered or dropped yet, tagged with
    # a cluster-wide sequence number so delivery keeps the global send order.
    outbox: list[tuple[int, Message]] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)

    @property
    def up(self) -> bool:
        return self.core is not None

    def live(self) -> RaftCore:
        if self.core is None:
            raise HarnessError(f"node {self.id} is down")
        return self.core


Pair = tuple[str, str]  # (from, to); "*" matches any node


class Cluster:
    """N nodes, their outboxes and a network that can be partitioned.

    Inputs (`tick`, `campaign`, `propose`, message delivery, ...) go to the cores;
    nothing reaches another node until a test calls `deliver` or `stabilize`.
    """

    def __init__(
        self,
        config: RaftConfig | None = None,
        *,
        seed: int = 0,
        rng_factory: Callable[[NodeId], random.Random] | None = None,
        trace: bool = False,
    ) -> None:
        self.config = config or RaftConfig()
        self.seed = seed
        self.rng_factory = rng_factory or (lambda node: random.Random(f"{seed}:{node}"))
        self.nodes: dict[NodeId, Node] = {}
        self.groups: list[set[NodeId]] | None = None  # None: fully connected
        self.trace: list[str] | None = [] if trace else None
        self._seq = 0

    # -- membership of the harness ------------------------------------------------

    def ids(self) -> list[NodeId]:
        return sorted(self.nodes, key=node_sort_key)

    def add_nodes(self, n: int) -> list[NodeId]:
        """Create and bootstrap a new cluster of `n` voters with ids "1".."n"
        (continuing after existing ids), as a real deployment would."""
        start = len(self.nodes) + 1
        ids = [str(i) for i in range(start, start + n)]
        boot = bootstrap_entries({i: address(i) for i in ids})
        self.note(f"INFO bootstrapping voters {' '.join(ids)}")
        for i in ids:
            storage = MemoryStorage(HardState(1, NONE, len(boot)), None, [replace(e) for e in boot])
            self.add_node(i, storage)
        return ids

    def add_node(self, node: NodeId, storage: MemoryStorage | None = None) -> Node:
        """Start a node from `storage` (empty: a node that waits to be added)."""
        if node in self.nodes:
            raise HarnessError(f"node {node} already exists")
        n = Node(node, storage or MemoryStorage(), self.rng_factory(node))
        self.nodes[node] = n
        self._start(n)
        return n

    def _start(self, n: Node) -> None:
        hs, snap, entries = n.storage.restart_state()
        n.sm = KvStateMachine()
        if snap is not None:
            n.sm.restore(snap.data, snap.meta.index)
        n.read_states = []
        n.core = RaftCore(n.id, self.config, n.rng, hard_state=hs, snapshot=snap, entries=entries)
        # A host handles the Ready a core starts with (re-applying the committed log,
        # which restores the membership) before it feeds the core anything.
        self.process_all_ready(n.id)

    def crash(self, node: NodeId) -> None:
        """Lose everything volatile: the core and the state machine. Storage and
        messages already sent stay; messages later delivered to the node are lost."""
        n = self.nodes[node]
        n.live()
        n.core = None
        self.note(f"INFO {node} crashed")

    def restart(self, node: NodeId) -> None:
        n = self.nodes[node]
        if n.up:
            raise HarnessError(f"node {node} is running")
        hs = n.storage.hard_state
        self.note(
            f"INFO {node} restarting at term {hs.term} "
            f"(commit {hs.commit}, last index {n.storage.last_index()})"
        )
        self._start(n)

    def core(self, node: NodeId) -> RaftCore:
        return self.nodes[node].live()

    def leader(self) -> NodeId | None:
        """The live leader with the highest term, if any."""
        best: tuple[int, NodeId] | None = None
        for node, n in self.nodes.items():
            core = n.core
            if (
                core is not None
                and core.role is Role.LEADER
                and (best is None or core.term > best[0])
            ):
                best = (core.term, node)
        return best[1] if best else None

    # -- network --------------------------------------------------------------------

    def partition(self, *groups: Iterable[NodeId]) -> None:
        """Only nodes in the same group can talk; a node in no group is isolated."""
        self.groups = [set(g) for g in groups]

    def isolate(self, node: NodeId) -> None:
        self.partition([node], [n for n in self.nodes if n != node])

    def heal(self) -> None:
        self.groups = None

    def connected(self, a: NodeId, b: NodeId) -> bool:
        if self.groups is None:
            return True
        return any(a in g and b in g for g in self.groups)

    def in_flight(self) -> list[Message]:
        """Every undelivered message, in send order."""
        tagged = [t for n in self.nodes.values() for t in n.outbox]
        return [m for _, m in sorted(tagged, key=lambda t: t[0])]

    # -- inputs ---------------------------------------------------------------------

    def _input(self, node: NodeId, fn: Callable[[RaftCore], object], indent: str = "") -> object:
        """Give the core one input and log its role or term change, if any."""
        core = self.core(node)
        before = (core.role, core.term)
        try:
            return fn(core)
        finally:
            after = (core.role, core.term)
            if after != before:
                self.note(f"{indent}INFO {node} became {core.role.value} at term {core.term}")

    def tick(self, node: NodeId, n: int = 1) -> None:
        for _ in range(n):
            self._input(node, lambda c: c.tick())

    def tick_election(self, node: NodeId) -> None:
        """Tick until the node's election timer fires: a follower or candidate
        campaigns, a leader runs its CheckQuorum round."""
        core = self.core(node)
        if core.role is Role.LEADER:
            n = core.cfg.election_ticks - core.election_elapsed
        else:
            n = core.randomized_timeout - core.election_elapsed
        self.tick(node, max(1, n))

    def tick_heartbeat(self, node: NodeId) -> None:
        self.tick(node, self.config.heartbeat_ticks)

    def campaign(self, node: NodeId) -> None:
        """Start an election now, as an expired election timeout would."""
        self._input(node, lambda c: c.campaign(pre_vote=c.cfg.pre_vote))

    def propose(self, node: NodeId, *commands: bytes) -> tuple[int, int]:
        result = self._input(node, lambda c: c.propose(list(commands)))
        assert isinstance(result, tuple)
        return result

    def propose_conf_change(self, node: NodeId, cc: ConfChange) -> tuple[int, int]:
        result = self._input(node, lambda c: c.propose_conf_change(cc))
        assert isinstance(result, tuple)
        return result

    def add_learner(self, leader: NodeId, node: NodeId) -> tuple[int, int]:
        """Propose `node` as a learner and start it empty if it does not exist yet."""
        result = self.propose_conf_change(
            leader, ConfChange(ConfChangeType.ADD_LEARNER, node, address(node))
        )
        if node not in self.nodes:
            self.add_node(node)
        return result

    def promote(self, leader: NodeId, node: NodeId) -> tuple[int, int]:
        return self.propose_conf_change(leader, ConfChange(ConfChangeType.PROMOTE, node))

    def remove(self, leader: NodeId, node: NodeId) -> tuple[int, int]:
        return self.propose_conf_change(leader, ConfChange(ConfChangeType.REMOVE, node))

    def transfer_leadership(self, leader: NodeId, target: NodeId) -> None:
        self._input(leader, lambda c: c.transfer_leadership(target))

    def request_read(self, node: NodeId, context: bytes) -> None:
        self._input(node, lambda c: c.request_read(context))

    def compact(self, node: NodeId, keep_entries: int = 0) -> int:
        """Snapshot the node's state machine at its applied index, compact the core's
        log and storage to match. Returns the compaction point."""
        n = self.nodes[node]
        core = n.live()
        index = core.log.applied
        if n.sm.applied_index != index:
            raise HarnessError(f"{node}: state machine at {n.sm.applied_index}, core at {index}")
        term = core.log.term(index)
        if term is None:
            raise HarnessError(f"{node}: applied index {index} has no term")
        snap = Snapshot(SnapshotMeta(index, term, core.conf), n.sm.snapshot_data())
        point = core.compact(snap, keep_entries)
        n.storage.save_snapshot(snap, point)
        self.note(f"INFO {node} compacted log to {point} (snapshot {term}/{index})")
        return point

    # -- Ready handling -------------------------------------------------------------

    def has_ready(self, node: NodeId) -> bool:
        n = self.nodes[node]
        return n.core is not None and n.core.has_ready()

    def process_ready(self, node: NodeId) -> bool:
        """Handle one Ready of `node` in the contract's order; False if it had none."""
        n = self.nodes[node]
        core = n.core
        if core is None or not core.has_ready():
            return False
        before = (core.role, core.term)
        rd = core.ready()
        self.note(f"> {node} handling Ready")
        if self.trace is not None:
            self.trace.extend("  " + line for line in describe_ready(rd))
        # 1. persist
        n.storage.save(node, rd)
        # 2. send
        for m in rd.messages:
            if m.frm != node:
                raise HarnessError(f"{node}: sends a message from {m.frm}")
            self._seq += 1
            n.outbox.append((self._seq, m))
        # 3. apply
        if rd.snapshot is not None:
            n.sm.restore(rd.snapshot.data, rd.snapshot.meta.index)
        for e in rd.committed_entries:
            if e.index != n.sm.applied_index + 1:
                raise HarnessError(
                    f"{node}: applies {e.index} after {n.sm.applied_index} (not the next entry)"
                )
            if n.storage.term(e.index) != e.term:
                raise HarnessError(f"{node}: applies {e.term}/{e.index}, which is not durable")
            if e.index > n.storage.hard_state.commit:
                raise HarnessError(
                    f"{node}: applies {e.index} beyond durable commit {n.storage.hard_state.commit}"
                )
            n.sm.apply(e)
        # 4. reads
        n.read_states.extend(rd.read_states)
        core.advance(rd)
        after = (core.role, core.term)
        if after != before:
            self.note(f"  INFO {node} became {core.role.value} at term {core.term}")
        return True

    def process_all_ready(self, node: NodeId) -> None:
        while self.process_ready(node):
            pass

    # -- delivery -------------------------------------------------------------------

    def deliver(
        self,
        to: Iterable[NodeId] | None = None,
        *,
        drop: Iterable[Pair] = (),
        types: Iterable[MessageType] | None = None,
        frm: Iterable[NodeId] | None = None,
    ) -> int:
        """Deliver the in-flight messages addressed to `to` (default: everyone),
        optionally only those of `types` or from `frm`; messages matching a
        (from, to) pair in `drop` are lost instead, as are messages across a partition
        or to a crashed node. Messages not selected stay in flight. Replies created
        by the delivery are not delivered. Returns the number delivered or dropped."""
        drop = list(drop)
        targets = set(to) if to is not None else None
        senders = set(frm) if frm is not None else None
        kinds = set(types) if types is not None else None
        picked: list[tuple[int, Message]] = []
        for n in self.nodes.values():
            keep: list[tuple[int, Message]] = []
            for seq, m in n.outbox:
                if (
                    (targets is None or m.to in targets)
                    and (senders is None or m.frm in senders)
                    and (kinds is None or m.type in kinds)
                ):
                    picked.append((seq, m))
                else:
                    keep.append((seq, m))
            n.outbox = keep
        picked.sort(key=lambda t: t[0])
        by_target: dict[NodeId, list[Message]] = {}
        for _, m in picked:
            by_target.setdefault(m.to, []).append(m)
        for target in sorted(by_target, key=node_sort_key):
            self._deliver_to(target, by_target[target], drop)
        return len(picked)

    def _deliver_to(self, target: NodeId, msgs: list[Message], drop: list[Pair]) -> None:
        n = self.nodes.get(target)
        if n is None or n.core is None:
            self.note(f"> {target} is down, dropping messages")
            for m in msgs:
                self.note("  dropped: " + describe_message(m))
            return
        self.note(f"> {target} receiving messages")
        for m in msgs:
            if any(_pair_matches(p, m) for p in drop):
                self.note("  dropped: " + describe_message(m))
            elif not self.connected(m.frm, m.to):
                self.note("  dropped (partition): " + describe_message(m))
            else:
                self.note("  " + describe_message(m))
                self._input(target, _stepper(m), indent="  ")

    def drop(self, pairs: Iterable[Pair], types: Iterable[MessageType] | None = None) -> int:
        """Lose every in-flight message that matches a (from, to) pair (and is of
        one of `types`, if given)."""
        pairs = list(pairs)
        kinds = set(types) if types is not None else None
        lost = 0
        for n in self.nodes.values():
            keep = []
            for seq, m in n.outbox:
                if any(_pair_matches(p, m) for p in pairs) and (kinds is None or m.type in kinds):
                    lost += 1
                    self.note("dropped: " + describe_message(m))
                else:
                    keep.append((seq, m))
            n.outbox = keep
        return lost

    def stabilize(self, nodes: Iterable[NodeId] | None = None, max_rounds: int = 1000) -> None:
        """Handle Readies and deliver messages until nothing is left to do: in each
        round, one Ready per node, then every message in flight. With `nodes`, only
        those nodes and the messages among them take part; the rest stay in flight.
        Raises if that takes more than `max_rounds` rounds (a livelock)."""
        ids = sorted(nodes, key=node_sort_key) if nodes is not None else None
        for _ in range(max_rounds):
            active = ids if ids is not None else self.ids()
            busy = False
            for node in active:
                busy |= self.process_ready(node)
            pending = [
                m.to
                for n in self.nodes.values()
                for _, m in n.outbox
                if m.to in active and (ids is None or m.frm in ids)
            ]
            if pending:
                busy = True
                self.deliver(pending, frm=ids)
            if not busy:
                return
        raise HarnessError(f"not stable after {max_rounds} rounds")

    # -- helpers ----------------------------------------------------------------------

    def note(self, line: str) -> None:
        """Append a line to the trace (if tracing)."""
        if self.trace is not None:
            self.trace.append(line)

    def take_trace(self) -> list[str]:
        out = self.trace or []
        if self.trace is not None:
            self.trace = []
        return out


def _stepper(m: Message) -> Callable[[RaftCore], None]:
    return lambda core: core.step(m)


def _pair_matches(pair: Pair, m: Message) -> bool:
    f, t = pair
    return (f in ("*", m.frm)) and (t in ("*", m.to))


def address(node: NodeId) -> str:
    return f"node{node}"


# -- building lone cores for unit tests ---------------------------------------------


def new_core(
    node: NodeId,
    voters: Sequence[NodeId],
    *,
    learners: Sequence[NodeId] = (),
    term: int = 0,
    vote: NodeId = NONE,
    commit: int = 0,
    log_terms: Sequence[int] = (),
    config: RaftConfig | None = None,
    rng: random.Random | None = None,
) -> RaftCore:
    """A core whose membership is `voters` + `learners` from the start (a snapshot at
    index 0 carries it) and whose log holds one empty entry per term in `log_terms`,
    at indexes 1, 2, ... Any Ready it has pending (say, committed entries) is handled."""
    members = sorted({*voters, *learners}, key=node_sort_key)
    conf = ConfState(
        tuple(sorted(voters, key=node_sort_key)),
        tuple(sorted(learners, key=node_sort_key)),
        tuple((n, address(n)) for n in members),
    )
    entries = [Entry(t, i) for i, t in enumerate(log_terms, start=1)]
    core = RaftCore(
        node,
        config or RaftConfig(),
        rng or FixedJitter(),
        hard_state=HardState(term, vote, commit),
        snapshot=Snapshot(SnapshotMeta(0, 0, conf)),
        entries=entries,
    )
    drain(core)
    return core


def msg(
    mtype: MessageType,
    frm: NodeId,
    to: NodeId,
    term: int,
    *,
    index: int = 0,
    log_term: int = 0,
    commit: int = 0,
    entries: Iterable[Entry] = (),
    reject: bool = False,
    reject_hint: int = 0,
    context: bytes = b"",
    snapshot: Snapshot | None = None,
) -> Message:
    """A message for stepping a lone core by hand."""
    return Message(
        mtype,
        to,
        frm,
        term=term,
        index=index,
        log_term=log_term,
        commit=commit,
        entries=list(entries),
        reject=reject,
        reject_hint=reject_hint,
        context=context,
        snapshot=snapshot,
    )


def drain(core: RaftCore) -> list[Message]:
    """Handle a lone core's Readies (nothing to persist to) and return its messages."""
    out: list[Message] = []
    while core.has_ready():
        rd = core.ready()
        out.extend(rd.messages)
        core.advance(rd)
    return out
